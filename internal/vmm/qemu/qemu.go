// Package qemu is the QEMU backend: a -M microvm guest with virtio-mmio devices, the serial
// console and the guest's event port written to files, the control port and QMP on unix
// sockets, confined by -sandbox.
package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/vmm"
)

// Name is the backend's name in state and messages.
const Name vmm.BackendName = "qemu"

// Install says how to get QEMU.
const Install = "apt-get install qemu-system-x86"

// StartTimeout bounds the time from exec to a QMP socket that answers.
const StartTimeout = 15 * time.Second

// Backend runs guests with qemu-system-x86_64.
type Backend struct {
	Binary string // vmm.QEMUBinary when empty
	Log    *slog.Logger
}

// New returns the QEMU backend.
func New(log *slog.Logger) *Backend {
	if log == nil {
		log = slog.Default()
	}
	return &Backend{Binary: vmm.QEMUBinary, Log: log}
}

var _ vmm.Backend = (*Backend)(nil)

func (b *Backend) Name() vmm.BackendName { return Name }

func (b *Backend) Capabilities() vmm.Capabilities {
	return vmm.Capabilities{
		Accelerators: []string{vmm.AccelKVM, vmm.AccelTCG},
		Nets:         []abi.NetMode{abi.NetUser, abi.NetTap, abi.NetNone},
		Snapshots:    true,
		ControlChan:  "virtio-serial",
	}
}

// escape doubles commas, QEMU's option separator, in a value such as a path.
func escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// Cmdline returns the kernel command line for accel: base plus what this backend needs, before
// a "--" in base (the words after it are init's arguments).
// Under TCG on microvm about 1 boot in 4 hangs calibrating the TSC without tsc_early_khz.
func Cmdline(base, accel string) string {
	fields, initArgs := splitInitArgs(base)
	has := func(key string) bool {
		for _, f := range fields {
			if f == key || strings.HasPrefix(f, key+"=") {
				return true
			}
		}
		return false
	}
	if !has("console") {
		fields = append(fields, "console=ttyS0")
	}
	if accel == vmm.AccelTCG {
		// The kernel takes the last tsc_early_khz; the host's measured rate replaces the image's
		// default (which only has to avoid the calibration hang).
		if khz := hostTSCKHz(); khz > 0 {
			fields = append(fields, "tsc_early_khz="+strconv.FormatInt(khz, 10))
		} else if !has("tsc_early_khz") {
			fields = append(fields, "tsc_early_khz=2000000")
		}
		// The guest's TSC is the host's, which keeps its rate whatever the load; the kernel's
		// clocksource watchdog checks it against jiffies, which fall behind when a busy host
		// starves the vCPU, and then drops the TSC for those lagging ticks: the guest's clock
		// lost seconds, and every span placed by it (trace, perf) moved late by as much.
		if !has("tsc") {
			fields = append(fields, "tsc=reliable")
		}
	}
	return strings.Join(append(fields, initArgs...), " ")
}

// splitInitArgs splits a kernel command line into the kernel's words and, from a "--" on, the
// words the kernel hands to init as arguments.
func splitInitArgs(cmdline string) (kernel, initArgs []string) {
	fields := strings.Fields(cmdline)
	if i := slices.Index(fields, "--"); i >= 0 {
		return slices.Clip(fields[:i]), fields[i:] // clipped: appending must not overwrite "--"
	}
	return fields, nil
}

// withKernelArg adds word to cmdline's kernel words, before any init arguments.
func withKernelArg(cmdline, word string) string {
	fields, initArgs := splitInitArgs(cmdline)
	return strings.Join(append(append(fields, word), initArgs...), " ")
}

// Args returns QEMU's command line (without the binary) for spec, with the paths QEMU opens.
func Args(spec vmm.Spec) ([]string, error) { return args(spec, nil) }

// args is QEMU's command line; with p, QEMU gets p's open files in place of paths.
func args(spec vmm.Spec, p *passed) ([]string, error) {
	if spec.Kernel == "" {
		return nil, errors.New("no kernel to boot")
	}
	if spec.APISocket == "" || spec.ConsolePath == "" {
		return nil, errors.New("QEMU needs a QMP socket path and a console path")
	}
	vcpu, mem := spec.VCPU, spec.MemoryMB
	if vcpu <= 0 {
		vcpu = 1
	}
	if mem <= 0 {
		mem = 256
	}
	a := []string{"-M", "microvm,pit=on,pic=on,rtc=on"}
	switch spec.Accel {
	case vmm.AccelTCG:
		a = append(a, "-accel", "tcg", "-cpu", CPUModelTCG)
		// Guest RAM from a memfd rather than QEMU's default anonymous memory, which QEMU marks
		// for transparent huge pages: there every first touch of a 2 MiB region by the guest
		// costs the host a 2 MiB clear, and on a host whose THP defrag is "madvise" (the
		// default) often a compaction stall in the vCPU thread first. A memfd is shmem, which
		// gets 4 KiB pages under the default shmem_enabled=never. Under TCG that is the guest's
		// own time: the minimal image's cold start got about 50 ms faster and steadier
		// (docs/PERFORMANCE.md). KVM keeps huge pages, which its nested page tables benefit from.
		if spec.Memory == nil {
			a = append(a, "-object", fmt.Sprintf("memory-backend-memfd,id=ram,size=%dM", mem),
				"-machine", "memory-backend=ram")
		}
	case vmm.AccelKVM:
		// The default CPU model: -cpu host and max abort on hosts whose KVM lacks some MSRs.
		a = append(a, "-accel", "kvm")
	default:
		return nil, fmt.Errorf("accelerator %q unknown; expected kvm or tcg", spec.Accel)
	}
	if spec.Memory != nil {
		a = append(a, memoryArgs(spec, mem, p)...)
	}
	if spec.Incoming != "" {
		a = append(a, "-incoming", "defer") // the state comes over QMP (loadState)
	}
	kernel, initrd := spec.Kernel, spec.Initrd
	if p != nil {
		// The API socket's path stays on the command line: vmm.Handle.Alive looks for it there.
		a = append(a, "-name", "guest="+escape(spec.APISocket))
		kernel = p.proc(p.kernel)
		if p.initrd != nil {
			initrd = p.proc(p.initrd)
		}
	}
	a = append(a,
		"-m", strconv.Itoa(mem), "-smp", strconv.Itoa(vcpu),
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-kernel", kernel)
	if spec.Initrd != "" {
		a = append(a, "-initrd", initrd)
	}
	cmdline := Cmdline(spec.Cmdline, spec.Accel)
	switch {
	case spec.OutputSocket != "" && spec.OutputPort:
		cmdline = withKernelArg(cmdline, abi.OutputPortFlag)
	case spec.OutputSocket != "":
		cmdline = withKernelArg(cmdline, abi.OutputSerialFlag)
	}
	if spec.ExecSocket != "" {
		cmdline = withKernelArg(cmdline, execCmdline())
	}
	console := escape(spec.ConsolePath)
	if p != nil {
		console = p.fdset(&a, spec.ConsolePath, p.console)
	}
	a = append(a, "-append", cmdline,
		"-chardev", // append: the host bounds the file by truncating it (guestlog.TruncateCopy).
		"file,id=con,path="+console+",append=on", "-serial", "chardev:con")
	var outChardev []string
	if spec.OutputSocket != "" {
		// The host listens; QEMU connects at its start.
		out := "path=" + escape(spec.OutputSocket)
		if p != nil {
			out = "fd=" + p.fd(p.output)
		}
		outChardev = []string{"-chardev", "socket,id=out," + out + ",server=off"}
	}
	if outChardev != nil && !spec.OutputPort {
		// The second UART (ttyS1 at the legacy 0x2f8).
		a = append(a, outChardev...)
		a = append(a, "-device", "isa-serial,chardev=out,index=1")
	}
	for i, d := range spec.Disks {
		file := escape(d.Path)
		if p != nil {
			file = p.fdset(&a, d.Path, p.disks[i]...)
		}
		drive := "id=" + d.ID + ",file=" + file + ",format=raw,if=none"
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		a = append(a, "-drive", drive, "-device", "virtio-blk-device,drive="+d.ID)
	}
	if spec.EventsPath != "" || spec.ControlSocket != "" || spec.ExecSocket != "" || (outChardev != nil && spec.OutputPort) {
		a = append(a, "-device", "virtio-serial-device")
	}
	if outChardev != nil && spec.OutputPort {
		a = append(a, outChardev...)
		a = append(a, "-device", "virtserialport,chardev=out,name="+abi.OutputPort)
	}
	if spec.EventsPath != "" {
		events := escape(spec.EventsPath)
		if p != nil {
			events = p.fdset(&a, spec.EventsPath, p.events)
		}
		a = append(a, "-chardev", "file,id=ev,path="+events,
			"-device", "virtserialport,chardev=ev,name="+abi.EventsPort)
	}
	if spec.ControlSocket != "" {
		ctl := "path=" + escape(spec.ControlSocket)
		if p != nil {
			ctl = "fd=" + p.fd(p.control)
		}
		a = append(a, "-chardev", "socket,id=ctl,"+ctl+",server=on,wait=off",
			"-device", "virtserialport,chardev=ctl,name="+abi.ControlPort)
	}
	a = execArgs(a, spec, p)
	switch spec.Net.Mode {
	case abi.NetUser:
		nd := "user,id=n0"
		for _, p := range spec.Net.Publish {
			nd += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", p.Host, p.Guest)
		}
		a = append(a, "-netdev", nd, "-device", "virtio-net-device,netdev=n0")
	case abi.NetTap:
		if len(spec.Net.Publish) > 0 {
			return nil, errors.New("publishing ports needs --net user; a tap device is reachable directly")
		}
		tap := "ifname=" + escape(spec.Net.Iface) + ",script=no,downscript=no"
		if p != nil {
			tap = "fd=" + p.fd(p.tap)
		}
		a = append(a, "-netdev", "tap,id=n0,"+tap, "-device", "virtio-net-device,netdev=n0")
	case abi.NetNone, "":
	default:
		return nil, fmt.Errorf("network mode %q unknown; expected user, tap or none", spec.Net.Mode)
	}
	if p != nil {
		a = append(a, "-chardev", "socket,id=qmp,fd="+p.fd(p.qmp)+",server=on,wait=off", "-mon", "chardev=qmp,mode=control")
	} else {
		a = append(a, "-qmp", "unix:"+escape(spec.APISocket)+",server=on,wait=off")
	}
	return a, nil
}

// CheckNet verifies on the host what the network mode needs, before QEMU starts: a tap device
// must exist (QEMU would otherwise try to create one and fail late, or need root), and each
// published host port must be free on 127.0.0.1.
func CheckNet(n vmm.Net) error {
	switch n.Mode {
	case abi.NetTap:
		if n.Iface == "" {
			return errors.New("--net tap needs a device: --net tap:IFACE")
		}
		if _, err := os.Stat(filepath.Join("/sys/class/net", n.Iface)); err != nil {
			return fmt.Errorf("tap device %q does not exist (no /sys/class/net/%s); create it first, e.g. `ip tuntap add dev %s mode tap user $USER && ip link set %s up`", n.Iface, n.Iface, n.Iface, n.Iface)
		}
		if _, err := os.Stat(filepath.Join("/sys/class/net", n.Iface, "tun_flags")); err != nil {
			return fmt.Errorf("network device %q is not a tap device (no /sys/class/net/%s/tun_flags)", n.Iface, n.Iface)
		}
	case abi.NetUser:
		for _, p := range n.Publish {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p.Host))
			if err != nil {
				return fmt.Errorf("--publish %s: host port %d on 127.0.0.1 is not free: %w; publish another host port (--publish PORT:%d)", p, p.Host, err, p.Guest)
			}
			l.Close()
		}
	}
	return nil
}

// Start launches QEMU for spec and returns once QMP answers and the disks are open.
func (b *Backend) Start(ctx context.Context, spec vmm.Spec) (*vmm.VM, error) {
	bin := b.Binary
	if bin == "" {
		bin = vmm.QEMUBinary
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("%s not found on PATH: install qemu-system-x86", bin)
	}
	if err := CheckNet(spec.Net); err != nil {
		return nil, err
	}
	if _, err := Args(spec); err != nil { // before any socket is made
		return nil, err
	}
	sockets := []string{spec.APISocket, spec.ControlSocket, spec.OutputSocket}
	if spec.ExecSocket != "" {
		for i := range abi.ExecPorts {
			sockets = append(sockets, ExecSocket(spec.ExecSocket, i))
		}
	}
	for _, s := range sockets {
		if s == "" {
			continue
		}
		// QEMU's command line doubles commas, so a state path with one would not be recognised
		// as this guest's in /proc/PID/cmdline (vmm.Handle.Alive).
		if strings.Contains(s, ",") {
			return nil, fmt.Errorf("socket path %s contains a comma, which QEMU's options cannot carry reliably: use a state directory without one (XDG_RUNTIME_DIR)", s)
		}
		// A unix socket path longer than sun_path would be cut short by QEMU.
		if len(s) >= 108 {
			return nil, fmt.Errorf("socket path %s is %d bytes; unix sockets allow 107: use a shorter state directory (XDG_RUNTIME_DIR)", s, len(s))
		}
		if err := os.Remove(s); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove old socket %s: %w", s, err)
		}
	}
	var output net.Listener
	if spec.OutputSocket != "" {
		// QEMU connects at its start (server=off): the host listens first.
		if output, err = vmm.ListenOutput(spec.OutputSocket); err != nil {
			return nil, err
		}
	}
	closeOutput := func() {
		if output != nil {
			output.Close()
		}
	}
	cmd := exec.Command(path)
	// Its own process group: a Ctrl-C at the terminal reaches ukernel, which stops the guest
	// gracefully, instead of killing QEMU under it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var p *passed
	if vmm.Unprivileged() {
		if reason := vmm.KVMAccess(); spec.Accel == vmm.AccelKVM && reason != "" {
			closeOutput()
			return nil, errors.New(reason)
		}
		if p, err = openPassed(spec, output); err != nil {
			closeOutput()
			return nil, fmt.Errorf("QEMU's files: %w", err)
		}
		defer p.close() // QEMU has its own copies once started
		cmd.SysProcAttr.Credential = vmm.UnprivilegedCredential(spec.Accel == vmm.AccelKVM)
		// slirp binds the published host ports as QEMU's user: a privileged one needs this
		// capability, and only then is it kept.
		low := vmm.UnprivilegedPortStart()
		for _, port := range spec.Net.Publish {
			if spec.Net.Mode == abi.NetUser && port.Host < low {
				cmd.SysProcAttr.AmbientCaps = []uintptr{unix.CAP_NET_BIND_SERVICE}
			}
		}
	}
	argv, err := args(spec, p)
	if err != nil {
		closeOutput()
		return nil, err
	}
	cmd.Args = append(cmd.Args, argv...)
	if p != nil {
		cmd.ExtraFiles = p.extra
	}
	logPath := spec.LogPath
	if logPath == "" {
		logPath = os.DevNull
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		closeOutput()
		return nil, fmt.Errorf("QEMU log: %w", err)
	}
	defer logf.Close()
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = vmm.Env()
	b.Log.Debug("starting QEMU", "args", strings.Join(argv, " "))
	wait, err := vmm.StartTied(cmd)
	if err != nil {
		closeOutput()
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	h := vmm.Handle{Backend: Name, PID: cmd.Process.Pid, ControlSocket: spec.ControlSocket, APISocket: spec.APISocket, ExecSocket: spec.ExecSocket}
	vm := vmm.NewVM(h, wait)
	vm.Output = output
	err = vmm.WritePIDFile(spec, h.PID)
	if err == nil {
		err = b.awaitReady(ctx, vm, spec, logPath)
	}
	if err == nil && spec.Incoming != "" {
		vm.LoadStart = time.Now()
		err = loadState(ctx, vm, spec.APISocket, spec.Incoming, logPath)
	}
	if err != nil {
		syscall.Kill(-h.PID, syscall.SIGKILL)
		wctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		vm.Wait(wctx)
		closeOutput()
		return nil, err
	}
	return vm, nil
}

// awaitReady waits until QMP answers and reports every disk of spec inserted, or QEMU exits.
func (b *Backend) awaitReady(ctx context.Context, vm *vmm.VM, spec vmm.Spec, logPath string) error {
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-vm.Done():
			return fmt.Errorf("QEMU exited while starting (%v): %s", vm.Wait(ctx), vmm.LogTail(logPath, "QEMU"))
		case <-ctx.Done():
			return fmt.Errorf("QEMU (pid %d) did not answer on its QMP socket %s within %s: %s", vm.PID, spec.APISocket, StartTimeout, vmm.LogTail(logPath, "QEMU"))
		case <-tick.C:
		}
		if _, err := os.Stat(spec.APISocket); err != nil {
			continue
		}
		qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
		err := checkDisks(qctx, spec)
		qcancel()
		if err == nil {
			return nil
		}
		b.Log.Debug("QEMU not ready yet", "err", err)
	}
}

func checkDisks(ctx context.Context, spec vmm.Spec) error {
	q, err := DialQMP(ctx, spec.APISocket)
	if err != nil {
		return err
	}
	defer q.Close()
	var blocks []struct {
		Device   string           `json:"device"`
		Inserted *json.RawMessage `json:"inserted"`
	}
	if err := q.Execute(ctx, "query-block", nil, &blocks); err != nil {
		return err
	}
	open := map[string]bool{}
	for _, bl := range blocks {
		open[bl.Device] = bl.Inserted != nil
	}
	for _, d := range spec.Disks {
		if !open[d.ID] {
			return fmt.Errorf("disk %s (%s) not open yet", d.ID, d.Path)
		}
	}
	return nil
}

// RequestStop writes a stop request to the guest's control port.
// The connection stays open: QEMU passes the bytes on only while the guest has the port open,
// and drops what it has not passed on when the host hangs up.
func (b *Backend) RequestStop(ctx context.Context, h vmm.Handle, grace time.Duration) (io.Closer, error) {
	if h.ControlSocket == "" {
		return nil, errors.New("guest has no control channel")
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", h.ControlSocket)
	if err != nil {
		return nil, fmt.Errorf("control channel %s: %w", h.ControlSocket, err)
	}
	return vmm.SendStop(ctx, conn, h.ControlSocket, grace)
}

// Quit asks QEMU over QMP to exit now.
func (b *Backend) Quit(ctx context.Context, h vmm.Handle) error {
	q, err := DialQMP(ctx, h.APISocket)
	if err != nil {
		return err
	}
	defer q.Close()
	if err := q.Execute(ctx, "quit", nil, nil); err != nil {
		// QEMU may close the socket before its reply arrives; it is quitting either way.
		var ne net.Error
		if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			return err
		}
		b.Log.Debug("QMP quit", "err", err)
	}
	return nil
}
