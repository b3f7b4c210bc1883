package perf

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/guestlog"
)

// What ended a boot's measurement (Boot.Ready).
const (
	ReadyLine    = "first line" // the entry printed its first line
	ReadyHealthy = "healthy"    // a service passed its first health check
)

// readiness watches one boot for the workload's first sign of life as the host sees it: its
// first whole line of output (what launch passes to the writer: the workload's own output, not
// the kernel's console), or a service's first healthy check (a server that prints nothing).
// perf stops the guest then, so a workload that never exits (a worker, a server) costs a boot,
// not the whole --timeout.
type readiness struct {
	events string // the run's events file
	done   chan struct{}
	once   sync.Once

	mu      sync.Mutex
	at      time.Time
	why     string
	pending []byte // events bytes after the last complete line
}

func newReadiness(events string) *readiness {
	return &readiness{events: events, done: make(chan struct{})}
}

// Ready is closed when the workload showed its first sign of life.
func (r *readiness) Ready() <-chan struct{} { return r.done }

// result returns when and how the workload became ready (zero: it did not).
func (r *readiness) result() (time.Time, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.at, r.why
}

func (r *readiness) fire(at time.Time, why string) {
	r.once.Do(func() {
		r.mu.Lock()
		r.at, r.why = at, why
		r.mu.Unlock()
		close(r.done)
	})
}

// Write takes the workload's output.
func (r *readiness) Write(p []byte) (int, error) {
	if bytes.IndexByte(p, '\n') >= 0 {
		r.fire(time.Now(), ReadyLine)
	}
	return len(p), nil
}

// eventsWriter takes the run's events as the guest writes them.
type eventsWriter struct{ r *readiness }

func (w eventsWriter) Write(p []byte) (int, error) {
	r := w.r
	r.mu.Lock()
	r.pending = append(r.pending, p...)
	var healthy bool
	for {
		i := bytes.IndexByte(r.pending, '\n')
		if i < 0 {
			break
		}
		var ev abi.Event
		if json.Unmarshal(r.pending[:i], &ev) == nil && ev.Type == abi.EventHealth && ev.Status == "healthy" {
			healthy = true
		}
		r.pending = r.pending[i+1:]
	}
	if len(r.pending) > abi.MaxEventLine {
		// The guest writes this file: a line without end must not grow the host's memory.
		r.pending = r.pending[:0]
	}
	r.mu.Unlock()
	if healthy {
		r.fire(time.Now(), ReadyHealthy)
	}
	return len(p), nil
}

// watchEvents follows the run's events until ctx ends or the guest is gone.
func (r *readiness) watchEvents(ctx context.Context, vmDone <-chan struct{}) {
	_ = guestlog.Follow(ctx, r.events, eventsWriter{r}, vmDone)
}
