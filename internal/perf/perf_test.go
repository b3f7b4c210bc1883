package perf

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/trace"
)

func boot(kernel time.Duration, res int64, p50 int64) Boot {
	return Boot{
		Phases: []Phase{{PhaseQEMU, 0, 300 * time.Millisecond}, {"kernel", 300 * time.Millisecond, 300*time.Millisecond + kernel}},
		Probes: []abi.Event{{Type: abi.EventProbe, Name: "root.randread", Values: map[string]int64{
			"ops": 200, "p50_ns": p50, "p90_ns": 2 * p50, "p99_ns": 3 * p50, "max_ns": 4 * p50, "clock_res_ns": res}}},
		ToEntry: kernel + time.Second,
	}
}

func TestSummarise(t *testing.T) {
	s := Summarise([]Boot{
		boot(1400*time.Millisecond, 1, 100_000),
		boot(1500*time.Millisecond, 1, 300_000),
		boot(2000*time.Millisecond, 1, 200_000),
		boot(9000*time.Millisecond, 4_000_250, 0), // tick clock: left out of IO
	})
	k := s.Phases[1]
	if k.Name != "kernel" || k.N != 4 || k.P50 != 1500*time.Millisecond || k.P90 != 9*time.Second || k.Max != 9*time.Second {
		t.Errorf("kernel stat %+v", k)
	}
	if s.CoarseClock != 1 || len(s.IO) != 1 {
		t.Fatalf("coarse %d, io %+v", s.CoarseClock, s.IO)
	}
	if io := s.IO[0]; io.Ops != 600 || io.P50 != 200*time.Microsecond || io.Max != 1200*time.Microsecond {
		t.Errorf("io %+v", io)
	}
	var b bytes.Buffer
	if err := WriteText(&b, s); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kernel", "1500.0ms", "root.randread", "200µs", "1 of 4 boots ran on a tick-based guest clock"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
}

func TestPercentile(t *testing.T) {
	s := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for p, want := range map[int]time.Duration{50: 5, 90: 9, 99: 10, 100: 10, 1: 1} {
		if got := Percentile(s, p); got != want {
			t.Errorf("p%d = %d, want %d", p, got, want)
		}
	}
}

// TestBreakdownRestore: a restore's breakdown has QEMU's start with the state loaded and the
// restore's host phases (load, resume, reseed, first output) before the guest's own, all as
// offsets from QEMU's start.
func TestBreakdownRestore(t *testing.T) {
	at := func(ms int) int64 {
		return time.Unix(1_800_000_000, 0).Add(time.Duration(ms) * time.Millisecond).UnixNano()
	}
	span := func(name string, from, to int, children ...*trace.Span) *trace.Span {
		return &trace.Span{Name: name, Start: at(from), End: at(to), Children: children}
	}
	vm := span(trace.SpanVM, 0, 2000,
		span(trace.SpanVMMStart, 0, 60),
		span(trace.SpanRestore+"load", 54, 60),
		span(trace.SpanRestore+"resume", 64, 66),
		span(trace.SpanRestore+"reseed", 66, 300),
		span(trace.SpanFirstOutput, 300, 480),
		span(trace.SpanGuest, 200, 1900, span(trace.SpanReseed, 200, 290), span("shutdown", 1800, 1900)))
	b, err := Breakdown(&trace.Trace{RunID: "r", Root: span("run r", 0, 2000, vm)})
	if err != nil {
		t.Fatal(err)
	}
	want := []Phase{{PhaseQEMU, 0, 60 * time.Millisecond}, {"restore.load", 54 * time.Millisecond, 60 * time.Millisecond},
		{"restore.resume", 64 * time.Millisecond, 66 * time.Millisecond}, {"restore.reseed", 66 * time.Millisecond, 300 * time.Millisecond},
		{"restore.first-output", 300 * time.Millisecond, 480 * time.Millisecond},
		{trace.SpanReseed, 200 * time.Millisecond, 290 * time.Millisecond}, {"shutdown", 1800 * time.Millisecond, 1900 * time.Millisecond}}
	if !slices.Equal(b.Phases, want) {
		t.Errorf("phases\n%+v\nwant\n%+v", b.Phases, want)
	}
}
