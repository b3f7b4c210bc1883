package guest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// EntryHealthName is how health checks name the entry (project.EntryService; not imported, to
// keep the TOML decoder out of init).
const EntryHealthName = "main"

// TerminateGrace is how long a service being restarted for its health gets between SIGTERM and
// SIGKILL.
const TerminateGrace = 5 * time.Second

// procSpec builds the start spec of a workload process running as user, with secretGroup (see
// PlanSecrets): base environment with the user's HOME, then the layers; no_new_privs unless it
// runs as root. Run-time environment values are only put into the process, never logged.
func (in *pid1) procSpec(name string, argv []string, dir string, user abi.User, secretGroup uint32, stdout, stderr *os.File, env ...map[string]string) Spec {
	if dir == "" {
		dir = in.manifest.Workdir
	}
	if dir == "" {
		dir = abi.AppDir
	}
	home := user.Home
	if home == "" {
		home = "/"
	}
	layers := append([]map[string]string{{"USER": user.Name, "LOGNAME": user.Name}}, env...)
	return Spec{
		Name:       name,
		Argv:       argv,
		Env:        MergeEnv(home, layers...),
		Dir:        dir,
		Root:       in.layout.Root,
		Stdout:     stdout,
		Stderr:     stderr,
		Credential: Credential(user, secretGroup),
		NoNewPrivs: user.UID != 0,
	}
}

// healthRunner probes one health check and reports each change of its status.
type healthRunner struct {
	check  abi.HealthCheck
	spec   Spec          // for cmd probes: the target's user, environment and root
	signal chan struct{} // where "stayed unhealthy" goes; nil: nothing to restart
	events *Emitter

	mu    sync.Mutex
	state *HealthState
}

func (h *healthRunner) emit(status string) {
	h.events.Emit(abi.Event{Type: abi.EventHealth, Name: h.check.Service, Status: status})
}

// report emits the current status again (a restored guest's host has not seen it).
func (h *healthRunner) report() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state != nil {
		h.emit(h.state.Status())
	}
}

// reset starts over after the target (re)started.
func (h *healthRunner) reset(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state == nil {
		h.state = NewHealthState(h.check, now)
		h.emit(HealthStarting)
		return
	}
	if h.state.Reset(now) {
		h.emit(HealthStarting)
	}
}

func (h *healthRunner) run(ctx context.Context, sup *Supervisor) {
	interval := time.Duration(max(h.check.IntervalS, 1)) * time.Second
	timeout := time.Duration(max(h.check.TimeoutS, 1)) * time.Second
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var ok bool
		if h.check.HTTP != "" {
			ok = probeHTTP(ctx, h.check.HTTP, h.spec.Root, timeout)
		} else {
			spec := h.spec
			spec.Name, spec.Argv, spec.Dir = h.check.Service+" health", h.check.Cmd, "/"
			ok = probeCmd(ctx, sup, spec, timeout)
		}
		if ctx.Err() != nil {
			return
		}
		h.mu.Lock()
		if h.state == nil {
			h.mu.Unlock()
			continue // the target has not started yet
		}
		status, changed := h.state.Observe(ok, time.Now())
		if changed {
			h.emit(status)
		}
		h.mu.Unlock()
		if changed && status == HealthUnhealthy && h.signal != nil {
			select {
			case h.signal <- struct{}{}:
			default:
			}
		}
	}
}

// startHealth starts the health check of target (a service name or "main"), if it has one, and
// returns its runner; restart receives "stayed unhealthy" when the target's policy restarts it.
func (in *pid1) startHealth(ctx context.Context, target string, spec Spec, restart chan struct{}) *healthRunner {
	for _, c := range in.manifest.Health {
		if c.Service != target {
			continue
		}
		h := &healthRunner{check: c, spec: spec, signal: restart, events: in.events}
		in.healthMu.Lock()
		in.health = append(in.health, h)
		in.healthMu.Unlock()
		go h.run(ctx, in.sup)
		return h
	}
	return nil
}

// runService starts service s and keeps it running under its restart policy until ctx ends.
func (in *pid1) runService(ctx context.Context, s abi.Service, spec Spec) {
	restart := make(chan struct{}, 1)
	policy := s.Restart
	if policy != RestartOnFailure && policy != RestartAlways {
		restart = nil // an unhealthy service that is never restarted is only reported
	}
	// The health check lives as long as the service: one that stopped for good is not probed.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	health := in.startHealth(ctx, s.Name, spec, restart)
	bo := DefaultBackoff()
	for {
		began := time.Now()
		code, forced := in.runOnce(ctx, s.Name, spec, restart, health)
		if ctx.Err() != nil {
			return
		}
		if !ShouldRestart(policy, code, forced) {
			return
		}
		delay, ok := bo.Next(time.Now(), time.Since(began))
		if !ok {
			msg := fmt.Sprintf("restarted %d times within %s; not restarting again", bo.Limit, bo.Window)
			in.log.Warn("service gave up", "service", s.Name, "why", msg)
			in.events.Emit(abi.Event{Type: abi.EventServiceGiveUp, Name: s.Name, Message: msg})
			return
		}
		why := "exited"
		if forced {
			why = "stayed unhealthy"
		}
		in.log.Warn("service "+why+"; restarting", "service", s.Name, "code", code, "policy", policy, "delay", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		select {
		case <-restart: // a request from before this start is stale
		default:
		}
	}
}

// runOnce runs one life of a service and returns its exit code, and whether init ended it
// because it stayed unhealthy.
func (in *pid1) runOnce(ctx context.Context, name string, spec Spec, restart <-chan struct{}, health *healthRunner) (code int, forced bool) {
	p, err := in.sup.Start(spec)
	if err != nil {
		in.log.Warn("service did not start", "service", name, "err", err)
		code = 127
		in.events.Emit(abi.Event{Type: abi.EventServiceExit, Name: name, Code: &code, Message: err.Error()})
		return code, false
	}
	in.events.Emit(abi.Event{Type: abi.EventServiceStart, Name: name, PID: p.PID})
	if health != nil {
		health.reset(time.Now())
	}
	select {
	case <-p.Done():
	case <-restart:
		forced = true
		terminate(p, TerminateGrace)
	case <-ctx.Done():
		// The stop sequence signals every process; wait for this one within its bounds.
		select {
		case <-p.Done():
		case <-time.After(ShutdownGrace + abi.DefaultStopGrace):
		}
	}
	select {
	case <-p.Done():
		code = p.Code()
	default:
		code = 137
	}
	in.events.Emit(abi.Event{Type: abi.EventServiceExit, Name: name, Code: &code})
	return code, forced
}

// terminate ends p's process group: SIGTERM, then SIGKILL after grace.
func terminate(p *Proc, grace time.Duration) {
	_ = syscall.Kill(-p.PID, syscall.SIGTERM)
	select {
	case <-p.Done():
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.PID, syscall.SIGKILL)
	select {
	case <-p.Done():
	case <-time.After(2 * time.Second):
	}
}

// pipes returns the stdout and stderr of service ("" for the entry) on out. Without an output
// channel a service's two streams share one prefixed pipe, so its lines stay in order.
func (in *pid1) pipes(out *Output, service string) (stdout, stderr *os.File, err error) {
	if stdout, err = out.Pipe(service, abi.FrameStdout); err != nil || !out.Framed() {
		return stdout, stdout, err
	}
	stderr, err = out.Pipe(service, abi.FrameStderr)
	return stdout, stderr, err
}

// startWorkload starts every service under supervision and the entry, if any; the services
// stop being restarted once ctx ends.
func (in *pid1) startWorkload(ctx context.Context) (*Proc, error) {
	m := in.manifest
	if len(m.Entry) == 0 && len(m.Services) == 0 {
		return nil, fail("start workload", errors.New("the manifest has neither an entry nor services"))
	}
	out := in.output()
	for _, s := range m.Services {
		u, err := LookupUser(m.Users, s.User)
		if err != nil {
			return nil, fail("start service "+s.Name, err)
		}
		stdout, stderr, err := in.pipes(out, s.Name)
		if err != nil {
			return nil, fail("start service "+s.Name, err)
		}
		spec := in.procSpec(s.Name, s.Command, s.Workdir, u, in.secrets.Services[s.Name], stdout, stderr, m.Env, s.Env, in.cfg.Env)
		go in.runService(ctx, s, spec)
	}
	if len(m.Entry) == 0 {
		return nil, nil
	}
	u, err := LookupUser(m.Users, m.User)
	if err != nil {
		return nil, fail("start entry", err)
	}
	// Without an output channel the entry writes to the console itself, as it always did.
	stdout, stderr := in.console, in.console
	if out.Framed() {
		if stdout, stderr, err = in.pipes(out, ""); err != nil {
			return nil, fail("start entry", err)
		}
	}
	spec := in.procSpec("entry", m.Entry, "", u, in.secrets.Entry, stdout, stderr, m.Env, in.cfg.Env)
	p, err := in.sup.Start(spec)
	if err != nil {
		return nil, fail("start entry", err)
	}
	in.events.Emit(abi.Event{Type: abi.EventEntryStart, PID: p.PID})
	if h := in.startHealth(ctx, EntryHealthName, spec, nil); h != nil {
		h.reset(time.Now())
	}
	return p, nil
}
