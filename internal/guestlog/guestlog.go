// Package guestlog is the home of a run's output log: it records what the guest's workload
// wrote (its output channel, abi.Frame) and what the kernel printed on the console, each piece
// with the host's time, in one structured file per run (logs/runs/<id>/output.jsonl, one JSON
// record a line, in the style of Docker's json-file driver), passes it on live, and reads it
// back for `ukernel logs`. Each log of a run is bounded (Limits): the output log rotates as it
// is written, the console (which the VMM writes) by TruncateCopy as it is followed; readers
// read across the rotated files and take tails from the end, so their memory does not grow
// with a log's size.
package guestlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// Streams of a record.
const (
	Stdout = "stdout"
	Stderr = "stderr"
	Kernel = "kernel" // the serial console: the kernel's lines, and init's own messages
)

// Record is one line of output (or the end of a write that had no newline).
type Record struct {
	Time    time.Time `json:"time"`
	Stream  string    `json:"stream"`
	Service string    `json:"service,omitempty"` // "" for the entry (and the kernel)
	Log     string    `json:"log"`
}

// Writer appends records to a run's output log, one per line of each stream of each process,
// and hands what is written to Live as it comes (a partial line too: a prompt shows at once).
type Writer struct {
	mu      sync.Mutex
	f       *RotatingFile
	enc     *json.Encoder
	live    func(stream string, data []byte)
	now     func() time.Time
	pending map[string]*partial // a line's start, by stream and service, until its newline
}

type partial struct {
	since time.Time
	buf   []byte
}

// maxPartial bounds a line held for its newline; a longer one is recorded in pieces.
const maxPartial = 16 << 10

// Create opens the output log at path for appending (creating it), rotating it at l.
func Create(path string, l Limits) (*Writer, error) {
	f, err := OpenRotating(path, l)
	if err != nil {
		return nil, fmt.Errorf("output log: %w", err)
	}
	return &Writer{f: f, enc: json.NewEncoder(f), now: time.Now, pending: map[string]*partial{}}, nil
}

// SetLive sets the function each piece of output is handed to as it is added.
func (w *Writer) SetLive(live func(stream string, data []byte)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.live = live
}

// Add records data written to stream by service: each line it completes becomes a record with
// the time its first piece arrived.
func (w *Writer) Add(stream, service string, data []byte) {
	if len(data) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.live != nil {
		w.live(stream, data)
	}
	now := w.now().UTC()
	key := stream + "\x00" + service
	p := w.pending[key]
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if p == nil {
				p = &partial{since: now}
				w.pending[key] = p
			}
			p.buf = append(p.buf, data...)
			if len(p.buf) >= maxPartial {
				w.record(Record{Time: p.since, Stream: stream, Service: service, Log: string(p.buf)})
				delete(w.pending, key)
			}
			return
		}
		line, since := data[:i+1], now
		if p != nil {
			line, since = append(p.buf, line...), p.since
			delete(w.pending, key)
			p = nil
		}
		w.record(Record{Time: since, Stream: stream, Service: service, Log: string(line)})
		data = data[i+1:]
	}
}

func (w *Writer) record(r Record) {
	_ = w.enc.Encode(r) // a full disk loses records, never the guest
}

// Close records the lines still waiting for their newline and closes the file.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for key, p := range w.pending {
		stream, service, _ := strings.Cut(key, "\x00")
		w.record(Record{Time: p.since, Stream: stream, Service: service, Log: string(p.buf)})
	}
	w.pending = nil
	return w.f.Close()
}

// CopyFrames records the frames read from the guest's output channel until it ends. hello is
// called at the first hello frame: init runs. A channel that ends cleanly returns nil.
func CopyFrames(r io.Reader, w *Writer, hello func(version string)) error {
	fr := abi.NewFrameReader(r)
	for {
		f, err := fr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch f.Kind {
		case abi.FrameHello:
			if hello != nil {
				hello(string(f.Data))
				hello = nil
			}
		case abi.FrameStdout:
			w.Add(Stdout, f.Service, f.Data)
		case abi.FrameStderr:
			w.Add(Stderr, f.Service, f.Data)
		}
	}
}

// ConsoleWriter turns the console's bytes into kernel records, a line at a time (the serial
// console ends lines with CR LF; records end them with LF). Flush writes a last partial line.
type ConsoleWriter struct {
	w   *Writer
	buf []byte
	// Seen, if set, is called at the first byte: the kernel runs.
	Seen func()
}

// NewConsoleWriter records console output in w.
func NewConsoleWriter(w *Writer) *ConsoleWriter { return &ConsoleWriter{w: w} }

func (c *ConsoleWriter) Write(p []byte) (int, error) {
	if len(p) > 0 && c.Seen != nil {
		c.Seen()
		c.Seen = nil
	}
	c.buf = append(c.buf, p...)
	i := bytes.LastIndexByte(c.buf, '\n')
	if i < 0 {
		return len(p), nil
	}
	lines := bytes.ReplaceAll(c.buf[:i+1], []byte("\r\n"), []byte("\n"))
	c.w.Add(Kernel, "", lines)
	c.buf = append(c.buf[:0], c.buf[i+1:]...)
	return len(p), nil
}

// Flush records what is left without a newline.
func (c *ConsoleWriter) Flush() {
	if len(c.buf) > 0 {
		c.w.Add(Kernel, "", bytes.TrimRight(c.buf, "\r"))
		c.buf = nil
	}
}

// Filter selects records.
type Filter struct {
	Kernel   bool      // include the kernel's console
	Service  string    // only this service's output ("" all)
	Services []string  // when Service is set: the names the run knows, to refuse a wrong one
	Since    time.Time // only records at or after it
}

// ErrNoService is returned for a Filter.Service that the run does not have.
var ErrNoService = errors.New("no such service")

// Check verifies that f's service exists among the run's.
func (f Filter) Check() error {
	if f.Service == "" {
		return nil
	}
	for _, s := range f.Services {
		if s == f.Service {
			return nil
		}
	}
	if len(f.Services) == 0 {
		return fmt.Errorf("%w %q: this run has no services", ErrNoService, f.Service)
	}
	return fmt.Errorf("%w %q in this run (its services: %s)", ErrNoService, f.Service, strings.Join(f.Services, ", "))
}

// Match reports whether f selects r.
func (f Filter) Match(r Record) bool {
	if r.Stream == Kernel && (!f.Kernel || f.Service != "") {
		return false
	}
	if f.Service != "" && r.Service != f.Service {
		return false
	}
	return f.Since.IsZero() || !r.Time.Before(f.Since)
}

// Printer writes records as the workload wrote them: stdout records to Out, the others to
// Err (nil: Out), with each line's time first when Timestamps is set.
type Printer struct {
	Out, Err   io.Writer
	Timestamps bool
	midLine    map[string]bool // stream/service whose last record had no newline
}

// Print writes r.
func (p *Printer) Print(r Record) error {
	w := p.Out
	if r.Stream != Stdout && p.Err != nil {
		w = p.Err
	}
	key := r.Stream + "/" + r.Service
	text := r.Log
	if p.Timestamps {
		if p.midLine == nil {
			p.midLine = map[string]bool{}
		}
		if !p.midLine[key] {
			text = r.Time.Format(time.RFC3339Nano) + " " + text
		}
		p.midLine[key] = len(r.Log) > 0 && r.Log[len(r.Log)-1] != '\n'
	}
	_, err := io.WriteString(w, text)
	return err
}

// RecordReader turns the bytes of an output log, as they are appended, into records for fn
// (see Follow). Partial lines wait for their newline.
type RecordReader struct {
	Filter Filter
	Fn     func(Record) error
	buf    []byte
}

func (rr *RecordReader) Write(p []byte) (int, error) {
	rr.buf = append(rr.buf, p...)
	for {
		i := bytes.IndexByte(rr.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		var r Record
		if json.Unmarshal(rr.buf[:i], &r) == nil && rr.Filter.Match(r) {
			if err := rr.Fn(r); err != nil {
				return len(p), err
			}
		}
		rr.buf = rr.buf[i+1:]
	}
}
