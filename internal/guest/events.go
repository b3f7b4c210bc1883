package guest

import (
	"context"
	"encoding/json"
	"io"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// Now is the guest clock events use: CLOCK_BOOTTIME in nanoseconds, which starts with the kernel
// and keeps counting across suspend, so host and guest agree on what "since boot" means.
func Now() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

// Emitter queues events and writes them, one JSON line each, from its own goroutine so a slow or
// absent host never blocks init or the workload. Events queue from the first instant; they are
// written once Attach names the port. They are encoded by the writer too: under software
// emulation running encoding/json's code for the first time is costly, and the events of a
// boot queue until after the workload has started.
type Emitter struct {
	mu      sync.Mutex // guards closed against a send on the closed channel
	closed  bool
	ch      chan abi.Event
	done    chan struct{}
	dropped atomic.Int64
	started atomic.Bool
	next    chan io.Writer // the channel that replaces the current one (Reattach)
	stop    chan struct{}  // closed by Close: a writer waiting for a new channel gives up
}

// NewEmitter returns an emitter that holds up to capacity events until they are written.
func NewEmitter(capacity int) *Emitter {
	return &Emitter{ch: make(chan abi.Event, capacity), done: make(chan struct{}),
		next: make(chan io.Writer, 1), stop: make(chan struct{})}
}

// Emit queues e, stamping its time when unset. A full queue drops the event rather than block.
// e's maps must not change afterwards (it is encoded later).
func (em *Emitter) Emit(e abi.Event) {
	if e.Time == 0 {
		e.Time = Now()
	}
	em.mu.Lock()
	defer em.mu.Unlock()
	if em.closed {
		return
	}
	select {
	case em.ch <- e:
	default:
		em.dropped.Add(1)
	}
}

// Phase emits a finished boot phase that began at start (a Now value).
func (em *Emitter) Phase(name string, start int64) {
	now := Now()
	em.Emit(abi.Event{Type: abi.EventPhase, Time: now, Name: name, Start: start, Duration: now - start})
}

// Dropped is the number of events lost to a full queue.
func (em *Emitter) Dropped() int64 { return em.dropped.Load() }

// Attach starts writing queued and future events to w. Only the first call has an effect.
func (em *Emitter) Attach(w io.Writer) {
	if !em.started.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer close(em.done)
		for e := range em.ch {
			line, err := json.Marshal(e)
			if err != nil {
				continue
			}
			line = append(line, '\n')
			for {
				select {
				case nw := <-em.next:
					w = swap(w, nw)
				default:
				}
				if _, err := w.Write(line); err == nil {
					break
				}
				// The channel is gone: wait for the next (a restore under Firecracker, whose
				// vsock connections the guest's driver resets), the event kept for it.
				select {
				case nw := <-em.next:
					w = swap(w, nw)
				case <-em.stop:
					return
				}
			}
		}
	}()
}

// Reattach writes the events from now on to w in place of the channel Attach was given (which
// is closed), the one being written when it failed included.
func (em *Emitter) Reattach(w io.Writer) {
	if !em.started.Load() {
		em.Attach(w)
		return
	}
	select {
	case old := <-em.next: // never used: replaced
		swap(old, nil)
	default:
	}
	em.next <- w
}

// swap closes the channel old, which nw replaces.
func swap(old, nw io.Writer) io.Writer {
	if c, ok := old.(io.Closer); ok {
		c.Close()
	}
	return nw
}

// Close stops accepting events and waits until the queue is written or ctx ends. Events emitted
// after Close are lost, which is why it comes last, right before power-off.
func (em *Emitter) Close(ctx context.Context) {
	em.mu.Lock()
	if !em.closed {
		em.closed = true
		close(em.ch)
		close(em.stop)
	}
	em.mu.Unlock()
	if !em.started.Load() {
		return
	}
	select {
	case <-em.done:
	case <-ctx.Done():
	}
}
