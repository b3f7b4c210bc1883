// Package guest is ukernel-init, the guest's PID 1: it mounts the pseudo filesystems, loads the
// image's kernel modules, finds its disks and virtio-serial ports, reads the run-time config,
// assembles the root (read-only image + tmpfs overlay), configures the network, runs the
// entry and services, reports ABI events to the host and powers the VM off with the entry's
// exit code. cmd/ukernel-init is only a main that calls Main.
package guest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// Deadlines of the boot sequence. TCG is slow; these are generous but bounded.
const (
	DeviceTimeout = 5 * time.Second        // root disk and events port after module loading
	ControlGrace  = 500 * time.Millisecond // extra wait for the optional control port
	FlushTimeout  = 2 * time.Second        // events still queued at power-off
	ShutdownGrace = 3 * time.Second        // remaining services after the entry exited, unless the config says
	// HostChannelMaxDelay bounds the workload's head start before the host channel comes up
	// (see settled).
	HostChannelMaxDelay = 2 * time.Second
	FatalExitCode       = 125 // init's own failures
	eventQueueSize      = 1024
)

// pid1 holds init's state; Main builds it.
type pid1 struct {
	start      int64
	events     *Emitter
	console    *os.File
	out        *Output // the workload's output; nil until the output channel is settled
	log        *slog.Logger
	sup        *Supervisor
	layout     Layout
	manifest   *abi.Manifest
	cfg        *abi.BootConfig
	rootPart   BlockDev
	blockDevs  []BlockDev // as waitRoot found them
	modsDone   bool
	loadMu     sync.Mutex
	loaded     map[string]bool // module paths loaded so far, guarded by loadMu
	hostOnce   sync.Once
	portsOnce  sync.Once  // claimPorts
	evPort     *os.File   // the events port, claimed before the workload starts
	ctlPort    *os.File   // the control port, if the VMM has one
	execPorts  []*os.File // the exec channel's ports (exec.go), claimed with the others
	portsErr   error
	hostDone   chan struct{} // closed once the host channel is open, or failed to open
	hostGaveUp bool          // reachHost waited for the channel in vain
	mounted    bool
	dataDir    string // where the data volume is mounted, once it is
	secrets    SecretPlan
	healthMu   sync.Mutex
	health     []*healthRunner // the health checks running, for a restore to report
	stopReq    chan abi.Control
	stopWork   context.CancelFunc // ends the services' supervision
}

// Main runs PID 1 and never returns: it ends by powering the machine off. Anywhere but PID 1 it
// refuses to run: it would mount over /dev and kill every process on power-off.
func Main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "ukernel-init: error: must run as PID 1 of a ukernel guest, not on a host")
		os.Exit(2)
	}
	in := &pid1{
		start:    Now(),
		events:   NewEmitter(eventQueueSize),
		console:  os.Stderr,
		sup:      NewSupervisor(),
		layout:   DefaultLayout,
		stopReq:  make(chan abi.Control, 1),
		loaded:   map[string]bool{},
		hostDone: make(chan struct{}),
	}
	in.events.Emit(abi.Event{Type: abi.EventHello, Time: in.start, ABI: abi.Version})
	in.log = consoleLogger(in.console, slog.LevelWarn)
	in.poweroff(in.run())
}

// fatalError is a failure of init itself: what failed and why.
type fatalError struct {
	what string
	err  error
}

func (e *fatalError) Error() string { return e.what + ": " + e.err.Error() }

func fail(what string, err error) error { return &fatalError{what, err} }

// run boots the workload and returns its exit code, or a fatal error.
func (in *pid1) run() (code int, err error) {
	// Subscribe before anything can start a child: no SIGCHLD or forwarded signal is missed.
	sigchld := make(chan os.Signal, 16)
	signal.Notify(sigchld, syscall.SIGCHLD)
	go func() {
		for range sigchld {
			in.sup.Reap()
		}
	}()
	fwd := make(chan os.Signal, 4)
	signal.Notify(fwd, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	// The kernel shields init only from signals left at their default action, and the Go
	// runtime handles every signal: without this, a root workload's `kill -QUIT 1` would make
	// the runtime dump and exit, which panics the kernel. Noticed and dropped instead (not
	// ignored: ignored signals would be inherited by the workload).
	signal.Notify(make(chan os.Signal, 1), syscall.SIGQUIT, syscall.SIGABRT, syscall.SIGTRAP,
		syscall.SIGSYS, syscall.SIGSTKFLT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPIPE, syscall.SIGALRM)

	// Ctrl-Alt-Del (Firecracker's SendCtrlAltDel, a forced stop's first step) becomes a SIGINT
	// to init, which passes it on to the workload, instead of an immediate reset that would
	// skip the workload's shutdown, the exit code and /data's unmount.
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)
	if err := MountEarly(); err != nil {
		return 0, fail("mount pseudo filesystems", err)
	}
	in.openConsole()
	in.openOutput()

	data, err := os.ReadFile(abi.InitramfsManifest)
	if err != nil {
		return 0, fail("read manifest", err)
	}
	m, err := abi.DecodeManifest(data)
	if err != nil {
		return 0, fail("parse manifest "+abi.InitramfsManifest, err)
	}
	in.manifest = m
	if err := abi.Compatible(m.ABI); err != nil {
		return 0, fmt.Errorf("%w (manifest %s of image %q)", err, abi.InitramfsManifest, m.Name)
	}
	in.events.Phase("init", in.start)

	t := Now()
	if err := in.loadModules(); err != nil {
		return 0, fail("load kernel modules", err)
	}
	in.events.Phase("modules", t)

	t = Now()
	if err := in.waitRoot(); err != nil {
		return 0, fail("wait for devices", err)
	}
	in.events.Phase("devices", t)

	t = Now()
	if err := in.loadConfig(); err != nil {
		return 0, fail("read run-time config", err)
	}
	if in.cfg.Debug {
		in.log = consoleLogger(in.console, slog.LevelDebug)
	}
	in.events.Phase("config", t)

	t = Now()
	rootDev, err := in.verifiedRoot("/dev/" + in.rootPart.Name)
	if err != nil {
		return 0, err
	}
	if err := SetReadahead(rootDev, RootReadaheadKB); err != nil {
		in.log.Warn("root readahead unchanged", "err", err)
	}
	fstype := m.Root.FSType
	if fstype == "" {
		fstype = "erofs"
	}
	if err := MountRoot(in.layout, rootDev, fstype, EtcFiles(in.cfg.Hostname, in.cfg.Network.DNS)); err != nil {
		return 0, fail("mount root filesystem", err)
	}
	in.mounted = true
	if err := unix.Sethostname([]byte(in.cfg.Hostname)); err != nil {
		return 0, fail("set hostname "+in.cfg.Hostname, err)
	}
	in.events.Phase("mounts", t)

	t = Now()
	if in.cfg.Network.Mode != string(abi.NetNone) {
		if err := in.loadGroup(abi.ModulesNet); err != nil {
			return 0, fail("load network modules", err)
		}
	}
	nic, err := SetupNetwork(in.cfg.Network)
	if err != nil {
		return 0, fail("configure network", err)
	}
	in.log.Debug("network", "nic", nic, "mode", in.cfg.Network.Mode, "address", in.cfg.Network.Address)
	in.events.Phase("network", t)

	t = Now()
	if err := in.setupData(); err != nil {
		return 0, fail("mount data volume", err)
	}
	if err := in.setupSecrets(); err != nil {
		return 0, fail("write secrets", err)
	}
	in.events.Phase("workload-setup", t)

	// Under QEMU the host channel comes up once the workload's start is over (the guest's CPU
	// goes idle for the first time, or after HostChannelMaxDelay), or at power-off if that
	// comes first: its module and ports cost a TCG boot about 50 ms of its single vCPU, and its
	// first events cost encoding/json's first run, which a starting workload need not share.
	// Its events queue meanwhile, and a stop request waits in QEMU's socket. Firecracker has no
	// such buffer: a stop request fails until the guest listens on vsock, so there the channel
	// comes first. The ports' device nodes are root's alone (0600), so only a workload with a
	// root process could open them before init: then init claims them first (claimPorts), and
	// pays the module's time before the workload starts; its output channel is one of them
	// (abi.OutputPortFlag).
	if underFirecracker(kernelCmdline()) {
		in.connectHost()
	} else {
		if in.manifest.RootWorkload() {
			if err := in.claimPorts(); err != nil {
				in.log.Debug("host ports", "err", err) // connectHost reports it
			}
		}
		go func() {
			settled(HostChannelMaxDelay)
			in.connectHost()
		}()
	}
	return in.supervise(fwd)
}

// openOutput opens the output channel on the serial port the QEMU backend provides, first
// thing: its hello frame is the host's first sign that init runs. Firecracker's goes over vsock
// (openVsock); a VMM with neither leaves the output on the console.
func (in *pid1) openOutput() {
	if !slices.Contains(strings.Fields(kernelCmdline()), abi.OutputSerialFlag) {
		return // on a virtio-serial port (outputOnPort): claimPorts opens it
	}
	ch, err := openOutputSerial(abi.OutputSerialDevice)
	if err != nil {
		in.log.Warn("no output channel: the workload's output goes to the console", "device", abi.OutputSerialDevice, "err", err)
		return
	}
	in.out = NewOutput(ch, in.console)
}

// output returns the workload's output: the channel, or the console when there is none.
func (in *pid1) output() *Output {
	if in.out == nil {
		in.out = NewOutput(nil, in.console)
	}
	return in.out
}

// openConsole makes sure init's own messages reach the console, even when the kernel found no
// /dev/console in the initramfs and started init without fds 0-2.
func (in *pid1) openConsole() {
	if _, err := unix.FcntlInt(2, unix.F_GETFD, 0); err == nil {
		return
	}
	c, err := os.OpenFile("/dev/console", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return
	}
	for fd := 0; fd <= 2; fd++ {
		_ = unix.Dup3(int(c.Fd()), fd, 0)
	}
	in.console = os.NewFile(2, "/dev/console")
	in.log = consoleLogger(in.console, slog.LevelWarn)
}

// consoleLogger logs init's diagnostics on the console without timestamps (the kernel's clock is
// on the console already); warnings by default, everything when the boot config asks for debug.
func consoleLogger(w *os.File, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			if len(groups) == 0 && a.Key == slog.MessageKey {
				a.Value = slog.StringValue("ukernel-init: " + a.Value.String())
			}
			return a
		}}))
}

// loadModules loads the modules every boot needs: the manifest's modules except those of its
// groups, which load only when a run needs them (loadGroup).
func (in *pid1) loadModules() error {
	if in.modsDone {
		return nil
	}
	in.modsDone = true
	grouped := map[string]bool{}
	for _, g := range in.manifest.ModuleGroups {
		for _, m := range g {
			grouped[m] = true
		}
	}
	return in.load(func(m string) bool { return !grouped[m] })
}

// loadGroup loads the modules of one of the manifest's module groups (after the boot modules).
func (in *pid1) loadGroup(group string) error {
	if err := in.loadModules(); err != nil {
		return err
	}
	members := in.manifest.ModuleGroups[group]
	return in.load(func(m string) bool { return slices.Contains(members, m) })
}

// load loads, in the manifest's order, the modules that want selects and are not loaded yet.
func (in *pid1) load(want func(string) bool) error {
	release := in.manifest.Kernel.Release
	if release == "" {
		var u unix.Utsname
		if err := unix.Uname(&u); err == nil {
			release = unix.ByteSliceToString(u.Release[:])
		}
	}
	in.loadMu.Lock()
	defer in.loadMu.Unlock()
	for _, m := range in.manifest.Modules {
		if in.loaded[m] || !want(m) {
			continue
		}
		paths, err := ModulePaths("/", release, []string{m})
		if err != nil {
			return err
		}
		if err := LoadModule(paths[0]); err != nil {
			return err
		}
		in.loaded[m] = true
	}
	return nil
}

// waitRoot waits for the disk holding the root partition.
func (in *pid1) waitRoot() error {
	return Poll(DeviceTimeout, 2*time.Millisecond, func() (string, error) {
		devs, err := BlockDevices("/sys")
		if err != nil {
			return "", err
		}
		root, ok := FindPartition(devs, abi.RootLabel)
		if !ok {
			return fmt.Sprintf("the root disk (a GPT partition named %q; block devices: %s)", abi.RootLabel, devNames(devs)), nil
		}
		in.rootPart, in.blockDevs = root, devs
		return "", nil
	})
}

// connectHost opens the channel to the host: events out, control requests in. It runs once:
// beside the workload, or at power-off, or right away after an early failure (so the host learns
// why the guest stops). hostDone closes when it is over, opened or not.
func (in *pid1) connectHost() {
	in.hostOnce.Do(func() {
		defer close(in.hostDone)
		var err error
		if underFirecracker(kernelCmdline()) {
			if err = in.loadGroup(abi.ModulesVsock); err == nil {
				err = in.openVsock()
			}
		} else if err = in.claimPorts(); err == nil {
			in.attachPorts()
		}
		if err != nil {
			fmt.Fprintf(in.console, "ukernel-init: error: no channel to the host (events and stop requests are lost): %v\n", err)
		}
	})
}

// waitPorts waits for the events port, then briefly for the optional control port, and returns
// the port map.
func (in *pid1) waitPorts() (map[string]string, error) {
	var ports map[string]string
	var ready time.Time // when the events port was there
	err := Poll(DeviceTimeout, 5*time.Millisecond, func() (string, error) {
		var err error
		if ports, err = VirtioPorts("/sys"); err != nil {
			return "", err
		}
		if _, ok := ports[abi.EventsPort]; !ok {
			return fmt.Sprintf("the virtio-serial port %q (ports: %v)", abi.EventsPort, ports), nil
		}
		if ready.IsZero() {
			ready = time.Now()
		}
		if _, ok := ports[abi.OutputPort]; !ok && outputOnPort() {
			return fmt.Sprintf("the virtio-serial port %q (ports: %v)", abi.OutputPort, ports), nil
		}
		for i := range execPortCount(kernelCmdline()) {
			if _, ok := ports[abi.ExecPortName(i)]; !ok && time.Since(ready) < DeviceTimeout/2 {
				return fmt.Sprintf("the virtio-serial port %q (ports: %v)", abi.ExecPortName(i), ports), nil
			}
		}
		if _, ok := ports[abi.ControlPort]; ok {
			return "", nil
		}
		if time.Since(ready) < ControlGrace {
			return "the control port", nil
		}
		return "", nil
	})
	if err != nil && !ready.IsZero() {
		return ports, nil // only the optional control port is missing
	}
	return ports, err
}

func devNames(devs []BlockDev) string {
	if len(devs) == 0 {
		return "none"
	}
	s := ""
	for i, d := range devs {
		if i > 0 {
			s += ","
		}
		s += d.Name
	}
	return s
}

// claimPorts opens the virtio-serial ports to the host, once. For a workload with a root
// process it runs before that workload starts: a port opens only once (virtio_console refuses a second open with EBUSY, root or not),
// so a workload, even root's, cannot open the events port first and report an exit code of its
// choosing, nor read the host's stop requests.
func (in *pid1) claimPorts() error {
	in.portsOnce.Do(func() {
		in.portsErr = in.loadGroup(abi.ModulesVirtioSerial)
		var ports map[string]string
		if in.portsErr == nil {
			ports, in.portsErr = in.waitPorts()
		}
		if in.portsErr != nil {
			return
		}
		if in.evPort, in.portsErr = os.OpenFile("/dev/"+ports[abi.EventsPort], os.O_WRONLY, 0); in.portsErr != nil {
			in.portsErr = fmt.Errorf("events port %s: %w", abi.EventsPort, in.portsErr)
			return
		}
		if dev, ok := ports[abi.ControlPort]; ok {
			if in.ctlPort, in.portsErr = os.OpenFile("/dev/"+dev, os.O_RDONLY, 0); in.portsErr != nil {
				in.portsErr = fmt.Errorf("control port %s: %w", abi.ControlPort, in.portsErr)
				return
			}
		}
		// Only for a root workload, whose start waits for this: the host asks for the port
		// by the same rule (abi.Manifest.RootWorkload).
		if dev, ok := ports[abi.OutputPort]; ok && outputOnPort() && in.manifest.RootWorkload() && in.out == nil {
			if f, err := os.OpenFile("/dev/"+dev, os.O_WRONLY, 0); err != nil {
				in.log.Warn("no output channel: the workload's output goes to the console", "port", abi.OutputPort, "err", err)
			} else {
				in.out = NewOutput(f, in.console)
			}
		}
		for i := range execPortCount(kernelCmdline()) {
			// Without its exec ports the guest still runs and reports: exec says it gets no answer.
			name := abi.ExecPortName(i)
			dev, ok := ports[name]
			if !ok {
				in.log.Warn("exec port missing: fewer exec sessions at once", "port", name)
				continue
			}
			f, err := os.OpenFile("/dev/"+dev, os.O_RDWR, 0)
			if err != nil {
				in.log.Warn("exec port", "port", name, "err", err)
				continue
			}
			in.execPorts = append(in.execPorts, f)
		}
	})
	return in.portsErr
}

// outputOnPort reports whether the VMM offers the output channel on a virtio-serial port.
func outputOnPort() bool { return slices.Contains(strings.Fields(kernelCmdline()), abi.OutputPortFlag) }

// attachPorts starts the events and control traffic on the claimed ports.
func (in *pid1) attachPorts() {
	in.events.Attach(in.evPort)
	if in.ctlPort != nil {
		go in.readControl(in.ctlPort)
	} else {
		in.log.Warn("no control port: graceful stop from the host is not available", "port", abi.ControlPort)
	}
	for _, f := range in.execPorts {
		go in.servePort(f)
	}
}

// readControl turns control lines from the host into requests. A port whose host side is not
// connected reads as EOF; retry slowly rather than spin.
func (in *pid1) readControl(f *os.File) {
	for {
		in.controlLines(f)
		time.Sleep(250 * time.Millisecond)
	}
}

// controlLines carries out the control messages r brings (a virtio-serial port, or one vsock
// connection) until it ends.
func (in *pid1) controlLines(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, abi.MaxControlLine+1) // a restore carries the run's secrets
	for sc.Scan() {
		c, err := abi.DecodeControl(sc.Bytes())
		if err != nil {
			in.log.Warn("control: ignoring a line that is not a control message", "err", err)
			continue
		}
		switch c.Type {
		case abi.ControlStop:
			select {
			case in.stopReq <- *c:
			default: // a stop is already pending
			}
		case abi.ControlFreeze:
			in.freeze()
		case abi.ControlRestore:
			if c.Restore == nil {
				c.Restore = &abi.Restore{}
			}
			in.restore(c.Restore)
		default:
			in.log.Warn("control: unknown message type", "type", c.Type)
		}
	}
}

// loadConfig reads the run-time config from the config drive, looked for first among the block
// devices waitRoot found (where it is, normally: virtio_blk probes every disk as it loads).
func (in *pid1) loadConfig() error {
	cfg, dev, err := FindConfig(in.blockDevs, "/dev", in.rootPart.Parent)
	if err == nil && cfg == nil {
		devs, serr := BlockDevices("/sys")
		if serr != nil {
			return serr
		}
		cfg, dev, err = FindConfig(devs, "/dev", in.rootPart.Parent)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", dev, err)
	}
	if cfg == nil {
		cfg = DefaultConfig(in.manifest)
	}
	if cfg.Hostname == "" {
		cfg.Hostname = in.manifest.Name
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "ukernel"
	}
	if cfg.Network.Mode == string(abi.NetUser) && cfg.Network.Address == "" {
		cfg.Network = DefaultConfig(&abi.Manifest{}).Network
	}
	if cfg.DataMB > 0 {
		// The run attaches a volume of this size (a template's data_mb); the manifest's is a default.
		in.manifest.Data.DiskMB = cfg.DataMB
	}
	in.cfg = cfg
	return nil
}

// supervise starts the services and the entry and waits: for the entry to exit (its code), or,
// with services only, for a stop request.
func (in *pid1) supervise(fwd <-chan os.Signal) (int, error) {
	ctx, cancel := context.WithCancel(context.Background())
	in.stopWork = cancel
	entry, err := in.startWorkload(ctx)
	if err != nil {
		return 0, err
	}
	var entryDone <-chan struct{}
	if entry != nil {
		entryDone = entry.Done()
	}
	stopped := make(chan struct{})
	stopReq := in.stopReq
	for {
		select {
		case <-entryDone:
			return in.entryExited(entry), nil
		case <-stopped:
			if entry == nil {
				return 0, nil // services only: all stopped on request
			}
			// The entry was stopped with the rest: report its own code, which Stop's wait for
			// it has made available, or 137 if it outlived even the forced kill.
			select {
			case <-entryDone:
				return in.entryExited(entry), nil
			default:
				code := 128 + int(syscall.SIGKILL)
				in.events.Emit(abi.Event{Type: abi.EventEntryExit, Code: &code})
				return code, nil
			}
		case sig := <-fwd:
			if entry != nil {
				_ = syscall.Kill(-entry.PID, sig.(syscall.Signal))
				break
			}
			// Services only: a signal to init (Ctrl-Alt-Del under Firecracker, a forced stop's
			// first step) stops them, with the run's grace. Passed on as a signal, their restart
			// policy would start them again and the guest would never power off.
			grace := 0
			if in.cfg != nil {
				grace = in.cfg.StopGraceS
			}
			select {
			case in.stopReq <- abi.Control{Type: abi.ControlStop, GraceS: grace}:
			default: // a stop is already pending
			}
		case c := <-stopReq:
			// One stop is enough: later requests (a second `ukernel stop`, a repeated Ctrl-C)
			// change nothing, and a second close(stopped) would crash PID 1.
			stopReq = nil
			grace := time.Duration(c.GraceS) * time.Second
			if c.GraceS <= 0 {
				grace = abi.DefaultStopGrace
			}
			in.stopWork()
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), grace+5*time.Second)
				defer cancel()
				in.sup.Stop(ctx, grace)
				close(stopped)
			}()
		}
	}
}

// entryExited reports the entry's exit and returns its code.
func (in *pid1) entryExited(entry *Proc) int {
	code := entry.Code()
	in.events.Emit(abi.Event{Type: abi.EventEntryExit, Code: &code})
	return code
}

// poweroff reports the outcome, stops what is left, flushes the events, unmounts and powers the
// machine off. It never returns; if power-off itself fails, exiting PID 1 panics the kernel,
// which with panic=-1 ends the VM too.
func (in *pid1) poweroff(code int, err error) {
	if err != nil {
		var fe *fatalError
		if errors.As(err, &fe) {
			fmt.Fprintf(in.console, "ukernel-init: error: %v\n", err)
		} else {
			fmt.Fprintf(in.console, "ukernel-init: %v\n", err)
		}
		code = FatalExitCode
		in.reachHost()
		in.events.Emit(abi.Event{Type: abi.EventError, Message: err.Error()})
	}
	if err == nil && in.cfg != nil && in.cfg.Perf {
		in.ioProbe() // after the entry, so it does not distort the boot it measures
	}
	in.events.Emit(abi.Event{Type: abi.EventPowerOff, Code: &code, Values: map[string]int64{abi.ValueInitPeakRSS: peakRSSKB()}})

	if in.stopWork != nil {
		in.stopWork() // no service is restarted while everything stops
	}
	grace := ShutdownGrace
	if in.cfg != nil && in.cfg.StopGraceS > 0 {
		grace = time.Duration(in.cfg.StopGraceS) * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace+time.Second)
	in.sup.Stop(ctx, grace)
	cancel()
	// Strays (daemons the workload started, reparented to init) get a SIGTERM too, and are
	// waited for, so their files on /data are closed before it is unmounted.
	_ = syscall.Kill(-1, syscall.SIGTERM)
	reapAll(time.Second)
	_ = syscall.Kill(-1, syscall.SIGKILL)
	reapAll(time.Second)

	// The workload's last output reaches the host before the events that say it ended, within
	// FlushTimeout: a host that stopped reading gets the output cut, never a guest that stays up.
	if in.out != nil {
		ctx, cancel = context.WithTimeout(context.Background(), FlushTimeout)
		if !in.out.Close(ctx) {
			fmt.Fprintf(in.console, "ukernel-init: warning: the workload's output was cut: the output channel did not take all of it (within %s of the end)\n", FlushTimeout)
		}
		cancel()
	}
	// The host channel may still be coming up (a workload that exits at once): its events are
	// the run's outcome, so wait for it.
	in.reachHost()
	ctx, cancel = context.WithTimeout(context.Background(), FlushTimeout)
	in.events.Close(ctx)
	cancel()
	unix.Sync()
	if in.dataDir != "" {
		// The journal keeps the volume consistent either way; a clean unmount saves a replay.
		if err := unix.Unmount(in.dataDir, 0); err != nil {
			_ = unix.Unmount(in.dataDir, unix.MNT_DETACH)
		}
		unix.Sync()
	}
	if in.mounted {
		Unmount(in.layout)
		unix.Sync()
	}
	err = unix.Reboot(powerOffCmd(kernelCmdline()))
	fmt.Fprintf(in.console, "ukernel-init: error: power off: %v\n", err)
	os.Exit(code)
}

// reachHost opens the host channel (after an early failure: so the host learns why the guest
// stops) and waits, boundedly, until it is open or has failed. Without a manifest nothing can
// be loaded.
func (in *pid1) reachHost() {
	if in.manifest == nil {
		return
	}
	if in.hostGaveUp {
		return // waited once already
	}
	go in.connectHost()
	select {
	case <-in.hostDone:
	case <-time.After(DeviceTimeout + ControlGrace + time.Second):
		in.hostGaveUp = true
	}
}

// reapAll reaps children until none is left or the timeout passes. Only at poweroff: it takes
// exit statuses without telling the supervisor.
func reapAll(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		switch {
		case errors.Is(err, syscall.ECHILD):
			return
		case err == nil && pid > 0:
			continue
		}
		time.Sleep(10 * time.Millisecond)
	}
}
