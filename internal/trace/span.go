// Package trace turns what a run left behind — the host's spans (lock, build, pack, VMM start)
// and the guest's ABI events — into one tree of spans on the host's clock, and renders it as an
// indented tree, Chrome/Perfetto trace event JSON, OTLP JSON or an SVG timeline.
package trace

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
)

// Span is one timed step. Times are host wall-clock Unix nanoseconds; guest spans are placed
// on that clock by Load (see align).
type Span struct {
	Name     string            `json:"name"`
	Side     string            `json:"side,omitempty"` // host or guest
	Start    int64             `json:"start_unix_ns"`
	End      int64             `json:"end_unix_ns"`
	Attrs    map[string]string `json:"attrs,omitempty"`
	Children []*Span           `json:"children,omitempty"`
}

// Duration is the span's length.
func (s *Span) Duration() time.Duration { return time.Duration(s.End - s.Start) }

// Sides of a span.
const (
	Host  = "host"
	Guest = "guest"
)

// Files the host writes spans to.
const (
	// RunSpansFile sits in a run directory: the VMM's spans of that run.
	RunSpansFile = "spans.json"
	// BuildSpansFile sits in the project's build/ directory: the last lock/build/pack.
	BuildSpansFile = "trace.json"
)

// NewSpan returns a host span from start to end with attributes given as key, value pairs.
func NewSpan(name string, start, end time.Time, kv ...string) Span {
	s := Span{Name: name, Side: Host, Start: start.UnixNano(), End: end.UnixNano()}
	for i := 0; i+1 < len(kv); i += 2 {
		if s.Attrs == nil {
			s.Attrs = map[string]string{}
		}
		s.Attrs[kv[i]] = kv[i+1]
	}
	return s
}

// Append adds spans to the JSON list in path, creating it. The file is replaced atomically, so
// a reader never sees half a list.
func Append(path string, spans ...Span) error {
	old, err := ReadSpans(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return WriteSpans(path, append(old, spans...))
}

// WriteSpans replaces the JSON list in path with spans.
func WriteSpans(path string, spans []Span) error {
	b, err := json.MarshalIndent(spans, "", "  ")
	if err != nil {
		return fmt.Errorf("spans %s: %w", path, err)
	}
	if err := atomicfile.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("spans: %w", err)
	}
	return nil
}

// ReadSpans reads a JSON list of spans written by WriteSpans.
func ReadSpans(path string) ([]Span, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var spans []Span
	if err := json.Unmarshal(b, &spans); err != nil {
		return nil, fmt.Errorf("%s: not a list of spans: %w", path, err)
	}
	return spans, nil
}

// Walk calls fn for s and every descendant, depth first, with the depth of each.
func (s *Span) Walk(fn func(sp *Span, depth int)) {
	var walk func(sp *Span, d int)
	walk = func(sp *Span, d int) {
		fn(sp, d)
		for _, c := range sp.Children {
			walk(c, d+1)
		}
	}
	walk(s, 0)
}

// Find returns the first span called name in s's tree, or nil.
func (s *Span) Find(name string) *Span {
	var found *Span
	s.Walk(func(sp *Span, _ int) {
		if found == nil && sp.Name == name {
			found = sp
		}
	})
	return found
}
