// Package vmm defines what a virtual machine monitor backend does for ukernel (start a guest,
// ask it to stop, force it to stop) and the parts every backend shares: the stop sequence with
// its deadlines, process checks, the VMM's process (tied to its starter, its environment, the
// unprivileged user a root ukernel starts it as). Which backend and accelerator a run uses is
// decided in package backends; the KVM probe is package kvmprobe, the boot files package
// bootfiles, the host report package hostcheck.
package vmm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// BackendName names a backend in flags, state and messages ("qemu"). Each backend package
// defines its own; the registry (package backends) lists them.
type BackendName string

// Backend is one VMM (QEMU, Firecracker).
type Backend interface {
	// Name is the short name shown by `run` and `ps` ("qemu").
	Name() BackendName
	// Capabilities says what this backend can do on this host.
	Capabilities() Capabilities
	// Start launches the VMM for spec and returns once the VMM has taken its configuration
	// (devices opened, API socket answering). The VMM runs in its own process group and keeps
	// running when ctx ends; stop it with Stop.
	Start(ctx context.Context, spec Spec) (*VM, error)
	// RequestStop asks the guest to stop its workload within grace and power off, over the
	// control channel. It returns once the request is sent, not when the guest is gone; the
	// caller closes the returned channel connection after the guest is gone or given up on
	// (a virtio-serial message is dropped if the host hangs up before the guest reads it).
	RequestStop(ctx context.Context, h Handle, grace time.Duration) (io.Closer, error)
	// Quit makes the VMM exit now, without the guest's cooperation (QMP quit).
	Quit(ctx context.Context, h Handle) error
}

// Capabilities lists what a backend supports; the backend choice reads them.
type Capabilities struct {
	Accelerators []string      // accelerators it can use, best first
	Nets         []abi.NetMode // network modes it can give a guest
	Snapshots    bool
	NoSnapshots  string // why not, when Snapshots is false and the backend could with another setup
	ControlChan  string // how the control channel reaches the guest: "virtio-serial", "vsock"
}

// Spec is everything a backend needs to boot one guest.
type Spec struct {
	Name     string // guest name, for messages
	Kernel   string // bzImage (QEMU) or vmlinux (Firecracker)
	Initrd   string // may be empty
	Cmdline  string
	Disks    []Disk // in order: the image first, then the config drive
	VCPU     int
	MemoryMB int
	Accel    string // kvm or tcg
	Net      Net

	ConsolePath   string // the guest's serial console is written here
	EventsPath    string // the guest's event port is written here (events.jsonl)
	LogPath       string // the VMM's own stderr
	ControlSocket string // unix socket for the control channel
	// OutputSocket asks for the workload's output channel (abi.Frame): the backend listens on
	// this unix socket before the VMM starts (Firecracker: on its vsock's <uds_path>_PORT for
	// abi.OutputVsockPort instead) and hands the listener over in VM.Output.
	OutputSocket string
	// OutputPort puts the output channel on a virtio-serial port that init holds (abi.OutputPort)
	// instead of a serial port any root process of the guest can open: for a workload with one.
	OutputPort bool
	APISocket  string // unix socket for the VMM's API (QMP for QEMU)
	// Memory, when set, backs the guest's RAM with a file (snapshots; see MemoryFile).
	Memory *MemoryFile
	// Incoming, when set, is a device state saved by Snapshotter.Save: Start returns once it is
	// loaded, with the guest paused (RAM from a private Memory of the saved file); Resume runs it.
	Incoming string
	// ExecSocket is the prefix of the exec ports' unix sockets (QEMU; Firecracker's sessions go
	// over its vsock socket).
	ExecSocket string
	// PIDFile, when set, receives the VMM's pid as soon as its process exists, before the run
	// state can record it: a VMM whose ukernel dies while it is still starting is then found
	// and stopped instead of running on, unmanaged (runstate cleans it).
	PIDFile string
}

// WritePIDFile records pid in spec's PIDFile, if it has one.
func WritePIDFile(spec Spec, pid int) error {
	if spec.PIDFile == "" {
		return nil
	}
	if err := os.WriteFile(spec.PIDFile, []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		return fmt.Errorf("VMM pid file: %w", err)
	}
	return nil
}

// Disk is one block device.
type Disk struct {
	ID       string
	Path     string
	ReadOnly bool
}

// Net is the guest's network attachment.
type Net struct {
	Mode    abi.NetMode
	Iface   string // tap device for Mode tap
	Publish []Port // host->guest forwards for Mode user, on 127.0.0.1
}

// Setting is the network as --net names it (user, none, tap:IFACE).
func (n Net) Setting() abi.Net { return abi.Net{Mode: n.Mode, Iface: n.Iface} }

// Port is one published TCP port.
type Port struct{ Host, Guest int }

func (p Port) String() string { return fmt.Sprintf("%d:%d", p.Host, p.Guest) }

// Handle identifies a running VMM, also from another ukernel process (it is kept in the run
// state). The API socket path is unique per guest and appears on the VMM's command line, which
// tells our VMM apart from an unrelated process that reused its pid.
type Handle struct {
	Backend       BackendName `json:"backend"`
	PID           int         `json:"pid"`
	ControlSocket string      `json:"control_socket"`
	APISocket     string      `json:"api_socket"`
	ExecSocket    string      `json:"exec_socket,omitempty"` // vmm.Spec.ExecSocket
}

// ProcStat returns the fields of /proc/PID/stat after the parenthesised command name (which may
// itself hold spaces): [0] is the state (field 3), [19] the start time (field 22).
func ProcStat(pid int) ([]string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil, false
	}
	f := strings.Fields(string(b[i+1:]))
	return f, len(f) >= 20
}

// Alive reports whether the VMM of h still runs: the pid exists, is not a zombie, and its
// command line names h's API socket.
func (h Handle) Alive() bool {
	if h.PID <= 0 {
		return false
	}
	stat, ok := ProcStat(h.PID)
	if !ok || stat[0] == "Z" || stat[0] == "X" {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", h.PID))
	if err != nil {
		return false
	}
	return h.APISocket != "" && strings.Contains(string(cmdline), h.APISocket)
}

// WaitGone waits until the VMM of h has exited or ctx ends.
func WaitGone(ctx context.Context, h Handle) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for h.Alive() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// VM is a guest started by this process.
type VM struct {
	Handle
	// Output is where the guest's output channel connects (nil without Spec.OutputSocket).
	// The VMM connects once; whoever accepts owns the channel.
	Output net.Listener
	// LoadStart is when the backend began loading a saved state (Spec.Incoming), once its VMM
	// was up; zero for a boot. Start returned when the state was loaded.
	LoadStart time.Time
	done      chan struct{}
	waitErr   error
}

// ListenOutput listens on the unix socket path for a guest's output channel, replacing a stale
// socket there.
func ListenOutput(path string) (net.Listener, error) {
	if len(path) >= 108 {
		return nil, fmt.Errorf("socket path %s is %d bytes; unix sockets allow 107: use a shorter state directory (XDG_RUNTIME_DIR)", path, len(path))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove old socket %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("output channel: %w", err)
	}
	return l, nil
}

// NewVM wraps a started VMM: wait blocks until the VMM exits (exec.Cmd.Wait) and is called
// once, in its own goroutine, so the VMM is reaped as soon as it exits.
func NewVM(h Handle, wait func() error) *VM {
	vm := &VM{Handle: h, done: make(chan struct{})}
	go func() {
		vm.waitErr = wait()
		close(vm.done)
	}()
	return vm
}

// Done closes when the VMM has exited.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Wait waits for the VMM to exit and returns how it exited (nil for status 0).
func (vm *VM) Wait(ctx context.Context) error {
	select {
	case <-vm.done:
		return vm.waitErr
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s (pid %d) to exit: %w", vm.Backend, vm.PID, ctx.Err())
	}
}

// Deadlines of the stop sequence after the graceful period.
const (
	quitDeadline = 3 * time.Second
	killDeadline = 3 * time.Second
)

// StopResult says how a guest went away.
type StopResult string

const (
	StoppedGracefully StopResult = "graceful" // the guest powered off when asked
	StoppedByQuit     StopResult = "quit"     // the VMM quit on request
	StoppedByKill     StopResult = "killed"   // SIGKILL to the VMM's process group
	AlreadyGone       StopResult = "gone"
)

// Stop stops the guest of h: it asks the guest to stop within timeout, then tells the VMM to
// quit, then kills the VMM's process group. It returns when the VMM is gone, or an error saying
// which step did not finish in time.
func Stop(ctx context.Context, b Backend, h Handle, timeout time.Duration, log *slog.Logger) (StopResult, error) {
	if log == nil {
		log = slog.Default()
	}
	if !h.Alive() {
		return AlreadyGone, nil
	}
	// The guest's own grace (SIGTERM to SIGKILL of the workload) leaves time to power off.
	grace := timeout - time.Second
	if grace < time.Second {
		grace = time.Second
	}
	reqCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	conn, err := b.RequestStop(reqCtx, h, grace)
	cancel()
	if err != nil {
		log.Debug("graceful stop request failed", "pid", h.PID, "err", err)
	} else {
		gone := waitFor(ctx, h, timeout)
		conn.Close()
		if gone {
			return StoppedGracefully, nil
		}
	}
	quitCtx, cancel := context.WithTimeout(ctx, quitDeadline)
	err = b.Quit(quitCtx, h)
	cancel()
	if err != nil {
		log.Debug("quit request failed", "pid", h.PID, "err", err)
	} else if waitFor(ctx, h, quitDeadline) {
		return StoppedByQuit, nil
	}
	if err := Kill(h, log); err != nil {
		return "", err
	}
	if waitFor(ctx, h, killDeadline) {
		return StoppedByKill, nil
	}
	return "", fmt.Errorf("%s (pid %d) still runs %s after SIGKILL", h.Backend, h.PID, killDeadline)
}

// Kill sends SIGKILL to the VMM of h and its process group (the VMM leads its own group, so
// helpers it spawned go with it). A VMM that is already gone is fine.
func Kill(h Handle, log *slog.Logger) error {
	if err := syscall.Kill(-h.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		log.Debug("kill process group", "pgid", h.PID, "err", err)
		if err := syscall.Kill(h.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill %s (pid %d): %w", h.Backend, h.PID, err)
		}
	}
	return nil
}

func waitFor(ctx context.Context, h Handle, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return WaitGone(ctx, h) == nil
}

// LogTail returns the last lines a VMM wrote to its log file, for error messages; who names the
// VMM when it wrote nothing.
func LogTail(path, who string) string {
	data, err := os.ReadFile(path)
	if err != nil || len(strings.TrimSpace(string(data))) == 0 {
		return who + " printed nothing"
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, "; ")
}

// SendStop writes a stop request with the given grace to a control connection (virtio-serial
// socket or vsock stream) and returns the connection, which the caller keeps open until the
// guest is gone: a VMM drops what the guest has not read yet when the host hangs up.
func SendStop(ctx context.Context, conn net.Conn, name string, grace time.Duration) (io.Closer, error) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetWriteDeadline(dl)
	}
	msg, err := json.Marshal(abi.Control{Type: abi.ControlStop, GraceS: int((grace + time.Second - 1) / time.Second)})
	if err == nil {
		_, err = conn.Write(append(msg, '\n'))
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("control channel %s: send stop: %w", name, err)
	}
	return conn, nil
}
