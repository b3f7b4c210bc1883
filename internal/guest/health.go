package guest

import (
	"context"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// Health statuses reported in abi.EventHealth.
const (
	HealthStarting  = "starting"
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
)

// HealthState is the state machine of one health check. A service starts out "starting";
// failures within its start period do not count until it has been healthy once; a success makes
// it "healthy"; Retries consecutive failures make it "unhealthy".
type HealthState struct {
	Retries     int
	StartPeriod time.Duration

	status   string
	failures int
	since    time.Time // when the process (re)started
	seenOK   bool
}

// NewHealthState returns the state of check for a process started at now.
func NewHealthState(c abi.HealthCheck, now time.Time) *HealthState {
	r := c.Retries
	if r < 1 {
		r = 1
	}
	return &HealthState{Retries: r, StartPeriod: time.Duration(c.StartPeriod) * time.Second, status: HealthStarting, since: now}
}

// Status is the current status.
func (h *HealthState) Status() string { return h.status }

// Reset starts over for a process restarted at now; it reports whether the status changed.
func (h *HealthState) Reset(now time.Time) bool {
	changed := h.status != HealthStarting
	*h = HealthState{Retries: h.Retries, StartPeriod: h.StartPeriod, status: HealthStarting, since: now}
	return changed
}

// Observe records one probe result at now; it returns the status and whether it changed.
func (h *HealthState) Observe(ok bool, now time.Time) (string, bool) {
	prev := h.status
	switch {
	case ok:
		h.failures, h.seenOK, h.status = 0, true, HealthHealthy
	case !h.seenOK && now.Sub(h.since) < h.StartPeriod:
		// Still starting: a slow start is not a failure.
	default:
		h.failures++
		if h.failures >= h.Retries {
			h.status = HealthUnhealthy
		}
	}
	return h.status, h.status != prev
}

// probeHTTP GETs url within timeout: a 2xx or 3xx answer is healthy. Redirects are not followed.
func probeHTTP(ctx context.Context, url string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

// probeCmd runs spec (a health command in the root, as the service's user) and is healthy when
// it exits 0 within timeout; on timeout its process group is killed.
func probeCmd(ctx context.Context, sup *Supervisor, spec Spec, timeout time.Duration) bool {
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return false
	}
	defer devnull.Close()
	spec.Stdout, spec.Stderr = devnull, devnull
	p, err := sup.Start(spec)
	if err != nil {
		return false
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.Done():
		return p.Code() == 0
	case <-t.C:
	case <-ctx.Done():
	}
	_ = syscall.Kill(-p.PID, syscall.SIGKILL)
	select {
	case <-p.Done():
	case <-time.After(2 * time.Second):
	}
	return false
}
