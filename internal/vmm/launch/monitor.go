package launch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/guestlog"
	"github.com/ukernel-dev/ukernel/internal/runlog"
	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/internal/vmm"
)

// MonitorCommand is the hidden subcommand that runs a detached guest's monitor: ukernel itself,
// re-executed, as podman runs conmon. The monitor starts the guest, so the VMM is its child: it
// owns the guest's output channel and output log, sees the VMM's exit and records the outcome.
const MonitorCommand = "__monitor"

// monitorRequest is what `run -d` hands its monitor, on the monitor's stdin: never on its
// command line or in its environment, where the run-time environment and secrets would show.
type monitorRequest struct {
	ProjectDir  string            `json:"project_dir"`
	Image       string            `json:"image"`
	Name        string            `json:"name"`
	VCPU        int               `json:"vcpu"`
	MemoryMB    int               `json:"memory_mb"`
	Net         abi.Net           `json:"net"`
	Publish     []string          `json:"publish"`
	Env         map[string]string `json:"env"`
	Secrets     map[string][]byte `json:"secrets"`
	Accel       string            `json:"accel"`
	Backend     string            `json:"backend"`
	StopTimeout time.Duration     `json:"stop_timeout"`
	Logs        guestlog.Limits   `json:"logs"`
	CacheDir    string            `json:"cache_dir"`
	StoreDir    string            `json:"store_dir"`
	Snapshot    string            `json:"snapshot,omitempty"`
	Restore     RestoreMode       `json:"restore,omitempty"`
	DataMB      int               `json:"data_mb,omitempty"`
	Template    string            `json:"template,omitempty"`
	Templates   string            `json:"templates,omitempty"`
	Revision    string            `json:"revision,omitempty"`
	WantDigest  string            `json:"want_digest,omitempty"`
	Restart     string            `json:"restart,omitempty"`
}

// Detached is what `run -d` reports about the guest it started (its --json document); backend
// and accel carry the names and values of doctor's choice and of ps --json.
type Detached struct {
	Name       string          `json:"name"`
	PID        int             `json:"pid"` // the VMM's
	MonitorPID int             `json:"monitor_pid"`
	Backend    vmm.BackendName `json:"backend"`
	Accel      string          `json:"accel"`
	RunID      string          `json:"run_id"`
	RunDir     string          `json:"run_dir"`
	Console    string          `json:"console_log"`
	Output     string          `json:"output_log"`
	Events     string          `json:"events_log"`
}

type monitorResult struct {
	Started *Detached `json:"started,omitempty"`
	Error   string    `json:"error,omitempty"`
	// DigestError: Error is a *DigestError's (the image is not the one asked for).
	DigestError bool `json:"digest_error,omitempty"`
}

// Monitor file descriptors, after stdin, stdout and stderr.
const (
	monitorProgressFD = 3 // progress lines, until the guest has started
	monitorResultFD   = 4 // one monitorResult
)

// StartDetached starts the guest of o under a monitor process (the ukernel executable exe) and
// returns once the guest runs, or failed to start. The monitor's progress lines go to
// o.Progress meanwhile.
func StartDetached(ctx context.Context, o Options, exe string) (*Detached, error) {
	req := monitorRequest{
		ProjectDir: o.ProjectDir, Image: o.Image, Name: o.Name, VCPU: o.VCPU, MemoryMB: o.MemoryMB,
		Net: o.Net, Publish: o.Publish, Env: o.Env, Secrets: o.Secrets, Accel: o.Accel, Backend: o.Backend,
		StopTimeout: o.StopTimeout, CacheDir: o.CacheDir, Logs: o.Logs, Snapshot: o.Snapshot, Restore: o.Restore, Restart: o.Restart,
		DataMB: o.DataMB, Template: o.Template, Templates: o.Templates, Revision: o.Revision, WantDigest: o.WantDigest,
	}
	if o.Store != nil {
		req.StoreDir = o.Store.Dir
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	progR, progW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer progR.Close()
	resR, resW, err := os.Pipe()
	if err != nil {
		progW.Close()
		return nil, err
	}
	defer resR.Close()
	inR, inW, err := os.Pipe()
	if err != nil {
		progW.Close()
		resW.Close()
		return nil, err
	}
	cmd := exec.Command(exe, MonitorCommand)
	cmd.Stdin = inR
	cmd.ExtraFiles = []*os.File{progW, resW}
	// Its own session: the terminal's Ctrl-C and hangup do not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	progW.Close()
	resW.Close()
	inR.Close()
	if err != nil {
		inW.Close()
		return nil, fmt.Errorf("start the guest's monitor: %w", err)
	}
	go func() {
		inW.Write(body)
		inW.Close()
	}()
	// The monitor is out of reach of the terminal's Ctrl-C (its own session): an interrupt of
	// run -d reaches it from here, as SIGTERM, which stops its start (or its guest) and has it
	// report; one that does not report within a stop's bound is killed (its VMM with it).
	stopped := interruptMonitor(ctx, cmd.Process, o.StopTimeout)
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	io.Copy(progress, progR)
	var res monitorResult
	err = json.NewDecoder(resR).Decode(&res)
	interrupted := stopped()
	if err != nil {
		werr := cmd.Wait()
		if interrupted {
			return nil, fmt.Errorf("the guest's monitor was stopped before it reported (%v): %w", werr, ctx.Err())
		}
		return nil, fmt.Errorf("the guest's monitor ended without reporting (%v): %w", werr, err)
	}
	if res.Started == nil {
		cmd.Wait()
		if res.Error == "" {
			res.Error = "the guest's monitor reported nothing"
		}
		if interrupted {
			return nil, fmt.Errorf("%s: %w", res.Error, ctx.Err())
		}
		if res.DigestError {
			return nil, &DigestError{Image: o.Image, Err: errors.New(res.Error)}
		}
		return nil, errors.New(res.Error)
	}
	res.Started.MonitorPID = cmd.Process.Pid
	cmd.Process.Release()
	if interrupted { // it reported the start as the interrupt reached it: it stops the guest
		return nil, fmt.Errorf("%s started as it was interrupted, and is being stopped (see `ukernel ps -a`): %w", res.Started.Name, ctx.Err())
	}
	return res.Started, nil
}

// monitorKillAfter is how long a monitor asked to stop has, beyond its guest's stop timeout, to
// report before it is killed: what AttendStreams gives an interrupted guest's stop.
const monitorKillAfter = 10 * time.Second

// interruptMonitor sends the monitor p SIGTERM when ctx ends, and SIGKILL when it has not
// reported stopTimeout+monitorKillAfter later. The returned function, called once the monitor
// reported (or ended), stops both and tells whether the monitor was interrupted.
func interruptMonitor(ctx context.Context, p *os.Process, stopTimeout time.Duration) func() bool {
	if stopTimeout <= 0 {
		stopTimeout = DefaultStopTimeout
	}
	var mu sync.Mutex
	done, interrupted := false, false
	finished := make(chan struct{})
	go func() {
		select {
		case <-finished:
			return
		case <-ctx.Done():
		}
		mu.Lock()
		if !done {
			interrupted = true
			p.Signal(syscall.SIGTERM)
		}
		mu.Unlock()
		t := time.NewTimer(stopTimeout + monitorKillAfter)
		defer t.Stop()
		select {
		case <-finished:
		case <-t.C:
			mu.Lock()
			if !done {
				p.Kill()
			}
			mu.Unlock()
		}
	}()
	return func() bool {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			done = true
			close(finished)
		}
		return interrupted
	}
}

// RunMonitor is the monitor's body: it reads its request on stdin, starts the guest, reports on
// its descriptors 3 and 4, then attends the guest until it is gone and records how it ended.
// SIGTERM, SIGINT or SIGHUP stop the guest gracefully.
func RunMonitor(stdin io.Reader) error {
	// Inherited without close-on-exec: the VMM would inherit them too and hold `run -d`, which
	// waits for them to close.
	syscall.CloseOnExec(monitorProgressFD)
	syscall.CloseOnExec(monitorResultFD)
	progress := os.NewFile(monitorProgressFD, "progress")
	result := os.NewFile(monitorResultFD, "result")
	report := func(r monitorResult) {
		json.NewEncoder(result).Encode(r)
		result.Close()
		progress.Close()
	}
	var req monitorRequest
	if err := json.NewDecoder(stdin).Decode(&req); err != nil {
		report(monitorResult{Error: "monitor request: " + err.Error()})
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()
	o := Options{
		ProjectDir: req.ProjectDir, Image: req.Image, Name: req.Name, VCPU: req.VCPU, MemoryMB: req.MemoryMB,
		Snapshot: req.Snapshot, Restore: req.Restore,
		Net: req.Net, Publish: req.Publish, Env: req.Env, Secrets: req.Secrets, Accel: req.Accel,
		Backend: req.Backend, StopTimeout: req.StopTimeout, CacheDir: req.CacheDir, Detached: true, Logs: req.Logs,
		DataMB: req.DataMB, Template: req.Template, Templates: req.Templates, Revision: req.Revision, WantDigest: req.WantDigest, Progress: progress, Restart: req.Restart,
	}
	if req.StoreDir != "" {
		store, err := runstate.OpenAt(req.StoreDir)
		if err != nil {
			report(monitorResult{Error: err.Error()})
			return err
		}
		o.Store = store
	}
	if o.Store == nil {
		store, err := runstate.Open()
		if err != nil {
			report(monitorResult{Error: err.Error()})
			return err
		}
		o.Store = store
	}
	return monitor(ctx, o, report)
}

// monitor starts the guest of o, reports its start, attends it until it is gone and restarts it
// as o.Restart says.
func monitor(ctx context.Context, o Options, report func(monitorResult)) error {
	store := o.Store
	timeout := o.StopTimeout
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	var restarts restartBackoff
	for first := true; ; first = false {
		var g *Guest
		var err error
		if first {
			g, err = Start(ctx, o) // run -d holds the template's pin until this start is reported
		} else {
			g, err = restart(ctx, o)
		}
		if err != nil {
			if first {
				var de *DigestError
				if errors.As(err, &de) {
					report(monitorResult{Error: de.Err.Error(), DigestError: true})
				} else {
					report(monitorResult{Error: err.Error()})
				}
				return err
			}
			// A restart that cannot start (the image was removed) ends the monitor: the
			// guest's record says how its last run ended.
			return err
		}
		name := g.State.Name
		if first {
			// A stop request left for an earlier monitor of this name is not meant for this one.
			store.ClearStopRequest(name)
		}
		streams := Streams{}
		if first {
			// `run -d` returns once the guest shows a sign of life, or with why it did not: a
			// VMM that fails never looks like a running guest.
			detached := &Detached{
				Name: g.State.Name, PID: g.State.Handle.PID, Backend: g.State.Handle.Backend, Accel: g.State.Accel,
				RunID: g.Run.ID, RunDir: g.Run.Dir, Console: g.Run.Console(), Output: g.Run.Output(), Events: g.Run.Events(),
			}
			streams.Started = func(err error) {
				if err != nil {
					report(monitorResult{Error: err.Error()})
					return
				}
				g.progress = io.Discard
				report(monitorResult{Started: detached})
			}
		} else {
			g.progress = io.Discard
		}
		began := time.Now()
		out, err := g.AttendStreams(ctx, streams, timeout)
		if err != nil || ctx.Err() != nil || !ShouldRestart(o.Restart, out) || store.StopRequested(name) {
			store.ClearStopRequest(name)
			return err
		}
		delay, ok := restarts.next(time.Since(began))
		if !ok {
			return fmt.Errorf("%s: restarted %d times in a row, each run shorter than %s; not restarting again", name, restartLimit, restartStable)
		}
		fmt.Fprintf(os.Stderr, "%s ended (%s); restarting in %s (--restart %s)\n", name, outcomeText(out), delay, o.Restart)
		if !sleepUnlessStopped(ctx, store, name, delay) {
			store.ClearStopRequest(name)
			return nil
		}
	}
}

// restart starts a detached guest again. A template's guest holds the template's pin
// (template.Store.Pin) from before its start until its record names the revision again, as
// run --template does: a build's prune or `cache prune` meanwhile waits, or keeps the snapshot
// the restart restores, and never removes it under the restore.
func restart(ctx context.Context, o Options) (*Guest, error) {
	if o.Template != "" && o.Templates != "" {
		unpin, err := template.At(o.Templates).Pin(ctx, o.Template)
		if err != nil {
			return nil, err
		}
		defer unpin()
	}
	return Start(ctx, o)
}

// Restart policies of a detached guest (run -d --restart), as a service's in ukernel.toml.
const (
	RestartNo        = "no"
	RestartOnFailure = "on-failure"
	RestartAlways    = "always"
)

// RestartPolicies lists the accepted --restart values.
var RestartPolicies = []string{RestartNo, RestartOnFailure, RestartAlways}

// ShouldRestart says whether a guest that ended with out is started again under policy:
// on-failure when it did not report code 0, always in any case. A guest stopped with `ukernel
// stop` is never restarted (the monitor checks that apart).
func ShouldRestart(policy string, out runlog.Outcome) bool {
	switch policy {
	case RestartAlways:
		return true
	case RestartOnFailure:
		return !out.Reported || out.Code != 0
	}
	return false
}

// Restart pacing: the delay doubles from restartFirstDelay up to restartMaxDelay for each run
// shorter than restartStable; restartLimit such runs in a row end the monitor (a guest that
// cannot start is not restarted forever).
const (
	restartFirstDelay = time.Second
	restartMaxDelay   = 30 * time.Second
	restartStable     = time.Minute
	restartLimit      = 10
)

type restartBackoff struct{ quick int }

func (b *restartBackoff) next(ran time.Duration) (time.Duration, bool) {
	if ran >= restartStable {
		b.quick = 0
	}
	b.quick++
	if b.quick > restartLimit {
		return 0, false
	}
	return min(restartFirstDelay<<(b.quick-1), restartMaxDelay), true
}

// sleepUnlessStopped waits d; false when ctx ended or a stop was requested meanwhile.
func sleepUnlessStopped(ctx context.Context, store *runstate.Store, name string, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return !store.StopRequested(name)
		case <-tick.C:
			if store.StopRequested(name) {
				return false
			}
		}
	}
}

func outcomeText(out runlog.Outcome) string {
	if out.Reported {
		return fmt.Sprintf("code %d", out.Code)
	}
	return out.Reason
}
