package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/vmm"
)

// CPUModelTCG is the CPU QEMU emulates under TCG. Without ERMS/FSRM the guest kernel clears and
// copies memory with unrolled loops instead of `rep stosb`/`rep movsb`, which QEMU 7.2's TCG
// emulates slowly: a boot to /init takes about 20% less (0.94 s to 0.76 s, busybox initramfs).
// A snapshot's fingerprint names it: a guest only resumes on the CPU it was saved on.
const CPUModelTCG = "max,erms=off,fsrm=off"

// SaveTimeout bounds a save: pausing the guest and writing its device state (tens of KB with
// RAM in its file; 11 ms for a 512 MiB postgres guest here).
const SaveTimeout = 30 * time.Second

// LoadTimeout bounds loading a saved device state into a restoring QEMU (the state is tens of
// KB; RAM is mapped, not read).
const LoadTimeout = 30 * time.Second

var _ vmm.Snapshotter = (*Backend)(nil)

// memoryArgs backs RAM with spec.Memory's file. QEMU 7.2 opens it by path only, so a QEMU
// started by root reopens root's open file as /proc/self/fd/N (openMemory made it its user's).
func memoryArgs(spec vmm.Spec, mem int, p *passed) []string {
	path := escape(spec.Memory.Path)
	if p != nil {
		path = p.proc(p.memory)
	}
	share := "off"
	if spec.Memory.Shared {
		share = "on"
	}
	return []string{"-object", fmt.Sprintf("memory-backend-file,id=ram,size=%dM,mem-path=%s,share=%s", mem, path, share),
		"-machine", "memory-backend=ram"}
}

// openMemory opens a RAM file for a QEMU started by root. QEMU reopens it read-write (a private
// mapping too: QEMU 7.2's readonly=on would make the guest's RAM read-only), which the file's
// mode must allow its user: the file is given to that user once, when it is made for a save,
// before the snapshot seals it (a later chown would change its identity).
func openMemory(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("memory file: %w", err)
	}
	fi, err := f.Stat()
	if err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && (st.Uid != vmm.UnprivilegedUID || fi.Mode().Perm()&0o600 != 0o600) {
			err = f.Chown(vmm.UnprivilegedUID, vmm.UnprivilegedGID)
			if err == nil {
				err = f.Chmod(0o600)
			}
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("memory file %s for QEMU's user: %w", path, err)
	}
	return f, nil
}

// ignoreShared makes a migration leave shared RAM out (x-ignore-shared), on both sides: the
// memory file holds it.
func ignoreShared(ctx context.Context, q *QMP) error {
	return q.Execute(ctx, "migrate-set-capabilities", map[string]any{
		"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}},
	}, nil)
}

// Save pauses the guest and writes its device state to statePath over a file descriptor (RAM is
// in the guest's shared memory file already, left out with x-ignore-shared): QEMU
// 7.2 has no file: URI, and an exec: one forks a shell, which its sandbox (spawn=deny) answers
// by killing QEMU.
func (b *Backend) Save(ctx context.Context, h vmm.Handle, statePath, _ string) error {
	ctx, cancel := context.WithTimeout(ctx, SaveTimeout)
	defer cancel()
	q, err := DialQMP(ctx, h.APISocket)
	if err != nil {
		return err
	}
	defer q.Close()
	f, err := os.OpenFile(statePath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("device state: %w", err)
	}
	defer f.Close()
	if err := q.Execute(ctx, "stop", nil, nil); err != nil {
		return err
	}
	if err := ignoreShared(ctx, q); err != nil {
		return err
	}
	if err := q.SendFD(ctx, "snapshot", f); err != nil {
		return err
	}
	if err := q.Execute(ctx, "migrate", map[string]any{"uri": "fd:snapshot"}, nil); err != nil {
		return err
	}
	if err := awaitMigration(ctx, q); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	return f.Sync()
}

// loadState loads a saved device state into a QEMU started with -incoming defer, and returns
// once it is loaded, the guest still paused.
func loadState(ctx context.Context, vm *vmm.VM, socket, statePath, logPath string) error {
	ctx, cancel := context.WithTimeout(ctx, LoadTimeout)
	defer cancel()
	f, err := os.Open(statePath)
	if err != nil {
		return fmt.Errorf("device state: %w", err)
	}
	defer f.Close()
	q, err := DialQMP(ctx, socket)
	if err != nil {
		return err
	}
	defer q.Close()
	if err := ignoreShared(ctx, q); err != nil {
		return err
	}
	if err := q.SendFD(ctx, "incoming", f); err != nil {
		return err
	}
	if err := q.Execute(ctx, "migrate-incoming", map[string]any{"uri": "fd:incoming"}, nil); err != nil {
		return err
	}
	if err := awaitMigration(ctx, q); err != nil {
		// A state QEMU cannot load makes it exit: its log says why.
		select {
		case <-vm.Done():
			return fmt.Errorf("load the saved state: QEMU exited: %s", vmm.LogTail(logPath, "QEMU"))
		case <-time.After(100 * time.Millisecond):
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("load the saved state %s: not loaded within %s (%w)", statePath, LoadTimeout, err)
		}
		return fmt.Errorf("load the saved state: %w", err)
	}
	return nil
}

// awaitMigration polls query-migrate until the migration completed or failed.
func awaitMigration(ctx context.Context, q *QMP) error {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := q.Execute(ctx, "query-migrate", nil, &st); err != nil {
			return err
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			if st.ErrorDesc == "" {
				st.ErrorDesc = "no reason given"
			}
			return fmt.Errorf("migration %s: %s", st.Status, st.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("migration still %q: %w", st.Status, ctx.Err())
		case <-tick.C:
		}
	}
}

// DialControl connects to the guest's control port.
func (b *Backend) DialControl(ctx context.Context, h vmm.Handle) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", h.ControlSocket)
	if err != nil {
		return nil, fmt.Errorf("control channel %s: %w", h.ControlSocket, err)
	}
	return c, nil
}

// Resume runs a guest whose saved state was loaded.
func (b *Backend) Resume(ctx context.Context, h vmm.Handle) error {
	q, err := DialQMP(ctx, h.APISocket)
	if err != nil {
		return err
	}
	defer q.Close()
	return q.Execute(ctx, "cont", nil, nil)
}

// SendFD hands f to QEMU under name (QMP getfd: the descriptor travels as SCM_RIGHTS with the
// command); a migration URI then names it as fd:NAME.
func (q *QMP) SendFD(ctx context.Context, name string, f *os.File) error {
	uc, ok := q.conn.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("QMP %s is not a unix socket: cannot pass a file descriptor", q.path)
	}
	return q.execute(ctx, "getfd", map[string]any{"fdname": name}, nil, func(b []byte) error {
		_, _, err := uc.WriteMsgUnix(b, unix.UnixRights(int(f.Fd())), nil)
		return err
	})
}

// Layout is QEMU's command line for spec with what differs between a save and its restores
// masked: every path (files, sockets, the memory file), the kernel command line (the kernel is
// running already), published ports, and whether the guest is saved or restored.
func (b *Backend) Layout(spec vmm.Spec) (string, error) {
	s := spec
	s.Net.Publish = nil
	if s.Memory != nil {
		s.Memory = &vmm.MemoryFile{Path: "MEMORY"}
	}
	s.Incoming = ""
	a, err := Args(s)
	if err != nil {
		return "", err
	}
	for i := range a {
		switch {
		case i > 0 && (a[i-1] == "-append" || a[i-1] == "-kernel" || a[i-1] == "-initrd" || a[i-1] == "-qmp"):
			a[i] = "X"
		default:
			a[i] = layoutPath.ReplaceAllString(a[i], "${1}=X")
		}
	}
	return strings.Join(a, " "), nil
}

// BootCmdline is Cmdline's line for spec with tsc_early_khz's value masked: the host's TSC rate,
// measured again at each host boot, is not a setting of the guest's.
func (b *Backend) BootCmdline(spec vmm.Spec) string {
	fields := strings.Fields(Cmdline(spec.Cmdline, spec.Accel))
	for i, f := range fields {
		if strings.HasPrefix(f, "tsc_early_khz=") {
			fields[i] = "tsc_early_khz=X"
		}
	}
	return strings.Join(fields, " ")
}

// layoutPath matches a path in an option's value (commas in a path are doubled, as escape does).
var layoutPath = regexp.MustCompile(`\b(path|file|mem-path|ifname)=(?:[^,]|,,)*`)
