// Package launch starts a guest from an image the way `ukernel run` does and looks after it:
// accelerator choice, state, run directory, config drive, console, stop and outcome. The
// commands run, ps, stop and logs are thin layers over it.
package launch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/guestlog"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/runlog"
	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/internal/snapshot"
	"github.com/ukernel-dev/ukernel/internal/trace"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/backends"
	"github.com/ukernel-dev/ukernel/internal/vmm/bootfiles"
	"github.com/ukernel-dev/ukernel/internal/vmm/kvmprobe"
)

// DefaultStopTimeout is how long a guest gets to stop by itself before the VMM is told to quit.
const DefaultStopTimeout = abi.DefaultStopGrace

// newBackend returns the backend called name.
func newBackend(name vmm.BackendName, log *slog.Logger) (vmm.Backend, error) {
	e, err := backends.Get(name)
	if err != nil {
		return nil, err
	}
	return e.New(log), nil
}

// Options are the settings of one run. Zero values take the image manifest's defaults.
type Options struct {
	ProjectDir string
	Image      string
	Name       string
	VCPU       int
	MemoryMB   int
	Net        abi.Net  // zero: the image's [run] net
	Publish    []string // HOST:GUEST
	DataMB     int      // > 0: a data volume of this size, over the image's [data] disk_mb (templates)
	// Template and Revision, for a template's run, are recorded in its state (ps shows them).
	Template, Revision string
	// Templates is the template store's directory, for a template's run: a detached guest's
	// restarts pin the template there (template.Store.Pin) as run --template pins its start.
	Templates string
	// WantDigest, when set, is the image's SHA-256 as its store recorded it: an image that is
	// not (or fails verification) is a *DigestError, found before anything starts.
	WantDigest string
	Env        map[string]string
	Secrets    map[string][]byte // run --secret: on the config drive only, never in state or logs
	Accel      string            // auto, kvm, tcg
	Backend    string            // auto, firecracker, qemu
	Detached   bool
	Restart    string // a detached guest's restart policy (RestartPolicies); "" is no
	Perf       bool   // the guest runs its block IO probe before powering off (ukernel perf)
	// StopTimeout is the services' grace when the entry exits by itself (as --stop-timeout is
	// the workload's on Ctrl-C); 0: the guest's default.
	StopTimeout time.Duration
	// Logs bound the run's output log and console (zero values: guestlog.DefaultLimits).
	Logs     guestlog.Limits
	CacheDir string // cache.DefaultDir when empty
	Store    *runstate.Store
	Progress io.Writer // progress lines (stderr)
	Log      *slog.Logger
	// Snapshot is a snapshot directory (a template revision's) the run restores, as Restore
	// says (snapshot.go).
	Snapshot string
	Restore  RestoreMode
	save     string // TakeSnapshot's boot: the shared RAM file to create
}

// DigestError is an image that is not the one Options.WantDigest names, or fails verification.
type DigestError struct {
	Image string
	Err   error
}

func (e *DigestError) Error() string { return fmt.Sprintf("image %s: %v", e.Image, e.Err) }
func (e *DigestError) Unwrap() error { return e.Err }

// Guest is a guest this process started.
type Guest struct {
	State    *runstate.State
	Run      runlog.Run
	Accel    vmm.AccelChoice
	VM       *vmm.VM
	backend  vmm.Backend
	store    *runstate.Store
	log      *slog.Logger
	progress io.Writer
	spawned  time.Time        // just before the VMM was started: the trace's clock anchor
	output   *guestlog.Writer // the run's output log
	logs     guestlog.Limits
	// What a snapshot of the guest records (snapshot.go).
	spec       vmm.Spec
	boot       *bootfiles.Boot
	configSize int64
	// Restored is set when the guest was restored from a snapshot rather than booted.
	Restored *snapshot.Meta
}

// Start boots the image of o and returns once the VMM runs with its devices open.
func Start(ctx context.Context, o Options) (*Guest, error) {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	if o.CacheDir == "" {
		dir, err := cache.DefaultDir()
		if err != nil {
			return nil, err
		}
		o.CacheDir = dir
	}
	if o.Store == nil {
		s, err := runstate.Open()
		if err != nil {
			return nil, err
		}
		o.Store = s
	}
	boot, err := bootfiles.Prepare(o.Image, o.CacheDir)
	if err != nil {
		if o.WantDigest != "" {
			return nil, &DigestError{Image: o.Image, Err: err}
		}
		return nil, err
	}
	if o.WantDigest != "" && boot.ImageDigest != o.WantDigest {
		return nil, &DigestError{Image: o.Image, Err: fmt.Errorf("its SHA-256 is %s, not the expected %s", boot.ImageDigest, o.WantDigest)}
	}
	m := boot.Manifest
	if err := checkSecrets(m, o.Secrets); err != nil {
		return nil, err
	}
	name := o.Name
	if name == "" {
		name = m.Name
	}
	if err := runstate.ValidateName(name); err != nil {
		return nil, err
	}
	netw, err := resolveNet(o, m, progress)
	if err != nil {
		return nil, err
	}
	vcpu, mem := pick(o.VCPU, m.Run.VCPU, 1), pick(o.MemoryMB, m.Run.MemoryMB, 256)

	var accel vmm.AccelChoice
	var probes []trace.Span
	o.Backend, accel, err = chooseVMM(ctx, o, netw, kvmprobe.Spec{
		Kernel: boot.Kernel, KernelDigest: boot.KernelDigest,
		CacheDir: cache.KVMProbe.In(o.CacheDir), Log: log, Probed: probeSpan(&probes),
	}, progress)
	if err != nil {
		return nil, err
	}

	store := o.Store
	if err := store.Reserve(name); err != nil {
		return nil, err
	}
	g, err := start(ctx, o, boot, name, netw, vcpu, mem, accel, store, log)
	var nr *notRestored
	if errors.As(err, &nr) {
		if o.Restore == RestoreRequired {
			err = fmt.Errorf("--restore: cannot restore: %s", nr.why)
		} else {
			fmt.Fprintf(progress, "Booting cold: %s\n", nr.why)
			o.Snapshot = ""
			g, err = start(ctx, o, boot, name, netw, vcpu, mem, accel, store, log)
		}
	}
	if err != nil {
		store.Abandon(name)
		return nil, err
	}
	g.recordSpans(probes...)
	if g.Restored != nil {
		fmt.Fprintf(progress, "Restored from the snapshot of %s (%s) in %.2fs\n", g.Restored.Created.Format(time.RFC3339), g.Restored.Ready, time.Since(g.spawned).Seconds())
	}
	fmt.Fprintf(progress, "%s started (pid %d)\n", backends.Title(g.State.Handle.Backend), g.State.Handle.PID)
	fmt.Fprintf(progress, "VM console: %s\n", consoleShown(o))
	if netw.Mode == abi.NetTap {
		if gn := guestNetwork(netw); gn.Address != "" {
			fmt.Fprintf(progress, "Guest address: %s on %s (gateway %s)\n", gn.Address, netw.Iface, gn.Gateway)
		} else {
			fmt.Fprintf(progress, "Guest address: none (%s has no IPv4 address on the host; the guest only brings its link up)\n", netw.Iface)
		}
	}
	return g, nil
}

// consoleShown is the latest console's path as run prints it: relative to the project the
// user named (-C or the working directory); a template's run keeps its logs in the template
// store, a directory the user never named, so its path is absolute there.
func consoleShown(o Options) string {
	if o.Template != "" {
		if dir, err := filepath.Abs(o.ProjectDir); err == nil {
			return runlog.LatestLink(dir)
		}
	}
	return runlog.LatestRel()
}

func start(ctx context.Context, o Options, boot *bootfiles.Boot, name string, netw vmm.Net, vcpu, mem int,
	accel vmm.AccelChoice, store *runstate.Store, log *slog.Logger) (*Guest, error) {
	backend, err := newBackend(vmm.BackendName(o.Backend), log)
	if err != nil {
		return nil, err
	}
	started := time.Now()
	restoring := o.Snapshot != "" && o.Restore != RestoreNever
	newRun := runlog.NewRun
	if o.Perf || restoring {
		// perf's boots leave the user's last run to logs and trace; a restore's run becomes the
		// latest once its guest took its restore message, and goes if it never does (the cold
		// boot has its own).
		newRun = runlog.NewSideRun
	}
	run, err := newRun(o.ProjectDir, started)
	if err != nil {
		return nil, err
	}
	// notRestoredYet gives up a restore whose VMM does not run: nothing of it is left behind.
	notRestoredYet := func(why string) (*Guest, error) {
		if err := os.RemoveAll(run.Dir); err != nil {
			log.Debug("remove the run directory of a restore not made", "err", err)
		}
		if err := os.Remove(runstate.RestoredData(o.ProjectDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Debug("remove the data copy of a restore not made", "err", err)
		}
		return nil, &notRestored{why}
	}
	cfg := &abi.BootConfig{
		ABI: abi.Version, RunID: run.ID, Hostname: name, Env: o.Env, Secrets: o.Secrets,
		Network: guestNetwork(netw), HostTime: started.UnixNano(), Perf: o.Perf,
		StopGraceS: int((o.StopTimeout + time.Second - 1) / time.Second), // whole seconds, rounded up
		DataMB:     o.DataMB,
	}
	configDrive := store.ConfigDrive(name)
	// A restore's guest read its config when the snapshot booted: it gets a blank drive
	// (applyRestore), and the run's secrets over the control channel, never through the disk.
	if !restoring {
		if err := writeConfigDrive(configDrive, cfg); err != nil {
			return nil, err
		}
	}
	// QEMU keeps the config drive open from its start: the file with the run-time environment
	// and secrets leaves the disk as soon as the VMM has it (and on any failure).
	defer os.Remove(configDrive)
	spec := vmm.Spec{
		Name: name, Kernel: boot.Vmlinux, Initrd: boot.Initrd, Cmdline: boot.Manifest.Kernel.Cmdline,
		Disks: []vmm.Disk{
			{ID: "root", Path: boot.Image, ReadOnly: true},
			{ID: "config", Path: configDrive, ReadOnly: true},
		},
		VCPU: vcpu, MemoryMB: mem, Accel: accel.Accel, Net: netw,
		ConsolePath: run.Console(), EventsPath: run.Events(), LogPath: run.VMMLog(),
		ControlSocket: store.ControlSocket(name), APISocket: store.APISocket(name), PIDFile: store.PIDFile(name),
		OutputSocket: store.OutputSocket(name), OutputPort: boot.Manifest.RootWorkload(), ExecSocket: store.ExecSocket(name),
	}
	info := runlog.Info{Name: name, Image: boot.Image, Services: []string{}}
	for _, s := range boot.Manifest.Services {
		info.Services = append(info.Services, s.Name)
	}
	if err := run.WriteInfo(info); err != nil {
		return nil, err
	}
	dataM := boot.Manifest
	if o.DataMB > 0 {
		dataM.Data.DiskMB = o.DataMB
	}
	data, err := dataDisks(ctx, o.ProjectDir, dataM)
	if err != nil {
		return nil, err
	}
	spec.Disks = append(spec.Disks, data...)
	var configSize int64
	if fi, err := os.Stat(configDrive); err == nil {
		configSize = fi.Size()
	}
	var plan *restorePlan
	if o.Snapshot != "" && o.Restore != RestoreNever {
		if plan, spec, err = planRestore(ctx, o, backend, spec, boot); err != nil {
			return notRestoredYet(err.Error())
		}
		defer plan.take.Close()
		if err := applyRestore(plan, &spec, configDrive, o.ProjectDir, name, run); err != nil {
			return notRestoredYet(err.Error())
		}
	}
	if o.save != "" {
		if err := newMemoryFile(o.save, mem); err != nil {
			return nil, err
		}
		spec.Memory = &vmm.MemoryFile{Path: o.save, Shared: true}
	}
	spawned := time.Now()
	vm, err := backend.Start(ctx, spec)
	if err != nil {
		if plan != nil {
			return notRestoredYet("the VMM could not load the snapshot: " + err.Error())
		}
		return nil, err
	}
	stopVM := func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		vmm.Stop(stopCtx, backend, vm.Handle, time.Second, log)
		if vm.Output != nil {
			vm.Output.Close()
		}
	}
	if plan != nil {
		// The VMM has mapped the memory file and loaded the state, by their paths: they are the
		// planned take's only if the snapshot's path still names it.
		if err := plan.take.Replaced(); err != nil {
			(&Guest{VM: vm, log: log}).kill()
			if vm.Output != nil {
				vm.Output.Close()
			}
			return notRestoredYet(err.Error())
		}
	}
	up := time.Now()
	if err := trace.Append(filepath.Join(run.Dir, trace.RunSpansFile), trace.NewSpan(trace.SpanVMMStart, spawned, up,
		"backend", string(backend.Name()), "accel", accel.Accel, "pid", fmt.Sprint(vm.Handle.PID))); err != nil {
		log.Debug("record span", "err", err)
	}
	if !vm.LoadStart.IsZero() {
		recordSpan(run, trace.NewSpan(SpanRestoreLoad, vm.LoadStart, up))
	}
	var ports []string
	for _, p := range netw.Publish {
		ports = append(ports, p.String())
	}
	st := &runstate.State{
		Name: name, Handle: vm.Handle, Accel: accel.Accel,
		Image: boot.Image, ImageDigest: boot.ImageDigest,
		Net: netw.Setting().String(), Ports: ports, RunID: run.ID, RunDir: run.Dir,
		Started: started, ProjectDir: o.ProjectDir, Detached: o.Detached, Owner: os.Getpid(),
		Template: o.Template, Revision: o.Revision,
	}
	st.OwnerStart, _ = runstate.ProcessStart(st.Owner)
	if err := store.Save(st); err != nil {
		stopVM()
		return nil, err
	}
	output, err := guestlog.Create(run.Output(), o.Logs)
	if err != nil {
		stopVM()
		return nil, err
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	g := &Guest{State: st, Run: run, Accel: accel, VM: vm, backend: backend, store: store, log: log, progress: progress,
		spawned: spawned, output: output, logs: o.Logs, spec: spec, boot: boot, configSize: configSize}
	if plan != nil {
		if err := g.resumeRestored(ctx, name, o.Secrets); err != nil {
			// The attempt goes whole, as one that never ran: its VMM (waited for, so it
			// writes nothing more), run directory and data copy; its record is the cold boot's
			// to replace, or Start's to abandon.
			g.kill()
			if vm.Output != nil {
				vm.Output.Close()
			}
			output.Close()
			return notRestoredYet("the restore failed: " + err.Error())
		}
		g.Restored = plan.meta
		if !o.Perf {
			if err := run.MakeLatest(o.ProjectDir); err != nil {
				log.Debug("point logs at the run", "err", err)
			}
		}
	}
	return g, nil
}

func pick(flag, manifest, def int) int {
	if flag > 0 {
		return flag
	}
	if manifest > 0 {
		return manifest
	}
	return def
}

// resolveNet picks the run's network. A port published with --publish asks for a network: on
// an image whose default is none (the minimal preset) it switches to user networking, saying so
// on progress; an explicit --net none or a tap device with --publish stays an error.
func resolveNet(o Options, m abi.Manifest, progress io.Writer) (vmm.Net, error) {
	setting := o.Net
	if setting.Mode == "" {
		image := m.Run.Net
		if image == "" {
			image = string(abi.NetUser)
		}
		var err error
		if setting, err = abi.ParseNet(image); err != nil {
			return vmm.Net{}, fmt.Errorf("the image's network: %w", err)
		}
		if setting.Mode == abi.NetNone && len(o.Publish) > 0 {
			setting = abi.Net{Mode: abi.NetUser}
			fmt.Fprintf(progress, "Network: user (--publish needs a network; the image's default is none)\n")
		}
	}
	publish := o.Publish
	if publish == nil && setting.Mode == abi.NetUser {
		publish = m.Run.Publish
	}
	n := vmm.Net{Mode: setting.Mode, Iface: setting.Iface}
	if len(publish) > 0 && n.Mode != abi.NetUser {
		return vmm.Net{}, fmt.Errorf("--publish needs --net user (the network is %s): a tap device is reachable directly, and none has no network", setting)
	}
	seen := map[int]bool{}
	for _, p := range publish {
		h, g, err := project.ParsePublish(p)
		if err != nil {
			return vmm.Net{}, fmt.Errorf("--publish %w", err)
		}
		if seen[h] {
			return vmm.Net{}, fmt.Errorf("--publish: host port %d is published twice", h)
		}
		seen[h] = true
		n.Publish = append(n.Publish, vmm.Port{Host: h, Guest: g})
	}
	return n, nil
}

// guestNetwork is the guest's network configuration for n: abi.UserNetwork, or for a tap device the next address after the host's own on that device, with the
// host as gateway (the usual point-to-point setup: tap0 172.16.0.1/24 gives the guest
// 172.16.0.2/24). A tap device without an IPv4 address gets the link up and no address.
func guestNetwork(n vmm.Net) abi.Network {
	switch n.Mode {
	case abi.NetUser:
		return abi.UserNetwork()
	case abi.NetTap:
		nw := abi.Network{Mode: string(abi.NetTap)}
		if host, ok := tapHostAddr(n.Iface); ok {
			if guest, ok := nextAddr(host); ok {
				nw.Address, nw.Gateway = guest.String(), host.Addr().String()
			}
		}
		return nw
	}
	return abi.Network{Mode: string(abi.NetNone)}
}

// tapHostAddr is the host's first IPv4 address on a tap device.
func tapHostAddr(iface string) (netip.Prefix, bool) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return netip.Prefix{}, false
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Prefix{}, false
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if p, err := netip.ParsePrefix(ipn.String()); err == nil && p.Addr().Is4() {
				return p, true
			}
		}
	}
	return netip.Prefix{}, false
}

// nextAddr is the address after host's in its subnet, skipping the network and broadcast
// addresses (wrapping to the start of the subnet), as a prefix of the same length.
func nextAddr(host netip.Prefix) (netip.Prefix, bool) {
	if host.Bits() > 30 {
		return netip.Prefix{}, false // no room for a second host
	}
	subnet := host.Masked()
	a := host.Addr().Next()
	if !subnet.Contains(a) || !subnet.Contains(a.Next()) { // a is the broadcast address or beyond
		a = subnet.Addr().Next()
	}
	if a == host.Addr() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, host.Bits()), true
}

// Streams are where Attend passes the guest's output on, live. A nil writer is not shown (the
// output log records everything).
type Streams struct {
	Stdout, Stderr io.Writer // the workload's own streams
	Kernel         io.Writer // the serial console: the kernel's lines and init's messages (run -v)
	// Started, if set, is called once: with nil at the guest's first sign of life, or with why
	// the guest failed before it showed one.
	Started func(error)
}

// FirstSignTimeout bounds the wait for a guest's first sign of life: its first console line or
// init's hello on the output channel. Under TCG here the kernel's first line comes about 0.5 s
// after QEMU's start and init's hello about 1.5 s after, and no more than about 6 s on a host
// loaded with other VM tests; a guest that shows neither within this never will (a KVM that
// cannot run it spins, or stopped with an internal error).
const FirstSignTimeout = 20 * time.Second

// Attend passes the workload's output to w (stdout and stderr alike) until the guest is gone.
func (g *Guest) Attend(ctx context.Context, w io.Writer, stopTimeout time.Duration) (runlog.Outcome, error) {
	return g.AttendStreams(ctx, Streams{Stdout: w, Stderr: w}, stopTimeout)
}

// AttendStreams records the guest's output in the run's output log and passes it to s until
// the guest is gone, stops it gracefully when ctx ends (Ctrl-C, SIGTERM), releases its state
// and returns how the run ended.
func (g *Guest) AttendStreams(ctx context.Context, s Streams, stopTimeout time.Duration) (runlog.Outcome, error) {
	// A stream that cannot be written (the terminal or pipe went away) means nobody attends
	// the guest any more: it is stopped as on Ctrl-C rather than left running unowned.
	liveErr := make(chan error, 1)
	g.output.SetLive(func(stream string, data []byte) {
		w := s.Stdout
		switch stream {
		case guestlog.Stderr:
			w = s.Stderr
		case guestlog.Kernel:
			w = s.Kernel
		}
		if w == nil {
			return
		}
		if _, err := w.Write(data); err != nil {
			select {
			case liveErr <- err:
			default:
			}
		}
	})
	life := make(chan struct{})
	var lifeOnce sync.Once
	alive := func() { lifeOnce.Do(func() { close(life) }) }
	if g.Restored != nil {
		alive() // it reported it reseeded: it runs
	}
	framesDone := make(chan error, 1)
	go func() { framesDone <- g.copyOutput(alive) }()
	consoleDone := make(chan error, 1)
	go func() {
		cw := guestlog.NewConsoleWriter(g.output)
		cw.Seen = alive
		// The VMM appends to the console file; it is bounded as it is read.
		bound := func(f *os.File) error {
			if err := guestlog.TruncateCopy(f, g.Run.Console(), g.logs, cw); err != nil {
				g.log.Debug("rotate the console", "err", err)
			}
			return nil
		}
		err := guestlog.FollowWith(context.WithoutCancel(ctx), g.Run.Console(), guestlog.FollowOptions{AtEOF: bound}, cw, g.VM.Done())
		cw.Flush()
		consoleDone <- err
	}()
	interrupted, failure := false, ""
	var ferr error
	started := func(err error) {
		if s.Started != nil {
			s.Started(err)
			s.Started = nil
		}
	}
	noLife := time.NewTimer(FirstSignTimeout)
	defer noLife.Stop()
	watch := time.NewTicker(200 * time.Millisecond)
	defer watch.Stop()
	vmmLog := vmmLogWatch{path: g.Run.VMMLog()}
wait:
	for {
		select {
		case <-g.VM.Done():
			break wait
		case <-ctx.Done():
			interrupted = true
			break wait
		case ferr = <-liveErr:
			interrupted = true
			break wait
		case <-life:
			life = nil
			noLife.Stop()
			started(nil)
		case <-noLife.C:
			failure = fmt.Sprintf("the guest showed no sign of life (no console line, no word from its init) within %s of %s's start (accelerator %s)",
				FirstSignTimeout, backends.Title(g.State.Handle.Backend), g.State.Accel)
			break wait
		case <-watch.C:
			// A VMM that fails may keep running (QEMU stops a guest whose KVM failed and waits):
			// what it says in its log decides.
			if msg := vmmLog.fatal(life == nil); msg != "" {
				failure = fmt.Sprintf("%s failed: %s", backends.Title(g.State.Handle.Backend), msg)
				break wait
			}
		}
	}
	if failure != "" {
		if err := vmm.Kill(g.VM.Handle, g.log); err != nil {
			g.log.Debug("kill VMM", "err", err)
		}
	}
	if interrupted {
		forced := g.forceOnSignal()
		fmt.Fprintf(g.progress, "Stopping %s (its workload gets %s, then it is forced; Ctrl-C again forces it now)\n", g.State.Name, stopTimeout)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout+10*time.Second)
		_, err := vmm.Stop(sctx, g.backend, g.VM.Handle, stopTimeout, g.log)
		cancel()
		forced()
		if err != nil {
			return runlog.Outcome{}, fmt.Errorf("stop %s: %w", g.State.Name, err)
		}
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	werr := g.VM.Wait(wctx)
	cancel()
	if err := trace.Append(filepath.Join(g.Run.Dir, trace.RunSpansFile), trace.NewSpan(trace.SpanVM, g.spawned, time.Now(),
		"backend", string(g.State.Handle.Backend), "accel", g.State.Accel)); err != nil {
		g.log.Debug("record span", "err", err)
	}
	if werr != nil {
		g.log.Debug("VMM exit", "err", werr)
	}
	// The copies end once they have the rest of the output (the VMM closed the channel at its
	// exit); a writer that blocks (a pipe nobody reads) must not keep run from releasing its
	// state.
	drain := time.After(5 * time.Second)
	for _, ch := range []chan error{framesDone, consoleDone} {
		select {
		case err := <-ch:
			if err != nil && ferr == nil {
				ferr = err
			}
		case <-drain:
			ferr = errors.New("output still blocked 5s after the guest ended")
		}
	}
	if ferr != nil {
		g.log.Debug("output", "err", ferr)
	}
	g.output.Close()
	out := runlog.ReadOutcome(g.Run)
	defer func() {
		why := out.Reason
		if why == "" {
			why = fmt.Sprintf("the guest ended (code %d) before it showed a sign of life", out.Code)
		}
		started(errors.New(why))
	}()
	if !out.Reported && interrupted {
		out.Reason = "stopped by signal before the guest reported an exit code"
		out.Code = 130
	}
	if !out.Reported && werr != nil && !interrupted {
		out.Reason = fmt.Sprintf("%s exited with %v: %s (see %s)", backends.Title(g.State.Handle.Backend), werr,
			vmm.LogTail(g.Run.VMMLog(), backends.Title(g.State.Handle.Backend)), g.Run.Rel(""))
	}
	if !out.Started && !interrupted && out.Code == runlog.ExitNoReport {
		// The kernel or init failed before the workload started: what it printed says why.
		out.Reason = "the guest failed before its workload started: " + out.Reason
		if tail := runlog.ConsoleTail(g.Run, 10); tail != "" {
			out.Reason += "\nthe console's last lines:\n" + tail
		}
	}
	if failure != "" {
		out = runlog.Outcome{Code: runlog.ExitNoReport, Reason: fmt.Sprintf("%s; it said: %s (see %s)", failure,
			vmm.LogTail(g.Run.VMMLog(), backends.Title(g.State.Handle.Backend)), g.Run.Rel(runlog.VMMLogFile))}
	}
	if err := g.store.Finish(g.State, out); err != nil {
		g.log.Debug("record the finished guest", "err", err)
	}
	return out, nil
}

// Forget removes the record of the guest once it has finished (ps -a does not list it): for
// guests of ukernel's own, such as perf's boots. A guest still running keeps its record.
func (g *Guest) Forget() error { return g.store.RemoveFinished(g.State) }

// copyOutput records the guest's output channel until the VMM closes it. The VMM connects at
// its start (QEMU) or when the guest does (Firecracker): a VM that ends first never does.
func (g *Guest) copyOutput(alive func()) error {
	l := g.VM.Output
	if l == nil {
		return nil
	}
	defer l.Close()
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := l.Accept()
		ch <- accepted{c, err}
	}()
	var a accepted
	select {
	case a = <-ch:
	case <-g.VM.Done():
		select {
		case a = <-ch:
		case <-time.After(100 * time.Millisecond):
			return nil
		}
	}
	if a.err != nil {
		return fmt.Errorf("output channel: %w", a.err)
	}
	defer a.c.Close()
	go func() {
		// The VMM closes the channel when it exits; this bounds a channel it left open.
		<-g.VM.Done()
		time.Sleep(3 * time.Second)
		a.c.Close()
	}()
	return guestlog.CopyFrames(a.c, g.output, func(string) { alive() })
}

// vmmLogWatch reads a VMM's log as it grows, for the errors that mean the guest is not running.
type vmmLogWatch struct {
	path string
	size int64
}

// fatal returns the VMM's error line, if its log has one: any error before the guest's first
// sign of life (QEMU says nothing otherwise), a KVM internal error at any time (QEMU then stops
// the guest and waits, looking alive).
func (w *vmmLogWatch) fatal(alive bool) string {
	fi, err := os.Stat(w.path)
	if err != nil || fi.Size() == w.size {
		return ""
	}
	w.size = fi.Size()
	b, err := os.ReadFile(w.path)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		l := strings.ToLower(line)
		if strings.Contains(l, "kvm internal error") || (!alive && strings.Contains(l, "error")) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// forceOnSignal kills the guest's VMM if another Ctrl-C, SIGTERM or SIGHUP arrives while it is being
// stopped gracefully (a workload that ignores its SIGTERM would otherwise hold run for the
// whole stop timeout). The returned func ends the watch.
func (g *Guest) forceOnSignal() func() {
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-again:
			fmt.Fprintf(g.progress, "Forcing %s to stop\n", g.State.Name)
			if err := vmm.Kill(g.VM.Handle, g.log); err != nil {
				g.log.Debug("force stop", "err", err)
			}
		case <-done:
		}
	}()
	return func() {
		signal.Stop(again)
		close(done)
		<-watched
	}
}

// StopGuest stops the guest called name: gracefully within timeout, then forced. It leaves no
// VMM process and no state. A guest that is already gone only has its state cleaned.
func StopGuest(ctx context.Context, store *runstate.Store, name string, timeout time.Duration, log *slog.Logger) (vmm.StopResult, error) {
	st, err := store.Load(name)
	if err != nil {
		return "", err
	}
	// A detached guest's monitor, which may restart it (run -d --restart), learns that this
	// stop is meant: also between two of its runs, when the guest is recorded as exited.
	if st.Detached && st.Owner != os.Getpid() && st.OwnerAlive() {
		if err := store.RequestStop(name); err != nil {
			return "", err
		}
	}
	if st.Exited {
		return vmm.AlreadyGone, nil
	}
	if st.Handle.PID == 0 {
		if st.Live() {
			return "", fmt.Errorf("guest %q is still starting (ukernel pid %d); try again in a moment", name, st.Owner)
		}
		return vmm.AlreadyGone, finish(store, st)
	}
	b, err := newBackend(st.Handle.Backend, log)
	if err != nil {
		return "", err
	}
	res, err := vmm.Stop(ctx, b, st.Handle, timeout, log)
	if err != nil {
		return "", err
	}
	// The guest's owner (a detached guest's monitor) records the last output and the outcome
	// once the VMM is gone: stop returns after it, so the run's files are complete.
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for deadline := time.Now().Add(5 * time.Second); st.Owner != os.Getpid() && st.OwnerAlive() && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-t.C:
		}
	}
	return res, finish(store, st)
}

// finish records the guest of st as finished, with the outcome its run reported, unless its
// owner did so already.
func finish(store *runstate.Store, st *runstate.State) error {
	out := runlog.Outcome{Reason: "never started"}
	if st.RunDir != "" {
		out = runlog.ReadOutcome(runlog.Run{ID: st.RunID, Dir: st.RunDir})
	}
	return store.Finish(st, out)
}
