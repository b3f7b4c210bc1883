// Package perf boots an image repeatedly and breaks each cold start into phases from the run's
// trace (QEMU start-up, kernel, init phases, entry), with the guest's block IO probe results,
// and summarises them as percentiles.
package perf

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/trace"
	"github.com/ukernel-dev/ukernel/internal/vmm/launch"
)

// Phase names perf adds to the guest's own.
const (
	PhaseQEMU    = "qemu"     // QEMU spawned until the guest's clock starts (placement: see trace.Assemble)
	PhaseToEntry = "to-entry" // QEMU spawned until the entry (or first service) started
	PhaseToReady = "to-ready" // QEMU spawned until the host saw the entry's first line or a healthy service
)

// Phase is one phase of a boot, as offsets from QEMU's spawn.
type Phase struct {
	Name  string        `json:"name"`
	Start time.Duration `json:"start_ns"`
	End   time.Duration `json:"end_ns"`
}

// Boot is one boot's breakdown.
type Boot struct {
	RunID    string        `json:"run_id"`
	Phases   []Phase       `json:"phases"`
	ToEntry  time.Duration `json:"to_entry_ns"`         // 0: the workload never started
	ToReady  time.Duration `json:"to_ready_ns"`         // 0: it showed no sign of life before it ended
	Ready    string        `json:"ready,omitempty"`     // ReadyLine or ReadyHealthy; empty: it exited (or timed out) first
	TimedOut bool          `json:"timed_out,omitempty"` // stopped at the boot's deadline
	Probes   []abi.Event   `json:"probes,omitempty"`
	Partial  bool          `json:"partial,omitempty"`
	Code     int           `json:"code"`
}

// Breakdown extracts a boot's phases from its trace: QEMU's start-up, then the guest's spans in
// order (services and their health checks are concurrent with the entry and left out).
func Breakdown(t *trace.Trace) (Boot, error) {
	b := Boot{RunID: t.RunID, Partial: t.Partial}
	vm := t.Root.Find(trace.SpanVM)
	g := t.Root.Find(trace.SpanGuest)
	if vm == nil || g == nil {
		return b, fmt.Errorf("run %s: no guest spans (did the guest report events?)", t.RunID)
	}
	off := func(ns int64) time.Duration { return time.Duration(ns - vm.Start) }
	if vm.Find(trace.SpanRestore+"reseed") != nil {
		// A restore: QEMU's start with the state loaded, then the restore's host phases (the
		// state's load, within QEMU's start; the resume; the reseed until the guest reported it;
		// the workload's first output after it), then the guest's own.
		for _, c := range vm.Children {
			switch {
			case c.Name == trace.SpanVMMStart:
				b.Phases = append(b.Phases, Phase{PhaseQEMU, off(c.Start), off(c.End)})
			case strings.HasPrefix(c.Name, trace.SpanRestore):
				b.Phases = append(b.Phases, Phase{c.Name, off(c.Start), off(c.End)})
			}
		}
	} else {
		b.Phases = append(b.Phases, Phase{PhaseQEMU, 0, off(g.Start)})
	}
	for _, c := range g.Children {
		if strings.HasPrefix(c.Name, "service ") {
			if b.ToEntry == 0 {
				b.ToEntry = off(c.Start)
			}
			continue
		}
		b.Phases = append(b.Phases, Phase{c.Name, off(c.Start), off(c.End)})
		if c.Name == trace.SpanEntry {
			b.ToEntry = off(c.Start)
		}
	}
	for _, ev := range t.Events {
		if ev.Type == abi.EventProbe {
			b.Probes = append(b.Probes, ev)
		}
	}
	return b, nil
}

// Options of a perf session.
type Options struct {
	ProjectDir string
	Image      string
	Runs       int
	Accel      string
	Timeout    time.Duration // deadline of one boot
	Progress   io.Writer
	Log        *slog.Logger
	// Template, when set, is a template's run (perf --template): each boot restores the
	// revision's snapshot, with the template's run settings.
	Template *TemplateRun
}

// TemplateRun is what a template's restores need: its snapshot and the run settings it was
// taken with.
type TemplateRun struct {
	Snapshot               string
	VCPU, MemoryMB, DataMB int
	Net                    abi.Net
}

// Run boots the image o.Runs times in the foreground, the console going to each run's
// directory only, with the guest's IO probe on, and returns each boot's breakdown. Each boot
// lasts until the workload's first sign of life (see readiness), then the guest is stopped.
// When ctx ends (Ctrl-C) it returns the boots finished so far with ctx's error.
func Run(ctx context.Context, o Options) ([]Boot, error) {
	if o.Runs < 1 {
		return nil, fmt.Errorf("--runs %d: expected at least 1", o.Runs)
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	var boots []Boot
	for i := range o.Runs {
		b, err := bootOnce(ctx, o)
		if err != nil {
			return boots, fmt.Errorf("boot %d of %d: %w", i+1, o.Runs, err)
		}
		fmt.Fprintf(progress, "boot %d/%d: %s\n", i+1, o.Runs, b.describe())
		boots = append(boots, b)
	}
	return boots, nil
}

// describe is a boot's progress line.
func (b Boot) describe() string {
	s := fmt.Sprintf("%s to entry", b.ToEntry.Round(time.Millisecond))
	if b.Ready != "" {
		s += fmt.Sprintf(", %s to %s", b.ToReady.Round(time.Millisecond), b.Ready)
	}
	if b.TimedOut {
		s += ", stopped at the --timeout"
	}
	return s + " (run " + b.RunID + ")"
}

func bootOnce(ctx context.Context, o Options) (Boot, error) {
	bctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	lo := launch.Options{
		ProjectDir: o.ProjectDir, Image: o.Image, Name: "perf", Accel: o.Accel, Perf: true, Log: o.Log,
	}
	if t := o.Template; t != nil {
		lo.VCPU, lo.MemoryMB, lo.DataMB, lo.Net = t.VCPU, t.MemoryMB, t.DataMB, t.Net
		lo.Snapshot, lo.Restore, lo.Perf = t.Snapshot, launch.RestoreRequired, false
	}
	g, err := launch.Start(bctx, lo)
	if err != nil {
		return Boot{}, err
	}
	// perf's boots are no guests of the user's: once finished, ps -a does not list them.
	defer func() {
		if err := g.Forget(); err != nil && o.Log != nil {
			o.Log.Debug("remove perf's record", "err", err)
		}
	}()
	// The guest is stopped at the workload's first sign of life, or at the deadline; its boot
	// phases count either way, and the IO probe runs after the entry has stopped.
	ready := newReadiness(g.Run.Events())
	actx, stop := context.WithCancel(bctx)
	defer stop()
	go ready.watchEvents(actx, g.VM.Done())
	go func() {
		select {
		case <-ready.Ready():
			stop()
		case <-actx.Done():
		}
	}()
	out, err := g.Attend(actx, ready, launch.DefaultStopTimeout)
	if err != nil {
		return Boot{}, err
	}
	if ctx.Err() != nil {
		return Boot{}, ctx.Err()
	}
	t, err := trace.Load(o.ProjectDir, g.Run)
	if err != nil {
		return Boot{}, err
	}
	b, err := Breakdown(t)
	b.Code = out.Code
	if at, why := ready.result(); why != "" {
		if vm := t.Root.Find(trace.SpanVM); vm != nil {
			b.ToReady, b.Ready = time.Duration(at.UnixNano()-vm.Start), why
		}
	} else {
		b.TimedOut = bctx.Err() != nil
	}
	return b, err
}

// Stat is the percentiles of one measure over the boots, nearest-rank.
type Stat struct {
	Name string        `json:"name"`
	N    int           `json:"n"`
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	Max  time.Duration `json:"max_ns"`
}

// IOStat summarises one IO probe over the boots: the median of each boot's percentiles, and
// the worst operation seen.
type IOStat struct {
	Name string        `json:"name"`
	Ops  int64         `json:"ops"`
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	Max  time.Duration `json:"max_ns"`
}

// Summary is the result of a perf session.
type Summary struct {
	Runs    int      `json:"runs"`
	Phases  []Stat   `json:"phases"`
	ToEntry Stat     `json:"to_entry"`
	ToReady Stat     `json:"to_ready"`
	IO      []IOStat `json:"io"`
	IOError string   `json:"io_error,omitempty"`
	// CoarseClock counts boots whose guest clock ticked in jiffies (resolution above
	// FineClock): their phases are quantised to a tick and their IO figures are left out.
	CoarseClock int    `json:"coarse_clock_boots"`
	Boots       []Boot `json:"boots"`
	// Restores: the boots restored a template's snapshot (their "qemu" phase is QEMU's start
	// with the state loaded, the restore.* phases the host's, "reseed" the guest's own).
	Restores bool `json:"restores,omitempty"`
}

// FineClock is the coarsest guest clock resolution whose IO latencies are reported.
const FineClock = time.Microsecond

// Summarise computes per-phase and IO percentiles over boots, phases in boot order.
func Summarise(boots []Boot) Summary {
	s := Summary{Runs: len(boots), Boots: boots}
	var names []string
	durs := map[string][]time.Duration{}
	var toEntry, toReady []time.Duration
	probes := map[string][][]int64{}
	var ioNames []string
	for _, b := range boots {
		for _, p := range b.Phases {
			if _, ok := durs[p.Name]; !ok {
				names = append(names, p.Name)
			}
			durs[p.Name] = append(durs[p.Name], p.End-p.Start)
		}
		if b.ToEntry > 0 {
			toEntry = append(toEntry, b.ToEntry)
		}
		if b.ToReady > 0 {
			toReady = append(toReady, b.ToReady)
		}
		coarse := false
		for _, ev := range b.Probes {
			if ev.Values["clock_res_ns"] > int64(FineClock) {
				coarse = true
			}
		}
		if coarse {
			s.CoarseClock++
		}
		for _, ev := range b.Probes {
			if ev.Name == "error" {
				s.IOError = ev.Message
				continue
			}
			if coarse {
				continue
			}
			if _, ok := probes[ev.Name]; !ok {
				ioNames = append(ioNames, ev.Name)
			}
			v := ev.Values
			probes[ev.Name] = append(probes[ev.Name], []int64{v["ops"], v["p50_ns"], v["p90_ns"], v["p99_ns"], v["max_ns"]})
		}
	}
	for _, n := range names {
		s.Phases = append(s.Phases, stat(n, durs[n]))
	}
	s.ToEntry = stat(PhaseToEntry, toEntry)
	s.ToReady = stat(PhaseToReady, toReady)
	for _, n := range ioNames {
		runs := probes[n]
		col := func(i int) []time.Duration {
			var c []time.Duration
			for _, r := range runs {
				c = append(c, time.Duration(r[i]))
			}
			slices.Sort(c)
			return c
		}
		st := IOStat{Name: n}
		for _, r := range runs {
			st.Ops += r[0]
		}
		st.P50, st.P90, st.P99 = median(col(1)), median(col(2)), median(col(3))
		mx := col(4)
		st.Max = mx[len(mx)-1]
		s.IO = append(s.IO, st)
	}
	return s
}

func stat(name string, ds []time.Duration) Stat {
	st := Stat{Name: name, N: len(ds)}
	if len(ds) == 0 {
		return st
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	st.P50, st.P90, st.Max = Percentile(s, 50), Percentile(s, 90), s[len(s)-1]
	return st
}

func median(sorted []time.Duration) time.Duration { return Percentile(sorted, 50) }

// Percentile is the nearest-rank percentile p of sorted values.
func Percentile(sorted []time.Duration, p int) time.Duration {
	i := (p*len(sorted)+99)/100 - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// WriteText prints the summary as two tables.
func WriteText(w io.Writer, s Summary) error {
	var b strings.Builder
	what := "Cold start over %d boots"
	if s.Restores {
		what = "Restore from a snapshot over %d restores"
	}
	fmt.Fprintf(&b, what+" (offsets from QEMU's start; percentiles nearest-rank)\n", s.Runs)
	fmt.Fprintf(&b, "%-20s %9s %9s %9s\n", "PHASE", "P50", "P90", "MAX")
	row := func(st Stat) {
		fmt.Fprintf(&b, "%-20s %9s %9s %9s\n", st.Name, ms(st.P50), ms(st.P90), ms(st.Max))
	}
	for _, st := range s.Phases {
		row(st)
	}
	if s.ToEntry.N > 0 {
		row(s.ToEntry)
	}
	if s.ToReady.N > 0 {
		row(s.ToReady)
	}
	fmt.Fprintf(&b, "\nGuest block IO, %d KiB random operations (median of each boot's percentiles; max over all)\n", 4)
	fmt.Fprintf(&b, "%-18s %6s %9s %9s %9s %9s\n", "PROBE", "OPS", "P50", "P90", "P99", "MAX")
	for _, st := range s.IO {
		fmt.Fprintf(&b, "%-18s %6d %9s %9s %9s %9s\n", st.Name, st.Ops, us(st.P50), us(st.P90), us(st.P99), us(st.Max))
	}
	switch {
	case len(s.IO) == 0 && s.CoarseClock > 0:
		b.WriteString("(no IO probe results with a fine guest clock)\n")
	case len(s.IO) == 0:
		b.WriteString("(no IO probe ran)\n")
	}
	if s.CoarseClock > 0 {
		fmt.Fprintf(&b, "note: %d of %d boots ran on a tick-based guest clock (the kernel dropped the TSC): their phases are rounded to a tick and their IO figures are left out\n", s.CoarseClock, s.Runs)
	}
	if s.IOError != "" {
		fmt.Fprintf(&b, "IO probe error: %s\n", s.IOError)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/1e6) }
func us(d time.Duration) string { return fmt.Sprintf("%.0fµs", float64(d)/1e3) }

// Timeline turns the boots into the rows of trace.WriteTimeline.
func Timeline(boots []Boot) []trace.TimelineRow {
	var rows []trace.TimelineRow
	for i, b := range boots {
		r := trace.TimelineRow{Label: fmt.Sprintf("run %d", i+1)}
		for _, p := range b.Phases {
			r.Bars = append(r.Bars, trace.Bar{Phase: p.Name, Start: p.Start, End: p.End})
		}
		rows = append(rows, r)
	}
	return rows
}
