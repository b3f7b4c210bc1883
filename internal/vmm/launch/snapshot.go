package launch

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/runlog"
	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/internal/snapshot"
	"github.com/ukernel-dev/ukernel/internal/trace"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/backends"
	"github.com/ukernel-dev/ukernel/internal/vmm/bootfiles"
)

// RestoreMode says whether a run given a snapshot (Options.Snapshot) restores it.
type RestoreMode int

const (
	RestoreAuto     RestoreMode = iota // restore when the snapshot fits and verifies; else boot cold, saying why
	RestoreNever                       // --cold
	RestoreRequired                    // --restore: fail rather than boot cold
)

// Span names of a restore (host side).
const (
	SpanRestoreLoad   = trace.SpanRestore + "load"   // the VMM loading the saved state (within vmm.start)
	SpanRestoreResume = trace.SpanRestore + "resume" // the loaded guest told to run
	SpanRestoreReseed = trace.SpanRestore + "reseed" // the restore message sent until the guest reported reseeded
	SpanRestoreData   = trace.SpanRestore + "data"   // the copy of the snapshot's data volume
)

// ReseedTimeout bounds the wait for a restored guest to take its restore message.
const ReseedTimeout = 15 * time.Second

// restorePlan is a restore decided on.
type restorePlan struct {
	dir  string
	meta *snapshot.Meta
	// take is the snapshot as the plan read it, held until the VMM has opened its files: a
	// restore resumes one take, never a mix of a take's files and its replacement's.
	take *snapshot.Take
}

// notRestored is why a run did not restore its snapshot.
type notRestored struct{ why string }

func (e *notRestored) Error() string { return e.why }

// planRestore decides whether the run of spec can resume the snapshot at dir, and returns the
// spec that does; the error (a *notRestored) says in one line why not. The plan holds the
// snapshot's take until its close.
func planRestore(ctx context.Context, o Options, backend vmm.Backend, spec vmm.Spec, boot *bootfiles.Boot) (*restorePlan, vmm.Spec, error) {
	var take *snapshot.Take
	no := func(format string, a ...any) (*restorePlan, vmm.Spec, error) {
		why := fmt.Sprintf(format, a...)
		if take != nil {
			if replaced := take.Replaced(); replaced != nil {
				why = replaced.Error() // what made its files vanish or differ
			}
			take.Close()
		}
		return nil, spec, &notRestored{why}
	}
	if _, ok := backend.(vmm.Snapshotter); !ok || !backend.Capabilities().Snapshots {
		if why := backend.Capabilities().NoSnapshots; why != "" {
			return no("%s", why)
		}
		return no("the %s backend cannot restore snapshots", backends.Title(backend.Name()))
	}
	take, err := snapshot.OpenTake(o.Snapshot)
	if errors.Is(err, snapshot.ErrNone) {
		return no("there is no snapshot (take one with `ukernel template build NAME --snapshot`)")
	}
	if err != nil {
		return no("the snapshot cannot be read: %v", err)
	}
	meta, err := snapshot.Read(o.Snapshot)
	if errors.Is(err, snapshot.ErrNone) {
		return no("there is no snapshot (take one with `ukernel template build NAME --snapshot`)")
	}
	if err != nil {
		return no("the snapshot cannot be read: %v", err)
	}
	if !maps.Equal(o.Env, meta.Env) {
		return no("the run's -e values differ from the snapshot's (its running processes cannot take a new environment)")
	}
	if why := dataMismatch(meta, o.DataMB); why != "" {
		return no("%s", why)
	}
	rs := spec
	rs.Memory = &vmm.MemoryFile{Path: filepath.Join(o.Snapshot, snapshot.MemoryFile)}
	rs.Incoming = filepath.Join(o.Snapshot, snapshot.StateFile)
	fp, _, err := fingerprint(ctx, backend, rs, boot, &meta.VMM, o.CacheDir)
	if err != nil {
		return no("this run's fingerprint: %v", err)
	}
	if why := fp.Mismatch(meta.Fingerprint); why != "" {
		return no("the snapshot does not fit this run: %s", why)
	}
	if err := snapshot.Verify(o.Snapshot, meta); err != nil {
		return no("%v", err)
	}
	return &restorePlan{dir: o.Snapshot, meta: meta, take: take}, rs, nil
}

// dataMismatch says why a snapshot's data volume cannot serve a run that asks for one of
// dataMB MiB (0: the image's, which the snapshot was taken with): a restored guest keeps the
// filesystem it mounted, so a smaller one would silently stay smaller.
func dataMismatch(meta *snapshot.Meta, dataMB int) string {
	if dataMB <= 0 {
		return ""
	}
	for _, f := range meta.Files {
		if f.Name == snapshot.DataFile {
			if f.Size < int64(dataMB)<<20 {
				return fmt.Sprintf("the run's data volume (%d MiB) is larger than the snapshot's (%d MiB)", dataMB, f.Size>>20)
			}
			return ""
		}
	}
	return fmt.Sprintf("the run has a data volume (%d MiB) and the snapshot none", dataMB)
}

// fingerprint is the snapshot fingerprint of spec on backend for boot's image; known is the
// VMM binary as a snapshot recorded it (nil: none), cacheDir the user's cache (snapshot.Identify).
func fingerprint(ctx context.Context, backend vmm.Backend, spec vmm.Spec, boot *bootfiles.Boot, known *snapshot.Binary, cacheDir string) (snapshot.Fingerprint, snapshot.Binary, error) {
	snap, ok := backend.(vmm.Snapshotter)
	if !ok {
		return snapshot.Fingerprint{}, snapshot.Binary{}, fmt.Errorf("the %s backend cannot take snapshots", backends.Title(backend.Name()))
	}
	e, err := backends.Get(backend.Name())
	if err != nil {
		return snapshot.Fingerprint{}, snapshot.Binary{}, err
	}
	bin, err := snapshot.Identify(ctx, e.Binary, "--version", known, cacheDir)
	if err != nil {
		return snapshot.Fingerprint{}, snapshot.Binary{}, fmt.Errorf("the VMM binary: %w", err)
	}
	layout, err := snap.Layout(spec)
	if err != nil {
		return snapshot.Fingerprint{}, snapshot.Binary{}, err
	}
	cpu := "emulated (see layout)"
	if spec.Accel == vmm.AccelKVM {
		cpu = snapshot.HostCPU()
	}
	var initramfs string
	for _, a := range boot.Manifest.Artefacts {
		if a.Name == "initramfs" {
			initramfs = a.SHA256
		}
	}
	return snapshot.Fingerprint{
		Backend: string(backend.Name()), VMM: bin.Version, VMMDigest: bin.SHA256, Accel: spec.Accel, CPU: cpu,
		Layout: layout, Cmdline: snap.BootCmdline(spec), VCPU: spec.VCPU, MemoryMB: spec.MemoryMB,
		Kernel: boot.KernelDigest, Initramfs: initramfs, Image: boot.ImageDigest,
	}, bin, nil
}

// applyRestore readies the files of a restore: a blank config drive in place of the one written
// (the guest read its config when the snapshot booted; the run's secrets go over the control
// channel, never to disk) and the guest's own copy of the snapshot's data volume.
func applyRestore(p *restorePlan, spec *vmm.Spec, configDrive, projectDir, name string, run runlog.Run) error {
	if err := atomicfile.Write(configDrive, 0o600, func(f *os.File) error { return f.Truncate(p.meta.ConfigSize) }); err != nil {
		return err
	}
	if !p.meta.Has(snapshot.DataFile) {
		return nil
	}
	i := slices.IndexFunc(spec.Disks, func(d vmm.Disk) bool { return d.ID == "data" })
	if i < 0 {
		return errors.New("the snapshot has a data volume and this run none")
	}
	dst := runstate.RestoredData(projectDir, name)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	t := time.Now()
	if err := snapshot.CopySparse(filepath.Join(p.dir, snapshot.DataFile), dst); err != nil {
		return fmt.Errorf("the guest's copy of the snapshot's data volume: %w", err)
	}
	recordSpan(run, trace.NewSpan(SpanRestoreData, t, time.Now()))
	spec.Disks[i].Path = dst
	return nil
}

func recordSpan(run runlog.Run, s trace.Span) {
	_ = trace.Append(filepath.Join(run.Dir, trace.RunSpansFile), s)
}

// resumeRestored runs a guest whose saved state is loaded and makes it its own before its
// workload continues: over the control channel, fresh entropy, the clock, its name, a new
// machine-id and the run's secrets; it returns once the guest reported it reseeded.
func (g *Guest) resumeRestored(ctx context.Context, name string, secrets map[string][]byte) error {
	snap := g.backend.(vmm.Snapshotter)
	ctx, cancel := context.WithTimeout(ctx, ReseedTimeout)
	defer cancel()
	// Connected before the guest runs: the snapshot was saved with the host connected, so the
	// guest's control reader, blocked in its read, sees no hang-up and takes the message at once.
	ctl, err := snap.DialControl(ctx, g.VM.Handle)
	if err != nil {
		return err
	}
	// The guest must have read the message before the host hangs up (QEMU drops the rest).
	defer ctl.Close()
	t := time.Now()
	if err := snap.Resume(ctx, g.VM.Handle); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	resumed := time.Now()
	recordSpan(g.Run, trace.NewSpan(SpanRestoreResume, t, resumed))
	entropy := make([]byte, 64)
	id := make([]byte, 16)
	rand.Read(entropy)
	rand.Read(id)
	msg, err := json.Marshal(abi.Control{Type: abi.ControlRestore, Restore: &abi.Restore{
		Entropy: entropy, TimeNS: time.Now().UnixNano(), Hostname: name, MachineID: hex.EncodeToString(id), Secrets: secrets,
	}})
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		ctl.SetWriteDeadline(dl)
	}
	if _, err := ctl.Write(append(msg, '\n')); err != nil {
		return fmt.Errorf("send the restore message: %w", err)
	}
	ev, err := awaitEvent(ctx, g.Run.Events(), g.VM.Done(), func(e abi.Event) bool { return e.Type == abi.EventReseeded })
	if err != nil {
		return fmt.Errorf("the restored guest did not report it reseeded: %w", err)
	}
	recordSpan(g.Run, trace.NewSpan(SpanRestoreReseed, resumed, time.Now()))
	if ev.Message != "" {
		return fmt.Errorf("the restored guest could not take its restore message: %s", ev.Message)
	}
	return nil
}

// awaitEvent follows the events file at path until an event satisfies want, done closes (the
// VMM exited) or ctx ends.
func awaitEvent(ctx context.Context, path string, done <-chan struct{}, want func(abi.Event) bool) (abi.Event, error) {
	var off int64
	var pending []byte
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		if f, err := os.Open(path); err == nil {
			buf := make([]byte, 64<<10)
			for {
				n, _ := f.ReadAt(buf, off)
				if n == 0 {
					break
				}
				off += int64(n)
				var e abi.Event
				var found bool
				if e, found, pending = takeEvent(append(pending, buf[:n]...), want); found {
					f.Close()
					return e, nil
				}
			}
			f.Close()
		}
		select {
		case <-ctx.Done():
			return abi.Event{}, ctx.Err()
		case <-done:
			return abi.Event{}, errors.New("the VMM exited")
		case <-tick.C:
		}
	}
}

// takeEvent reads pending's complete lines up to the first event want accepts, and returns the
// rest: the start of a line, kept up to abi.MaxEventLine (the guest writes the file).
func takeEvent(pending []byte, want func(abi.Event) bool) (abi.Event, bool, []byte) {
	for {
		i := bytes.IndexByte(pending, '\n')
		if i < 0 {
			break
		}
		var e abi.Event
		if json.Unmarshal(pending[:i], &e) == nil && want(e) {
			return e, true, pending[i+1:]
		}
		pending = pending[i+1:]
	}
	if len(pending) > abi.MaxEventLine {
		pending = pending[:0]
	}
	return abi.Event{}, false, pending
}

// SnapshotReadyTimeout bounds a snapshot boot's wait for the workload to become ready (a
// database's first boot initialises its data: 25 s for the postgres preset under TCG here).
const SnapshotReadyTimeout = 3 * time.Minute

// TakeSnapshot boots o's image with its RAM in a file, waits until the workload is ready (every
// health check passes; with none, once init saw it settle), freezes it, saves the guest, seals
// the snapshot and has publish put it at dir (a revision's snapshot/), replacing any there
// (template.Store.PublishSnapshot, which holds off the restores starting from it meanwhile).
// The boot has no run-time environment or secrets: a restore gives the run's own.
func TakeSnapshot(ctx context.Context, o Options, dir string, readyTimeout time.Duration, publish func(*snapshot.Staging) error) (*snapshot.Meta, error) {
	if len(o.Env) > 0 || len(o.Secrets) > 0 {
		return nil, errors.New("a snapshot boots without -e values or secrets: a restore gives each run its own")
	}
	stage, err := snapshot.Stage(dir)
	if err != nil {
		return nil, err
	}
	committed := false
	defer func() {
		if !committed {
			stage.Abort()
		}
	}()
	o.save = filepath.Join(stage.Dir, snapshot.MemoryFile)
	o.Snapshot = ""
	if o.CacheDir == "" {
		// The VMM binary's verification is recorded there for the restores (fingerprint).
		if o.CacheDir, err = cache.DefaultDir(); err != nil {
			return nil, err
		}
	}
	g, err := Start(ctx, o)
	if err != nil {
		return nil, err
	}
	defer g.Forget()
	snap, ok := g.backend.(vmm.Snapshotter)
	if !ok || !g.backend.Capabilities().Snapshots {
		g.kill()
		return nil, fmt.Errorf("the %s backend cannot take snapshots: use --backend qemu", backends.Title(g.backend.Name()))
	}
	ctl, err := snap.DialControl(ctx, g.VM.Handle) // before the guest opens its port: see resumeRestored
	if err != nil {
		g.kill()
		return nil, err
	}
	defer ctl.Close()
	attended := make(chan struct{})
	go func() {
		defer close(attended)
		g.AttendStreams(context.WithoutCancel(ctx), Streams{}, 5*time.Second)
	}()
	fail := func(err error) (*snapshot.Meta, error) {
		g.kill()
		<-attended
		return nil, err
	}
	if readyTimeout <= 0 {
		readyTimeout = SnapshotReadyTimeout
	}
	why, readyAt, err := g.awaitReady(ctx, readyTimeout)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(g.progress, "Ready (%s) %.1fs after %s's start; saving\n", why, readyAt.Sub(g.spawned).Seconds(), backends.Title(g.State.Handle.Backend))
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	msg, _ := json.Marshal(abi.Control{Type: abi.ControlFreeze})
	if _, err := ctl.Write(append(msg, '\n')); err != nil {
		return fail(fmt.Errorf("freeze the workload: %w", err))
	}
	if _, err := awaitEvent(fctx, g.Run.Events(), g.VM.Done(), func(e abi.Event) bool { return e.Type == abi.EventFrozen }); err != nil {
		return fail(fmt.Errorf("freeze the workload: %w", err))
	}
	if err := snap.Save(fctx, g.VM.Handle, filepath.Join(stage.Dir, snapshot.StateFile), o.save); err != nil {
		return fail(err)
	}
	if err := g.backend.Quit(fctx, g.VM.Handle); err != nil {
		g.kill()
	}
	<-attended
	names := []string{snapshot.StateFile, snapshot.MemoryFile}
	if i := slices.IndexFunc(g.spec.Disks, func(d vmm.Disk) bool { return d.ID == "data" }); i >= 0 {
		if err := snapshot.CopySparse(g.spec.Disks[i].Path, filepath.Join(stage.Dir, snapshot.DataFile)); err != nil {
			return nil, fmt.Errorf("the snapshot's copy of the data volume: %w", err)
		}
		names = append(names, snapshot.DataFile)
	}
	fp, bin, err := fingerprint(ctx, g.backend, g.spec, g.boot, nil, o.CacheDir)
	if err != nil {
		return nil, err
	}
	meta := &snapshot.Meta{Created: time.Now().UTC(), Fingerprint: fp, VMM: bin, ConfigSize: g.configSize,
		Env: o.Env, Ready: why, ReadyMS: readyAt.Sub(g.spawned).Milliseconds()}
	if err := stage.Seal(meta, names...); err != nil {
		return nil, err
	}
	if err := publish(stage); err != nil {
		return nil, err
	}
	committed = true
	return meta, nil
}

// awaitReady waits until the workload is ready: every health check of the image passes at once,
// or, with none, the guest's first event arrives (init opens the host channel once the
// workload's start has settled). It fails when the guest ends first or within timeout, with the
// health checks' last results and the console's last lines.
func (g *Guest) awaitReady(ctx context.Context, timeout time.Duration) (string, time.Time, error) {
	checks := map[string]string{}
	for _, h := range g.boot.Manifest.Health {
		checks[h.Service] = "starting"
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := awaitEvent(ctx, g.Run.Events(), g.VM.Done(), func(e abi.Event) bool {
		if len(checks) == 0 {
			return true
		}
		if e.Type == abi.EventHealth {
			if _, ok := checks[e.Name]; ok {
				checks[e.Name] = e.Status
			}
		}
		for _, s := range checks {
			if s != "healthy" {
				return false
			}
		}
		return true
	})
	if err == nil {
		if len(checks) == 0 {
			return "settled", time.Now(), nil
		}
		return "healthy: " + strings.Join(slices.Sorted(maps.Keys(checks)), ", "), time.Now(), nil
	}
	var health []string
	for _, name := range slices.Sorted(maps.Keys(checks)) {
		health = append(health, name+" "+checks[name])
	}
	why := fmt.Sprintf("the workload did not become ready within %s (%v)", timeout, err)
	if len(health) > 0 {
		why += "; health checks: " + strings.Join(health, ", ")
	}
	if tail := runlog.ConsoleTail(g.Run, 10); tail != "" {
		why += "\nthe console's last lines:\n" + tail
	}
	return "", time.Time{}, errors.New(why)
}

// kill ends the guest's VMM now and waits until it is gone: a record is removed (Forget) only
// once its VMM no longer runs.
func (g *Guest) kill() {
	if err := vmm.Kill(g.VM.Handle, g.log); err != nil {
		g.log.Debug("kill VMM", "err", err)
	}
	select {
	case <-g.VM.Done():
	case <-time.After(5 * time.Second):
		g.log.Debug("the killed VMM has not exited", "pid", g.VM.Handle.PID)
	}
}

// newMemoryFile creates the RAM file of a snapshot boot: memMB MiB, sparse (the guest fills
// what it touches), only for its owner.
func newMemoryFile(path string, memMB int) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("memory file: %w", err)
	}
	err = f.Truncate(int64(memMB) << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("memory file: %w", err)
	}
	return nil
}
