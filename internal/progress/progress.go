// Package progress is the one place ukernel's progress on stderr is drawn: a status line per
// step (Locking, Building, Packing, Starting VM) with its elapsed time, download bars, and the
// plain lines other packages print through it as an io.Writer. On a terminal the running step's
// line updates in place (with the current download's bar) and ends as a finished line; on
// anything else (a pipe, a CI log) every line is plain and final, and nothing is redrawn.
package progress

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"time"
)

// Writer draws progress on out. Its methods are safe for concurrent use; a nil *Writer is
// silent.
type Writer struct {
	out io.Writer
	tty bool

	mu      sync.Mutex
	step    *Step
	bar     string
	drawn   bool // the live line is on screen (tty)
	midLine bool // the last Write ended without a newline
}

// New returns a Writer on out; tty says out is a terminal where lines may be redrawn.
func New(out io.Writer, tty bool) *Writer { return &Writer{out: out, tty: tty} }

// For returns w itself when it is a *Writer (so every user of one stream shares its live
// line), else a Writer on it.
func For(w io.Writer, tty bool) *Writer {
	if pw, ok := w.(*Writer); ok {
		return pw
	}
	if w == nil {
		return nil
	}
	return New(w, tty)
}

// TTY reports whether lines are redrawn in place.
func (w *Writer) TTY() bool { return w != nil && w.tty }

// Write prints p, whole lines of other packages' progress, above the live line.
func (w *Writer) Write(p []byte) (int, error) {
	if w == nil {
		return len(p), nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.clear()
	n, err := w.out.Write(p)
	w.midLine = len(p) > 0 && p[len(p)-1] != '\n'
	w.draw()
	return n, err
}

// Printf prints one line.
func (w *Writer) Printf(format string, args ...any) {
	if w == nil {
		return
	}
	fmt.Fprintf(w, format+"\n", args...)
}

// Bar shows a transient line beside the running step (a download's progress) on a terminal;
// "" removes it. Elsewhere it does nothing: a bar is never left in a log.
func (w *Writer) Bar(s string) {
	if w == nil || !w.tty {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.bar = s
	w.clear()
	w.draw()
}

// clear erases the live line; w.mu is held.
func (w *Writer) clear() {
	if w.drawn {
		io.WriteString(w.out, "\r\x1b[K")
		w.drawn = false
	}
}

// draw shows the live line (the running step and the bar); w.mu is held.
func (w *Writer) draw() {
	if !w.tty || w.midLine {
		return
	}
	var b bytes.Buffer
	if w.step != nil {
		fmt.Fprintf(&b, "%s... %s", w.step.name, Elapsed(time.Since(w.step.start)))
	}
	if w.bar != "" {
		if b.Len() > 0 {
			b.WriteString("  ")
		}
		b.WriteString(w.bar)
	}
	if b.Len() == 0 {
		return
	}
	w.out.Write(b.Bytes())
	w.drawn = true
}

// Step is one step of a command, from Start to Done.
type Step struct {
	w     *Writer
	name  string
	start time.Time
	stop  chan struct{}
	once  sync.Once
}

// Start begins the step called name ("Packing"). On a terminal its line shows at once and its
// elapsed time ticks; elsewhere nothing is printed until it ends.
func (w *Writer) Start(name string) *Step {
	s := &Step{w: w, name: name, start: time.Now(), stop: make(chan struct{})}
	if w == nil {
		return s
	}
	w.mu.Lock()
	w.step = s
	w.clear()
	w.draw()
	w.mu.Unlock()
	if w.tty {
		go s.tick()
	}
	return s
}

func (s *Step) tick() {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.w.mu.Lock()
			if s.w.step == s {
				s.w.clear()
				s.w.draw()
			}
			s.w.mu.Unlock()
		}
	}
}

// Done ends the step with its finished line, "Packing: done (28.1s)", or outcome in place of
// "done". A step that had nothing to do (Skip) leaves no line.
func (s *Step) Done(outcome string) {
	if outcome == "" {
		outcome = "done"
	}
	s.end(fmt.Sprintf("%s: %s (%s)", s.name, outcome, Elapsed(time.Since(s.start))))
}

// Skip ends a step that found nothing to do: its live line goes and no line is left.
func (s *Step) Skip() { s.end("") }

// Fail ends the step that failed; the error is printed by whoever handles it.
func (s *Step) Fail() {
	s.end(fmt.Sprintf("%s: failed after %s", s.name, Elapsed(time.Since(s.start))))
}

func (s *Step) end(line string) {
	s.once.Do(func() {
		close(s.stop)
		w := s.w
		if w == nil {
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.step == s {
			w.step = nil
			w.bar = ""
		}
		w.clear()
		if line != "" {
			if w.midLine {
				io.WriteString(w.out, "\n")
				w.midLine = false
			}
			io.WriteString(w.out, line+"\n")
		}
		w.draw()
	})
}

// Elapsed formats a duration for a person: "40ms", "2.1s", "1m05s". Never "0.0s": a short
// time keeps its milliseconds.
func Elapsed(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	d = d.Round(time.Second)
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}
