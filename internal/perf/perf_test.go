package perf

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
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

// A guest clock anchored seconds late (QEMU's slow teardown on a loaded host) puts the entry
// after the first line the host read; the host's reading bounds it, and the phases move with it.
func TestPlaceBeforeFirstLine(t *testing.T) {
	s := time.Second
	b := Boot{
		Phases:  []Phase{{PhaseQEMU, 0, 10 * s}, {"kernel", 10 * s, 17 * s}, {"entry", 18 * s, 20 * s}},
		ToEntry: 18 * s, ToReady: 17 * s, Ready: ReadyLine,
	}
	b.placeBefore()
	want := []Phase{{PhaseQEMU, 0, 9 * s}, {"kernel", 9 * s, 16 * s}, {"entry", 17 * s, 19 * s}}
	if b.ToEntry != 17*s || !slices.Equal(b.Phases, want) {
		t.Errorf("placed: entry %s, phases %v; want entry 17s, %v", b.ToEntry, b.Phases, want)
	}
	// Consistent already, or ready by a health check (not the entry's line): unchanged.
	for _, c := range []Boot{{ToEntry: 5 * s, ToReady: 6 * s, Ready: ReadyLine}, {ToEntry: 7 * s, ToReady: 6 * s, Ready: ReadyHealthy}} {
		before := c.ToEntry
		c.placeBefore()
		if c.ToEntry != before {
			t.Errorf("%+v moved to %s", c, c.ToEntry)
		}
	}
}
