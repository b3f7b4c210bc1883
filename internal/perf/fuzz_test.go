package perf

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// FuzzEventsWriter feeds any events stream, cut at any point, to the readiness watcher: it
// fires "healthy" exactly when a complete line is a healthy check, and keeps at most one
// bounded partial line.
func FuzzEventsWriter(f *testing.F) {
	f.Add([]byte(`{"type":"health","name":"db","status":"healthy"}`+"\n"), uint16(10))
	f.Add([]byte(`{"type":"health","status":"unhealthy"}`+"\n"+`{"type":"health","status":"healthy"}`), uint16(3))
	f.Add([]byte("\n\n{\"type\":\"health\",\"status\":\"healthy\"\n"), uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		r := newReadiness("")
		w := eventsWriter{r}
		c := min(int(cut), len(data))
		w.Write(data[:c])
		w.Write(data[c:])
		want := false
		lines := bytes.Split(data, []byte("\n"))
		for _, line := range lines[:len(lines)-1] { // the last has no end yet
			var ev abi.Event
			if json.Unmarshal(line, &ev) == nil && ev.Type == abi.EventHealth && ev.Status == "healthy" {
				want = true
			}
		}
		_, why := r.result()
		if (why == ReadyHealthy) != want {
			t.Fatalf("fired %q, want healthy: %v", why, want)
		}
		if last := lines[len(lines)-1]; len(last) <= abi.MaxEventLine && !bytes.Equal(r.pending, last) {
			t.Fatalf("pending %q, want the last partial line %q", r.pending, last)
		}
	})
}

// TestEventsWriterBoundsPartialLine: a guest that writes events without a newline no longer
// grows the host's buffer without end; the events after the next newline still count.
func TestEventsWriterBoundsPartialLine(t *testing.T) {
	r := newReadiness("")
	w := eventsWriter{r}
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	for range 64 { // 4 MiB without a newline
		w.Write(chunk)
		if len(r.pending) > abi.MaxEventLine {
			t.Fatalf("%d bytes kept of a line without end", len(r.pending))
		}
	}
	w.Write([]byte("\n" + `{"type":"health","name":"db","status":"healthy"}` + "\n"))
	if _, why := r.result(); why != ReadyHealthy {
		t.Fatalf("after the long line, the healthy event: %q", why)
	}
}
