package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Remote are the settings of deploy's commands for a deployment already on hosts.
type Remote struct {
	Hosts         []Target
	SSH           SSHOptions
	RemoteBin     string
	Exe           string
	Name          string
	HealthTimeout time.Duration
	Progress      io.Writer
}

// HostStatus is a deployment on one host: its revisions and its guest as the host's ps sees it.
type HostStatus struct {
	Host  string `json:"host"`
	App   *App   `json:"deployment,omitempty"`
	Guest *Guest `json:"guest,omitempty"`
	Error string `json:"error,omitempty"`
}

func (r Remote) opts() Options {
	return Options{SSH: r.SSH, RemoteBin: r.RemoteBin, Exe: r.Exe, Progress: r.Progress}
}

// each connects to every host in turn and calls fn; it stops at the first failure.
func (r Remote) each(ctx context.Context, fn func(h *host, s *HostStatus) error) ([]HostStatus, error) {
	var out []HostStatus
	for _, t := range r.Hosts {
		s := HostStatus{Host: t.String()}
		err := func() error {
			c, err := Dial(ctx, t, r.SSH)
			if err != nil {
				return err
			}
			defer c.Close()
			h, err := setupHost(ctx, c, r.opts())
			if err != nil {
				return err
			}
			return fn(h, &s)
		}()
		if err != nil {
			s.Error = err.Error()
			out = append(out, s)
			return out, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Status reports the deployment on each host.
func Status(ctx context.Context, r Remote) ([]HostStatus, error) {
	return r.each(ctx, func(h *host, s *HostStatus) error {
		var app App
		if err := h.agent(ctx, agentTimeout, OpStatus, NameRequest{Name: r.Name}, &app); err != nil {
			return err
		}
		if app.Current == nil {
			return fmt.Errorf("%s: nothing named %s is deployed there", h.c.Target, r.Name)
		}
		s.App = &app
		g, err := h.guest(ctx, r.Name)
		s.Guest = g
		return err
	})
}

// Stop stops the deployment on each host (its record and images stay: deploy or rollback
// starts it again).
func Stop(ctx context.Context, r Remote) ([]HostStatus, error) {
	return r.each(ctx, func(h *host, s *HostStatus) error {
		var app App
		if err := h.agent(ctx, agentTimeout, OpStop, NameRequest{Name: r.Name}, &app); err != nil {
			return err
		}
		s.App = &app
		return nil
	})
}

// Rollback puts the previous revision back on each host and waits for its health.
func Rollback(ctx context.Context, r Remote) ([]HostStatus, error) {
	if r.HealthTimeout <= 0 {
		r.HealthTimeout = DefaultHealthTimeout
	}
	return r.each(ctx, func(h *host, s *HostStatus) error {
		var app App
		if err := h.agent(ctx, agentTimeout, OpRollback, NameRequest{Name: r.Name}, &app); err != nil {
			return err
		}
		s.App = &app
		if app.Current == nil {
			return fmt.Errorf("%s: the host's answer to %s names no current revision", h.c.Target, OpRollback)
		}
		if _, err := h.waitHealthy(ctx, r.Name, app.Current.Checks, app.Started, r.HealthTimeout); err != nil {
			return err
		}
		g, err := h.guest(ctx, r.Name)
		s.Guest = g
		return err
	})
}

// Logs runs `ukernel logs NAME ARGS...` on each host, its output to stdout and stderr. With
// follow it has no deadline (it ends with the guest or the caller's context).
func Logs(ctx context.Context, r Remote, args []string, follow bool, stdout, stderr io.Writer) error {
	_, err := r.each(ctx, func(h *host, s *HostStatus) error {
		lctx, cancel := ctx, context.CancelFunc(func() {})
		if !follow {
			lctx, cancel = context.WithTimeout(ctx, agentTimeout)
		}
		defer cancel()
		argv := append([]string{h.bin, "logs"}, args...)
		argv = append(argv, "--", r.Name)
		err := h.c.Stream(lctx, stdout, stderr, argv...)
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s: logs: no end within %s", h.c.Target, agentTimeout)
		}
		return err
	})
	return err
}
