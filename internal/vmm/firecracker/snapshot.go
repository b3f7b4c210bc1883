package firecracker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/vmm"
)

// Snapshots through Firecracker's API, in the jailer's chroot only (see jail): Save pauses the
// guest and writes a full snapshot (PUT /snapshot/create) of its state into the chroot and of
// its memory into the snapshot's memory file, which the chroot shows at jailMemory. A restore
// starts Firecracker in a chroot of its own, where the paths the snapshot recorded name that
// restore's files, and loads the snapshot into it with only its logger and metrics configured
// (PUT /snapshot/load): the memory file mapped privately (the File backend), the run's tap
// device in place of the saved one. The guest stays paused until Resume.

var _ vmm.Snapshotter = (*Backend)(nil)

// jailOf returns the chroot of a guest this process started under the jailer.
func (b *Backend) jailOf(h vmm.Handle) *jail {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.jails[h.APISocket]
}

// maxState bounds the device state Save copies out of the chroot (Firecracker's is a few KB;
// the file is the jailed process's).
const maxState = 64 << 20

// Save pauses the guest and writes a full snapshot: its state to statePath, its memory to
// memoryPath, which must be the snapshot boot's Spec.Memory. Both are left readable by the
// jail's group: a restore's jailed Firecracker opens them through its chroot, and a copy of a
// guest's memory per restore is what a snapshot is meant to avoid.
func (b *Backend) Save(ctx context.Context, h vmm.Handle, statePath, memoryPath string) error {
	j := b.jailOf(h)
	if j == nil {
		return errors.New("firecracker snapshots need the jailer (ukernel as root, with jailer on PATH), and a guest this process started")
	}
	if j.memory == "" || j.memory != memoryPath {
		return fmt.Errorf("firecracker saves a guest's memory only to the memory file it booted with (%q), not %s", j.memory, memoryPath)
	}
	if err := b.Pause(ctx, h); err != nil {
		return err
	}
	if err := b.CreateSnapshot(ctx, h, jailState, jailMemory); err != nil {
		return err
	}
	// Firecracker has written and closed the memory file: it leaves the chroot now, before the
	// snapshot is sealed (taking back the ACL entry changes its ctime).
	if err := j.releaseKept(); err != nil {
		return err
	}
	if err := copyOut(j.host(jailState), statePath); err != nil {
		return fmt.Errorf("firecracker snapshot state: %w", err)
	}
	for _, p := range []string{statePath, memoryPath} {
		if err := os.Chown(p, -1, j.gid); err != nil {
			return fmt.Errorf("firecracker snapshot: %w", err)
		}
		if err := os.Chmod(p, 0o640); err != nil {
			return fmt.Errorf("firecracker snapshot: %w", err)
		}
	}
	return nil
}

// copyOut copies the state file the jailed Firecracker wrote, never following a link it
// planted, to dst.
func copyOut(src, dst string) error {
	in, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	if fi, err := in.Stat(); err != nil || !fi.Mode().IsRegular() || fi.Size() > maxState {
		return fmt.Errorf("%s is not a regular file of at most %d bytes", src, maxState)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, io.LimitReader(in, maxState))
	if serr := out.Sync(); err == nil {
		err = serr
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// NetworkOverridesSince is the first Firecracker release whose PUT /snapshot/load takes
// network_overrides (v1.12.0): before it a restored guest gets the tap device it was saved with.
var NetworkOverridesSince = [2]int{1, 12}

// RestoreSequence loads a snapshot into a Firecracker (version, as GET / reports it) that was
// only given its logger and metrics, for the run of cfg: its memory file mapped privately (the
// File backend) and cfg's tap device in place of the snapshot's. The vsock socket needs no
// override: it is at jailVsock in every chroot. The guest stays paused (Resume runs it after
// the host is ready to reseed it).
func RestoreSequence(ctx context.Context, c *Client, cfg Config, version, statePath, memoryPath string) error {
	load := SnapshotLoad{SnapshotPath: statePath, MemBackend: &MemoryBackend{BackendType: "File", BackendPath: memoryPath}}
	if cfg.Net != nil {
		if !atLeast(version, NetworkOverridesSince) {
			return fmt.Errorf("firecracker %s cannot give a restored guest this run's tap device (network_overrides came with v%d.%d): upgrade Firecracker, or run with --cold", version, NetworkOverridesSince[0], NetworkOverridesSince[1])
		}
		load.NetworkOverrides = []NetworkOverride{{IfaceID: cfg.Net.IfaceID, HostDevName: cfg.Net.HostDevName}}
	}
	if err := c.Put(ctx, "/logger", cfg.Logger); err != nil {
		return err
	}
	if err := c.Put(ctx, "/metrics", cfg.Metrics); err != nil {
		return err
	}
	return c.Put(ctx, "/snapshot/load", load)
}

// atLeast reports whether a Firecracker version ("1.12.0", "v1.17.0-dev") is want or later.
func atLeast(version string, want [2]int) bool {
	f := strings.SplitN(strings.TrimPrefix(strings.TrimSpace(version), "v"), ".", 3)
	if len(f) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(f[0])
	minor, err2 := strconv.Atoi(strings.SplitN(f[1], "-", 2)[0])
	if err1 != nil || err2 != nil {
		return false
	}
	return major > want[0] || major == want[0] && minor >= want[1]
}

// DialControl returns the guest's control connection, made at its first write or read. A vsock
// connection from the host is answered by the guest, which a paused guest cannot do (a restore
// before Resume), and the guest's driver resets every connection once it runs after a restore
// (VIRTIO_VSOCK_EVENT_TRANSPORT_RESET); a connection made at the first write, once the guest
// runs, is its own. Until then the guest may still be starting its listener (a snapshot boot
// dials before the workload is ready): the connection is retried for a few seconds.
func (b *Backend) DialControl(ctx context.Context, h vmm.Handle) (net.Conn, error) {
	if h.ControlSocket == "" {
		return nil, errors.New("guest has no control channel (no vsock socket)")
	}
	return &lateConn{ctx: ctx, uds: h.ControlSocket}, nil
}

// lateDialFor bounds lateConn's attempts to connect.
const lateDialFor = 5 * time.Second

// lateConn is a vsock control connection made when first used (see DialControl).
type lateConn struct {
	ctx context.Context
	uds string

	mu       sync.Mutex
	conn     net.Conn
	err      error
	rdl, wdl time.Time
}

func (c *lateConn) connect() (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil || c.err != nil {
		return c.conn, c.err
	}
	ctx, cancel := context.WithTimeout(c.ctx, lateDialFor)
	defer cancel()
	if !c.wdl.IsZero() {
		var cancelW context.CancelFunc
		ctx, cancelW = context.WithDeadline(ctx, c.wdl)
		defer cancelW()
	}
	for {
		conn, err := DialVsock(ctx, c.uds, abi.ControlVsockPort)
		if err == nil {
			conn.SetReadDeadline(c.rdl)
			conn.SetWriteDeadline(c.wdl)
			c.conn = conn
			return conn, nil
		}
		select {
		case <-ctx.Done():
			c.err = err
			return nil, err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *lateConn) Read(p []byte) (int, error) {
	conn, err := c.connect()
	if err != nil {
		return 0, err
	}
	return conn.Read(p)
}

func (c *lateConn) Write(p []byte) (int, error) {
	conn, err := c.connect()
	if err != nil {
		return 0, err
	}
	return conn.Write(p)
}

func (c *lateConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		c.err = net.ErrClosed
		return nil
	}
	return c.conn.Close()
}

func (c *lateConn) LocalAddr() net.Addr  { return &net.UnixAddr{Net: "unix"} }
func (c *lateConn) RemoteAddr() net.Addr { return &net.UnixAddr{Name: c.uds, Net: "unix"} }

func (c *lateConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *lateConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rdl = t
	if c.conn != nil {
		return c.conn.SetReadDeadline(t)
	}
	return nil
}

func (c *lateConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wdl = t
	if c.conn != nil {
		return c.conn.SetWriteDeadline(t)
	}
	return nil
}

// BootCmdline is the guest's boot_args (BootArgs).
func (b *Backend) BootCmdline(spec vmm.Spec) string { return BootArgs(spec.Cmdline) }

// Layout is the API configuration of spec without paths: machine, drives (ids and modes),
// network interface and vsock.
func (b *Backend) Layout(spec vmm.Spec) (string, error) {
	masked := func(string) string { return "PATH" }
	cfg := ConfigFor(spec, "KERNEL", Paths{File: masked, Drive: func(vmm.Disk) string { return "PATH" }, Vsock: masked})
	cfg.BootSource.BootArgs = ""
	if cfg.Net != nil {
		cfg.Net.HostDevName = "IFACE"
	}
	data, err := json.Marshal(struct {
		Machine MachineConfig
		Drives  []Drive
		Net     *NetworkInterface
		Vsock   *Vsock
	}{cfg.Machine, cfg.Drives, cfg.Net, cfg.Vsock})
	return string(data), err
}
