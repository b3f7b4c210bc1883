// Package firecracker is the Firecracker backend: the firecracker process (under the jailer when
// running as root with the jailer installed) configured through its HTTP API on a unix socket,
// the serial console on its stdout, the guest's events and control messages over vsock.
//
// Firecracker cannot run on the development host (no usable KVM), so this backend is proven at
// the API level: the tests check every request against Firecracker's published API description.
package firecracker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/bootfiles"
)

// Name is the backend's name in state and messages.
const Name vmm.BackendName = "firecracker"

// Install says how to get Firecracker: Debian has no package of it.
const Install = "install a Firecracker release binary (firecracker-vX.Y.Z-x86_64) from github.com/firecracker-microvm/firecracker/releases as firecracker on PATH"

// Binaries looked up on PATH.
const (
	Binary       = "firecracker"
	JailerBinary = "jailer"
)

// GuestCID is the guest's vsock context id; each guest has its own vsock device and socket, so
// every guest can use the same one.
const GuestCID = 3

// StartTimeout bounds the time from exec to an API socket that answers.
const StartTimeout = 5 * time.Second

// Backend runs guests with Firecracker.
type Backend struct {
	Binary   string // Binary when empty
	Jailer   string // jailer binary; used only when running as root and it is on PATH
	NoJailer bool   // never use the jailer
	JailUID  int    // uid/gid the jailed firecracker runs as (65534 when 0)
	JailGID  int
	NetNS    string // network namespace path handed to the jailer, optional
	CacheDir string // where extracted vmlinux kernels are kept; the cache's cache.Vmlinux when empty
	Log      *slog.Logger

	mu    sync.Mutex
	jails map[string]*jail // the chroots of the guests this process started, by API socket
}

// New returns the Firecracker backend.
func New(log *slog.Logger) *Backend {
	if log == nil {
		log = slog.Default()
	}
	return &Backend{Binary: Binary, Jailer: JailerBinary, Log: log}
}

var _ vmm.Backend = (*Backend)(nil)

func (b *Backend) Name() vmm.BackendName { return Name }

func (b *Backend) Capabilities() vmm.Capabilities {
	c := vmm.Capabilities{
		Accelerators: []string{vmm.AccelKVM},
		Nets:         []abi.NetMode{abi.NetTap, abi.NetNone},
		// Only in the jailer's chroot: a snapshot records the paths Firecracker opened its drives
		// at, and only a chroot of its own gives each restore its own files at those paths.
		Snapshots:   b.useJailer(),
		ControlChan: "vsock",
	}
	if !c.Snapshots {
		c.NoSnapshots = NoSnapshots
	}
	return c
}

// NoSnapshots says why the backend takes and restores no snapshots without the jailer.
const NoSnapshots = "under Firecracker, snapshots need the jailer (ukernel as root, with jailer on PATH): each restore gets a chroot of its own, where the drive paths the snapshot recorded name its own files"

// BootArgs returns the kernel command line for Firecracker: base plus the serial console,
// reboot through the keyboard controller (Firecracker exits when the guest resets; it has no
// power-off), no PCI probing, and abi.FirecrackerFlag so the guest init knows to reboot
// rather than power off.
func BootArgs(base string) string {
	fields := strings.Fields(base)
	has := func(key string) bool {
		for _, f := range fields {
			if f == key || strings.HasPrefix(f, key+"=") {
				return true
			}
		}
		return false
	}
	for _, kv := range []string{"console=ttyS0", "reboot=k", "panic=1", "pci=off", abi.FirecrackerFlag} {
		k, _, _ := strings.Cut(kv, "=")
		if !has(k) {
			fields = append(fields, kv)
		}
	}
	return strings.Join(fields, " ")
}

// CheckNet says whether Firecracker can give the guest the network n: it has tap devices only.
func CheckNet(n vmm.Net) error {
	switch n.Mode {
	case abi.NetTap:
		if n.Iface == "" {
			return errors.New("--net tap needs a device: --net tap:IFACE")
		}
		if _, err := os.Stat(filepath.Join("/sys/class/net", n.Iface, "tun_flags")); err != nil {
			return fmt.Errorf("tap device %q does not exist or is not a tap device (no /sys/class/net/%s/tun_flags)", n.Iface, n.Iface)
		}
	case abi.NetNone, "":
	default:
		return fmt.Errorf("firecracker supports only tap networking, not %q: use --net tap:IFACE or --net none, or --backend qemu", n.Mode)
	}
	return nil
}

// Config is the API configuration of one guest, in the order it is sent.
type Config struct {
	Logger     Logger
	Metrics    Metrics
	BootSource BootSource
	Drives     []Drive
	Machine    MachineConfig
	Net        *NetworkInterface
	Vsock      *Vsock
}

// Configure sends cfg to Firecracker and starts the instance.
func Configure(ctx context.Context, c *Client, cfg Config) error {
	steps := []struct {
		path string
		body any
	}{
		{"/logger", cfg.Logger},
		{"/metrics", cfg.Metrics},
		{"/boot-source", cfg.BootSource},
	}
	for _, d := range cfg.Drives {
		steps = append(steps, struct {
			path string
			body any
		}{"/drives/" + d.DriveID, d})
	}
	steps = append(steps, struct {
		path string
		body any
	}{"/machine-config", cfg.Machine})
	if cfg.Net != nil {
		steps = append(steps, struct {
			path string
			body any
		}{"/network-interfaces/" + cfg.Net.IfaceID, cfg.Net})
	}
	if cfg.Vsock != nil {
		steps = append(steps, struct {
			path string
			body any
		}{"/vsock", cfg.Vsock})
	}
	for _, s := range steps {
		if err := c.Put(ctx, s.path, s.body); err != nil {
			return err
		}
	}
	return c.Put(ctx, "/actions", Action{ActionType: ActionInstanceStart})
}

// runFiles are the host paths a run uses; under the jailer, paths in the API are inside the chroot.
type runFiles struct {
	logPath, metricsPath string
}

func runFilesFor(spec vmm.Spec) runFiles {
	dir := filepath.Dir(spec.ConsolePath)
	if spec.LogPath != "" {
		dir = filepath.Dir(spec.LogPath)
	}
	return runFiles{logPath: filepath.Join(dir, "firecracker.log"), metricsPath: filepath.Join(dir, "firecracker-metrics.json")}
}

// Paths maps a run's host files to the paths Firecracker is given.
type Paths struct {
	File  func(host string) string // the kernel, initrd, log and metrics files
	Drive func(d vmm.Disk) string
	Vsock func(host string) string // the vsock device's socket
}

// HostPaths gives Firecracker the host's paths (no jailer).
var HostPaths = Paths{
	File:  func(p string) string { return p },
	Drive: func(d vmm.Disk) string { return d.Path },
	Vsock: func(p string) string { return p },
}

// ConfigFor returns the API configuration for spec booting kernel (an ELF vmlinux), with the
// paths Firecracker sees.
func ConfigFor(spec vmm.Spec, kernel string, path Paths) Config {
	rf := runFilesFor(spec)
	vcpu, mem := spec.VCPU, spec.MemoryMB
	if vcpu <= 0 {
		vcpu = 1
	}
	if mem <= 0 {
		mem = 256
	}
	cfg := Config{
		Logger:     Logger{LogPath: path.File(rf.logPath), Level: "Warning"},
		Metrics:    Metrics{MetricsPath: path.File(rf.metricsPath)},
		BootSource: BootSource{KernelImagePath: path.File(kernel), BootArgs: BootArgs(spec.Cmdline)},
		Machine:    MachineConfig{VCPUCount: vcpu, MemSizeMib: mem},
	}
	if spec.Initrd != "" {
		cfg.BootSource.InitrdPath = path.File(spec.Initrd)
	}
	// The guest finds its root partition by GPT name itself: no drive is Firecracker's root.
	for _, d := range spec.Disks {
		cfg.Drives = append(cfg.Drives, Drive{DriveID: d.ID, PathOnHost: path.Drive(d), IsReadOnly: d.ReadOnly})
	}
	if spec.Net.Mode == abi.NetTap {
		cfg.Net = &NetworkInterface{IfaceID: "eth0", HostDevName: spec.Net.Iface}
	}
	if spec.ControlSocket != "" {
		cfg.Vsock = &Vsock{GuestCID: GuestCID, UDSPath: path.Vsock(spec.ControlSocket)}
	}
	return cfg
}

// EventsSocket is where the host listens for the guest's event stream: Firecracker forwards a
// guest connection to host port P to the unix socket <uds_path>_P.
func EventsSocket(controlSocket string) string {
	return fmt.Sprintf("%s_%d", controlSocket, abi.EventsVsockPort)
}

// OutputSocket is where the host listens for the workload's output channel (abi.Frame), for the
// guest's connection to host port abi.OutputVsockPort.
func OutputSocket(controlSocket string) string {
	return fmt.Sprintf("%s_%d", controlSocket, abi.OutputVsockPort)
}

// Start launches Firecracker for spec, configures it through its API and starts the guest.
func (b *Backend) Start(ctx context.Context, spec vmm.Spec) (*vmm.VM, error) {
	bin := b.Binary
	if bin == "" {
		bin = Binary
	}
	fcPath, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("%s not found on PATH: install Firecracker (a release binary from its GitHub releases; Debian has no package)", bin)
	}
	if spec.Accel != "" && spec.Accel != vmm.AccelKVM {
		return nil, fmt.Errorf("firecracker runs only under KVM, not %q", spec.Accel)
	}
	if err := CheckNet(spec.Net); err != nil {
		return nil, err
	}
	if spec.APISocket == "" || spec.ConsolePath == "" {
		return nil, errors.New("firecracker needs an API socket path and a console path")
	}
	if spec.Kernel == "" {
		return nil, errors.New("no kernel to boot")
	}
	if spec.Incoming != "" && (spec.Memory == nil || spec.Memory.Shared) {
		return nil, errors.New("a restore needs the snapshot's memory file, mapped privately")
	}
	cacheDir := b.CacheDir
	if cacheDir == "" {
		dir, err := cache.DefaultDir()
		if err != nil {
			return nil, fmt.Errorf("vmlinux cache: %w", err)
		}
		cacheDir = cache.Vmlinux.In(dir)
	}
	kernel, err := bootfiles.Vmlinux(spec.Kernel, "", cacheDir)
	if err != nil {
		return nil, err
	}
	socks := []string{spec.APISocket}
	if spec.ControlSocket != "" {
		socks = append(socks, spec.ControlSocket, EventsSocket(spec.ControlSocket))
	}
	for _, s := range socks {
		if len(s) >= 108 {
			return nil, fmt.Errorf("socket path %s is %d bytes; unix sockets allow 107: use a shorter state directory (XDG_RUNTIME_DIR)", s, len(s))
		}
		if err := os.Remove(s); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove old socket %s: %w", s, err)
		}
	}
	var j *jail
	if b.useJailer() {
		if j, err = b.newJail(spec, fcPath); err != nil {
			return nil, err
		}
		// The host listens for the events at their socket's path in the chroot.
		if s := j.host(EventsSocket(jailVsock)); spec.EventsPath != "" && len(s) >= 108 {
			return nil, fmt.Errorf("socket path %s in the jailer's chroot is %d bytes; unix sockets allow 107: use a shorter state directory (XDG_RUNTIME_DIR)", s, len(s))
		}
	} else if spec.Incoming != "" || spec.Memory != nil {
		return nil, errors.New(NoSnapshots)
	}
	path := HostPaths
	if j != nil {
		path = j.paths()
	}
	cfg := ConfigFor(spec, kernel, path)
	if j != nil {
		if err := j.stage(spec, kernel, runFilesFor(spec)); err != nil {
			if rerr := j.remove(); rerr != nil {
				b.Log.Warn("jailer chroot", "err", rerr)
			}
			return nil, err
		}
	} else {
		rf := runFilesFor(spec)
		// Firecracker opens its log and metrics files without creating them.
		for _, p := range []string{rf.logPath, rf.metricsPath} {
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				return nil, fmt.Errorf("firecracker log: %w", err)
			}
		}
	}
	vm, err := b.exec(spec, fcPath, j)
	if err != nil {
		if j != nil {
			if rerr := j.remove(); rerr != nil {
				b.Log.Warn("jailer chroot", "err", rerr)
			}
		}
		return nil, err
	}
	fail := func(err error) (*vmm.VM, error) {
		syscall.Kill(-vm.PID, syscall.SIGKILL)
		wctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		vm.Wait(wctx)
		return nil, err
	}
	if spec.OutputSocket != "" && spec.ControlSocket != "" {
		// The guest connects once it runs, after Configure starts it.
		sock := OutputSocket(spec.ControlSocket)
		if j != nil {
			sock = j.host(OutputSocket(jailVsock))
		}
		if vm.Output, err = vmm.ListenOutput(sock); err != nil {
			return fail(err)
		}
		if j != nil {
			// The jailed firecracker runs as another user and must be able to connect.
			if err := os.Chmod(sock, 0o666); err != nil {
				vm.Output.Close()
				return fail(fmt.Errorf("output socket: %w", err))
			}
		}
	}
	client := NewClient(spec.APISocket)
	info, err := b.awaitAPI(ctx, vm, client, spec)
	if err != nil {
		if vm.Output != nil {
			vm.Output.Close()
		}
		return fail(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	configure := func() error { return Configure(cctx, client, cfg) }
	if spec.Incoming != "" {
		configure = func() error {
			vm.LoadStart = time.Now()
			return RestoreSequence(cctx, client, cfg, info.VMMVersion, jailState, jailMemory)
		}
	}
	if err := configure(); err != nil {
		if vm.Output != nil {
			vm.Output.Close()
		}
		return fail(fmt.Errorf("%w (see %s)", err, runFilesFor(spec).logPath))
	}
	if j != nil {
		// Firecracker has its kernel and disks (or a snapshot's state, memory and disks) open:
		// the user's files, and the config drive with the run's environment and secrets, leave
		// the chroot.
		if err := j.release(); err != nil {
			b.Log.Warn("jailer chroot", "err", err)
		}
	}
	return vm, nil
}

func (b *Backend) useJailer() bool {
	if b.NoJailer || os.Geteuid() != 0 || b.Jailer == "" {
		return false
	}
	_, err := exec.LookPath(b.Jailer)
	return err == nil
}

// exec starts the firecracker (or jailer) process and the listener for the guest's events.
func (b *Backend) exec(spec vmm.Spec, fcPath string, j *jail) (*vmm.VM, error) {
	var events *eventRelay
	if spec.ControlSocket != "" && spec.EventsPath != "" {
		sock := EventsSocket(spec.ControlSocket)
		if j != nil {
			sock = j.host(EventsSocket(jailVsock))
		}
		var err error
		if events, err = listenEvents(sock, spec.EventsPath, b.Log); err != nil {
			return nil, err
		}
		if j != nil {
			// The jailed firecracker runs as another user and must be able to connect.
			if err := os.Chmod(sock, 0o666); err != nil {
				events.abort()
				return nil, fmt.Errorf("events socket: %w", err)
			}
		}
	}
	logPath := spec.LogPath
	if logPath == "" {
		logPath = os.DevNull
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		events.abort()
		return nil, fmt.Errorf("firecracker log: %w", err)
	}
	defer logf.Close()
	// O_APPEND: the host bounds the file by truncating it (guestlog.TruncateCopy).
	console, err := os.OpenFile(spec.ConsolePath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		events.abort()
		return nil, fmt.Errorf("console: %w", err)
	}
	defer console.Close()
	var cmd *exec.Cmd
	if j != nil {
		jailer, _ := exec.LookPath(b.Jailer)
		cmd = exec.Command(jailer, j.args(fcPath, spec)...)
	} else {
		cmd = exec.Command(fcPath, Args(spec)...)
	}
	// Firecracker's serial console is its stdout.
	cmd.Stdout = console
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	b.Log.Debug("starting firecracker", "cmd", strings.Join(cmd.Args, " "))
	cmdWait, err := vmm.StartTied(cmd)
	if err != nil {
		events.abort()
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	if err := vmm.WritePIDFile(spec, cmd.Process.Pid); err != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmdWait()
		events.abort()
		if j != nil {
			j.remove()
		}
		return nil, err
	}
	if events != nil {
		go events.run()
	}
	h := vmm.Handle{Backend: Name, PID: cmd.Process.Pid, ControlSocket: spec.ControlSocket, APISocket: spec.APISocket}
	if j != nil {
		b.mu.Lock()
		if b.jails == nil {
			b.jails = map[string]*jail{}
		}
		b.jails[spec.APISocket] = j
		b.mu.Unlock()
	}
	wait := func() error {
		err := cmdWait()
		events.close()
		if j != nil {
			b.mu.Lock()
			delete(b.jails, spec.APISocket)
			b.mu.Unlock()
			if rerr := j.remove(); rerr != nil {
				b.Log.Warn("jailer chroot", "err", rerr)
			}
		}
		return err
	}
	return vmm.NewVM(h, wait), nil
}

// Args returns firecracker's command line (without the binary) for spec. The API socket path
// on the command line is what vmm.Handle.Alive recognises the process by.
func Args(spec vmm.Spec) []string {
	return append(jailedArgs(spec), "--id", InstanceID(spec.Name))
}

// jailedArgs are firecracker's arguments under the jailer, which gives it --id (and its start
// times) itself: firecracker refuses an argument given twice.
func jailedArgs(spec vmm.Spec) []string { return []string{"--api-sock", spec.APISocket} }

// InstanceID turns a guest name into an id Firecracker and the jailer accept (alphanumeric and
// hyphens, at most 64 characters).
func InstanceID(name string) string {
	var sb strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
			sb.WriteRune(r)
		default:
			sb.WriteByte('-')
		}
	}
	id := sb.String()
	if id == "" {
		id = "ukernel"
	}
	if len(id) > 64 {
		id = id[:64]
	}
	return id
}

// awaitAPI waits until the API socket answers GET /, or Firecracker exits, or StartTimeout, and
// returns the answer.
func (b *Backend) awaitAPI(ctx context.Context, vm *vmm.VM, c *Client, spec vmm.Spec) (InstanceInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-vm.Done():
			return InstanceInfo{}, fmt.Errorf("firecracker exited while starting (%v): %s", vm.Wait(ctx), vmm.LogTail(spec.LogPath, "firecracker"))
		case <-ctx.Done():
			return InstanceInfo{}, fmt.Errorf("firecracker (pid %d) did not answer on its API socket %s within %s: %s", vm.PID, spec.APISocket, StartTimeout, vmm.LogTail(spec.LogPath, "firecracker"))
		case <-tick.C:
		}
		if _, err := os.Stat(spec.APISocket); err != nil {
			continue
		}
		ictx, icancel := context.WithTimeout(ctx, time.Second)
		info, err := c.Info(ictx)
		icancel()
		if err == nil {
			b.Log.Debug("firecracker API ready", "id", info.ID, "version", info.VMMVersion, "state", info.State)
			return info, nil
		}
		b.Log.Debug("firecracker API not ready yet", "err", err)
	}
}

// RequestStop sends a stop request to the guest's control port over vsock: it connects to the
// vsock socket, asks Firecracker to forward to the guest's ControlVsockPort ("CONNECT <port>"),
// waits for "OK <host port>" and writes the control line. The connection stays open until the
// caller closes it.
func (b *Backend) RequestStop(ctx context.Context, h vmm.Handle, grace time.Duration) (io.Closer, error) {
	conn, err := DialVsock(ctx, h.ControlSocket, abi.ControlVsockPort)
	if err != nil {
		return nil, err
	}
	return vmm.SendStop(ctx, conn, h.ControlSocket, grace)
}

// DialVsock opens a host-initiated vsock connection to guest port through Firecracker's vsock
// socket uds, following its handshake ("CONNECT <port>\n", answered by "OK <host port>\n").
func DialVsock(ctx context.Context, uds string, port int) (net.Conn, error) {
	if uds == "" {
		return nil, errors.New("guest has no control channel (no vsock socket)")
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", uds)
	if err != nil {
		return nil, fmt.Errorf("vsock %s: %w", uds, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(conn, "CONNECT %d\n", port); err != nil {
		conn.Close()
		return nil, fmt.Errorf("vsock %s: CONNECT %d: %w", uds, port, err)
	}
	// Read byte by byte: bytes after the line belong to the guest's stream.
	var line []byte
	one := make([]byte, 1)
	for len(line) < 64 {
		if _, err := conn.Read(one); err != nil {
			conn.Close()
			return nil, fmt.Errorf("vsock %s: CONNECT %d: no answer (is the guest listening on port %d?): %w", uds, port, port, err)
		}
		if one[0] == '\n' {
			break
		}
		line = append(line, one[0])
	}
	if !strings.HasPrefix(string(line), "OK ") {
		conn.Close()
		return nil, fmt.Errorf("vsock %s: CONNECT %d: answer %q, want \"OK <port>\"", uds, port, line)
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// Quit asks Firecracker to reset the guest with Ctrl-Alt-Del; Firecracker exits on the reset.
// It has no "quit now" request: vmm.Stop kills the process after the deadline. A paused guest
// (a saved one) takes no key press: its Firecracker is killed at once.
func (b *Backend) Quit(ctx context.Context, h vmm.Handle) error {
	c := NewClient(h.APISocket)
	if info, err := c.Info(ctx); err == nil && info.State == StatePaused {
		return vmm.Kill(h, b.Log)
	}
	return c.Put(ctx, "/actions", Action{ActionType: ActionSendCtrlAltDel})
}

// Pause pauses the guest's vCPUs (PATCH /vm Paused), e.g. before a snapshot.
func (b *Backend) Pause(ctx context.Context, h vmm.Handle) error {
	return NewClient(h.APISocket).Patch(ctx, "/vm", VMState{State: StatePaused})
}

// Resume resumes a paused guest (PATCH /vm Resumed).
func (b *Backend) Resume(ctx context.Context, h vmm.Handle) error {
	return NewClient(h.APISocket).Patch(ctx, "/vm", VMState{State: StateResumed})
}

// CreateSnapshot writes a full snapshot of a paused guest: the VM state to snapshotPath and
// its memory to memPath (paths as Firecracker sees them).
func (b *Backend) CreateSnapshot(ctx context.Context, h vmm.Handle, snapshotPath, memPath string) error {
	return NewClient(h.APISocket).Put(ctx, "/snapshot/create", SnapshotCreate{SnapshotPath: snapshotPath, MemFilePath: memPath, SnapshotType: "Full"})
}

// relayDrain bounds how long the relay may take, once Firecracker has exited, to write what it
// sent; relayPoll is how long it waits for one more connection then. Firecracker connects before
// it exits, so a connection it made is already queued and is accepted without waiting.
const (
	relayDrain = 2 * time.Second
	relayPoll  = 5 * time.Millisecond
)

// eventRelay appends the guest's event stream, which arrives as connections to a unix socket,
// to the events file. It lives in the process that started the guest.
type eventRelay struct {
	ln      *net.UnixListener
	out     *os.File
	log     *slog.Logger
	once    sync.Once
	done    chan struct{} // closed when run has written everything and returned
	mu      sync.Mutex
	conn    net.Conn  // the connection being copied
	drainBy time.Time // set by close: the end of the relay
}

func listenEvents(sock, eventsPath string, log *slog.Logger) (*eventRelay, error) {
	out, err := os.OpenFile(eventsPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("events file: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		out.Close()
		return nil, fmt.Errorf("events socket: %w", err)
	}
	return &eventRelay{ln: ln, out: out, log: log, done: make(chan struct{})}, nil
}

// run accepts the guest's connections until close; each one's lines are appended in turn.
func (r *eventRelay) run() {
	defer close(r.done)
	defer r.out.Close()
	defer r.ln.Close()
	for {
		conn, err := r.ln.Accept()
		if err != nil {
			break // close wakes Accept with a deadline in the past
		}
		r.copy(conn)
	}
	// Firecracker has exited: take the connections it made before, which are queued already.
	for {
		r.mu.Lock()
		by := r.drainBy
		r.mu.Unlock()
		if by.IsZero() || !time.Now().Before(by) {
			return
		}
		if next := time.Now().Add(relayPoll); next.Before(by) {
			by = next
		}
		r.ln.SetDeadline(by)
		conn, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.copy(conn)
	}
}

// copy appends conn's lines to the events file until the guest (or Firecracker's exit) closes it.
func (r *eventRelay) copy(conn net.Conn) {
	defer conn.Close()
	r.mu.Lock()
	r.conn = conn
	if !r.drainBy.IsZero() {
		conn.SetReadDeadline(r.drainBy)
	}
	r.mu.Unlock()
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 64<<10), abi.MaxEventLine)
	for sc.Scan() {
		if _, err := r.out.Write(append(sc.Bytes(), '\n')); err != nil {
			r.log.Debug("events file", "err", err)
		}
	}
	r.mu.Lock()
	r.conn = nil
	r.mu.Unlock()
}

// close is called once Firecracker has exited. The guest's last events, the workload's exit
// among them, come just before that: close lets the relay write everything Firecracker sent
// and waits for it, relayDrain at most, so that whoever sees the VM finished finds them.
func (r *eventRelay) close() {
	if r == nil {
		return
	}
	r.once.Do(func() {
		r.mu.Lock()
		r.drainBy = time.Now().Add(relayDrain)
		if r.conn != nil {
			r.conn.SetReadDeadline(r.drainBy)
		}
		r.mu.Unlock()
		r.ln.SetDeadline(time.Now())
	})
	t := time.NewTimer(relayDrain + time.Second)
	defer t.Stop()
	select {
	case <-r.done:
	case <-t.C:
		r.log.Warn("events relay did not finish; the last events may be missing", "file", r.out.Name())
	}
}

// abort releases a relay that never ran.
func (r *eventRelay) abort() {
	if r != nil {
		r.ln.Close()
		r.out.Close()
	}
}
