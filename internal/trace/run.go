package trace

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/guestlog"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/runlog"
)

// Host span names the VMM layer records in a run's spans.json.
const (
	SpanVMMStart = "vmm.start" // QEMU spawned until its devices are open and QMP answers
	SpanVM       = "vm"        // QEMU spawned until the host saw it exit
	// SpanKVMProbe is the KVM probe before the VMM starts (attrs usable, cached, reason).
	SpanKVMProbe = "kvm.probe"
	// SpanRestore prefixes the host spans of a restore from a snapshot (vmm/launch): they
	// belong to the VM, after its start.
	SpanRestore = "restore."
	// SpanReseed is a restored guest's own reseed, clock and rename (its reseeded event).
	SpanReseed = "reseed"
	// SpanFirstOutput is, after a restore, the guest's report that it reseeded until the host
	// received the workload's first output.
	SpanFirstOutput = SpanRestore + "first-output"
)

// Guest span names besides the init phases (which keep the names of their phase events).
const (
	SpanGuest    = "guest"
	SpanKernel   = "kernel"
	SpanEntry    = "entry"
	SpanShutdown = "shutdown"
	SpanIOProbe  = "ioprobe"
)

// BuildWindow is how long before QEMU's start a lock/build/pack may have ended to count as part
// of the run (`ukernel run` does them right before booting).
const BuildWindow = time.Minute

// Trace is one run's spans on the host clock.
type Trace struct {
	RunID string
	Root  *Span
	// Partial is set when the run's records are incomplete; Notes say what is missing.
	Partial bool
	Notes   []string
	// AlignWindow bounds the error of the guest clock's placement, by AlignedTo; 0 when unknown.
	AlignWindow time.Duration
	AlignedTo   string
	// Events are the guest's events as parsed.
	Events []abi.Event
}

// ParseEvents parses an events.jsonl stream. A line that does not parse (a run killed mid-write
// leaves half a line at the end) is reported as a problem and skipped; the rest still counts.
func ParseEvents(b []byte) (evs []abi.Event, problems []string) {
	lines := bytes.Split(b, []byte("\n"))
	for i, line := range lines {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var ev abi.Event
		if err := json.Unmarshal(line, &ev); err != nil || ev.Type == "" {
			if i == len(lines)-1 {
				problems = append(problems, fmt.Sprintf("events end mid-line: %d bytes after the last complete event are ignored", len(line)))
			} else {
				problems = append(problems, fmt.Sprintf("events line %d is not an event: %.60q", i+1, line))
			}
			continue
		}
		evs = append(evs, ev)
	}
	return evs, problems
}

// kernelStamp matches the printk timestamp of a console line.
var kernelStamp = regexp.MustCompile(`(?m)^\[\s*(\d+)\.(\d{6})\]`)

// lastConsoleStamp is the guest time of the console's last kernel message in ns, 0 if none.
// The kernel's "reboot: Power down" is its last act before QEMU exits.
func lastConsoleStamp(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var last int64
	for _, m := range kernelStamp.FindAllSubmatch(b, -1) {
		if ns, ok := stampNS(string(m[1]), string(m[2])); ok {
			last = max(last, ns)
		}
	}
	return last
}

// stampNS is a printk stamp's seconds and microseconds in ns; false when it cannot be an uptime.
func stampNS(sec, usec string) (int64, bool) {
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil || s > 1<<32 {
		return 0, false
	}
	us, _ := strconv.ParseInt(usec, 10, 64)
	return s*1e9 + us*1e3, true
}

// Load reads a run's records: its host spans, the guest's events and console, and the
// project's last lock/build/pack spans when they immediately preceded the run.
func Load(projectDir string, run runlog.Run) (*Trace, error) {
	host, err := ReadSpans(filepath.Join(run.Dir, RunSpansFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	evb, err := os.ReadFile(run.Events())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("run %s: %w", run.ID, err)
	}
	evs, problems := ParseEvents(evb)
	builds, err := ReadSpans(filepath.Join(projectDir, project.BuildDir, BuildSpansFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if s, ok := firstOutput(run, host); ok {
		host = append(host, s)
	}
	t := Assemble(run.ID, host, builds, evs, lastConsoleStamp(run.Console()), readOutput(run, evs))
	if len(problems) > 0 {
		t.Partial = true
		t.Notes = append(problems, t.Notes...)
	}
	if len(host) == 0 && len(evs) == 0 {
		return nil, fmt.Errorf("run %s has no spans and no events (%s is empty): the guest reported nothing", run.ID, run.Events())
	}
	return t, nil
}

// Reading is a line the guest stamped (Guest, on its clock) and the host time the host read it
// (Host): the guest's t=0 is no later than Host−Guest, whatever happened to QEMU afterwards.
type Reading struct{ Guest, Host int64 }

// kernelStream is how a console line's record starts its stream field (guestlog's encoding):
// only those records are decoded when the output log is scanned.
var kernelStream = []byte(`"stream":"` + guestlog.Kernel + `"`)

// readOutput returns the host's readings in the run's output log: each console line with a
// printk stamp, and the entry's first line (stamped by its entry.start event).
func readOutput(run runlog.Run, evs []abi.Event) []Reading {
	entry := int64(-1)
	for _, ev := range evs {
		if ev.Type == abi.EventEntryStart {
			entry = ev.Time
			break
		}
	}
	f, err := os.Open(run.Output())
	if err != nil {
		return nil
	}
	defer f.Close()
	var seen []Reading
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		kernel := bytes.Contains(line, kernelStream)
		if !kernel && entry < 0 {
			continue
		}
		var rec guestlog.Record
		if json.Unmarshal(line, &rec) != nil || rec.Time.IsZero() {
			continue
		}
		switch {
		case rec.Stream == guestlog.Kernel:
			if m := kernelStamp.FindStringSubmatch(rec.Log); m != nil {
				if ns, ok := stampNS(m[1], m[2]); ok {
					seen = append(seen, Reading{Guest: ns, Host: rec.Time.UnixNano()})
				}
			}
		case rec.Service == "" && entry >= 0:
			seen = append(seen, Reading{Guest: entry, Host: rec.Time.UnixNano()})
			entry = -1
		}
	}
	return seen
}

// firstOutput is a restored run's SpanFirstOutput: from the end of its restore.reseed span to
// the time the host recorded the first line of its output log (not drawn once it rotated).
func firstOutput(run runlog.Run, host []Span) (Span, bool) {
	i := slices.IndexFunc(host, func(s Span) bool { return s.Name == SpanRestore+"reseed" })
	if i < 0 {
		return Span{}, false
	}
	if rotated, _ := filepath.Glob(run.Output() + ".[0-9]*"); len(rotated) > 0 {
		return Span{}, false
	}
	f, err := os.Open(run.Output())
	if err != nil {
		return Span{}, false
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	var rec guestlog.Record
	for n := 0; rec.Time.IsZero() || rec.Stream == guestlog.Kernel; n++ {
		line, err := r.ReadSlice('\n')
		if err != nil || n == 100 {
			return Span{}, false
		}
		rec = guestlog.Record{}
		if json.Unmarshal(line, &rec) != nil {
			return Span{}, false
		}
	}
	start := host[i].End
	if rec.Time.UnixNano() < start { // output the workload wrote before its report, received after
		start = host[i].Start
	}
	return NewSpan(SpanFirstOutput, time.Unix(0, start), rec.Time, "stream", rec.Stream), true
}

// Assemble builds the span tree of a run from the VMM's host spans, the lock/build/pack spans
// (used when they ended within BuildWindow before QEMU started), the guest's events, the
// guest time of the console's last kernel message (0 if unknown) and the host's readings of
// guest-stamped lines.
//
// Clock alignment. The guest stamps events with CLOCK_BOOTTIME, which starts near 0 when the
// kernel starts; the host knows S, the wall time it spawned QEMU, and E, the wall time it saw
// QEMU exit. Let P be the guest's last known time (the later of its last event and the
// console's "reboot: Power down" stamp, printk's clock counting from the same boot). The guest's
// t=0 cannot precede S and cannot follow E−P, so t0 ∈ [S, E−P]. We place t0 = E−P: after the
// kernel's power-down message QEMU only tears down (a few ms), while before t=0 lie QEMU's
// process start, firmware and kernel decompression (hundreds of ms under TCG). The strict
// error bound is the window E−P−S, kept in Trace.AlignWindow; the expected error is QEMU's
// teardown time. Each line the host read (a console line, the entry's first output) is a
// second upper bound, Host−Guest: the tightest of them places t0 when it is earlier than E−P
// (a slow teardown on a loaded host, or a guest stopped by the host, whose QEMU exits after
// the stop's own waits). Without E (a detached run, or one still going) t0 is that reading, or
// S without one, and the trace says so. When P > E−S the guest's clock ran fast (seen under
// TCG: its TSC is the host's, but tsc_early_khz told it another rate); then t0 = S and guest
// times are scaled by (E−S)/P, with a note, so spans still nest.
func Assemble(runID string, host, builds []Span, evs []abi.Event, consoleEnd int64, seen []Reading) *Trace {
	t := &Trace{RunID: runID, Events: evs}
	var vmStart, vm, reseedSpan *Span
	var before, restore []*Span // host steps before the VMM (the KVM probe); a restore's
	for i := range host {
		switch name := host[i].Name; {
		case name == SpanVMMStart:
			vmStart = &host[i]
		case name == SpanVM:
			vm = &host[i]
		case strings.HasPrefix(name, SpanRestore):
			restore = append(restore, &host[i])
			if name == SpanRestore+"reseed" {
				reseedSpan = &host[i]
			}
		default:
			before = append(before, &host[i])
		}
	}
	var s0, e0 int64 // QEMU spawned, QEMU exit seen
	switch {
	case vm != nil:
		s0, e0 = vm.Start, vm.End
	case vmStart != nil:
		s0 = vmStart.Start
	}

	var hello, last int64
	var poweroff bool
	var reseeded *abi.Event // a restored guest's first event
	for i, ev := range evs {
		last = max(last, ev.Time)
		switch ev.Type {
		case abi.EventHello:
			hello = ev.Time
		case abi.EventPowerOff:
			poweroff = true
		case abi.EventReseeded:
			reseeded = &evs[i]
		}
	}
	p := max(last, consoleEnd)
	if !poweroff {
		t.Partial = true
		t.Notes = append(t.Notes, "the guest reported no power-off: the run is still going or ended abruptly")
	}
	if hello == 0 && len(evs) > 0 && reseeded == nil {
		t.Partial = true
		t.Notes = append(t.Notes, "no hello event: the kernel's span is unknown")
	}

	read := int64(math.MaxInt64) // the tightest Host−Guest over the host's readings
	for _, r := range seen {
		read = min(read, r.Host-r.Guest)
	}
	var t0 int64
	scale := 1.0
	switch {
	case reseeded != nil && reseedSpan != nil:
		// A restored guest's clock goes on from the snapshot's boot: its reseeded event, which
		// the host saw within its reseed span, places it.
		t0 = reseedSpan.End - reseeded.Time
		t.AlignWindow, t.AlignedTo = time.Duration(reseedSpan.End-reseedSpan.Start), "the restored guest's reseeded event"
	case s0 == 0:
		// No host record (a run from before spans were recorded): guest time stands alone,
		// anchored at the Unix epoch so durations still read right.
		t.Notes = append(t.Notes, "no host spans for this run: guest times are shown from guest boot, not on the host clock")
	case e0 > 0 && p > 0 && e0-p >= s0:
		t0 = e0 - p
		t.AlignedTo = "QEMU's exit"
		if read < t0 {
			t0, t.AlignedTo = max(read, s0), readingAlign
		}
		t.AlignWindow = time.Duration(t0 - s0)
	case e0 > 0 && p > 0:
		// The guest claims to have run longer than QEMU did: its clock runs fast (under TCG a
		// tsc_early_khz below the host's TSC rate does that, as the guest's TSC is the host's).
		// Scale guest times to fit QEMU's lifetime: a lower bound of the correction.
		t0, scale = s0, float64(e0-s0)/float64(p)
		t.Notes = append(t.Notes, fmt.Sprintf("guest clock runs fast: uptime %s exceeds QEMU's lifetime %s; guest times scaled by %.3f to fit (phase durations are approximate)", time.Duration(p), time.Duration(e0-s0), scale))
	case read >= s0 && read != math.MaxInt64:
		t0 = read
		t.AlignWindow, t.AlignedTo = time.Duration(t0-s0), readingAlign
		t.Notes = append(t.Notes, "the run has no recorded end (detached or still running): guest times are placed by the host's reading of its lines")
	default:
		t0 = s0
		t.Notes = append(t.Notes, "the run has no recorded end (detached or still running): guest times are placed at QEMU's start and may be early by QEMU's start-up")
	}

	root := &Span{Name: "run " + runID, Side: Host}
	for _, b := range builds {
		if s0 != 0 && b.End <= s0 && time.Duration(s0-b.End) <= BuildWindow {
			root.Children = append(root.Children, &b)
		}
	}
	root.Children = append(root.Children, before...)
	vmSpan := &Span{Name: SpanVM, Side: Host, Start: s0, End: e0}
	if vm != nil {
		vmSpan.Attrs = vm.Attrs
	}
	if vmStart != nil {
		c := *vmStart
		vmSpan.Children = append(vmSpan.Children, &c)
	}
	vmSpan.Children = append(vmSpan.Children, restore...)
	if len(evs) > 0 {
		g := guestSpans(evs, t0, p, scale)
		if reseeded != nil {
			g.Start = t0 + int64(float64(reseeded.Start)*scale) // it ran from its restore on
			g.attr("restored", "true")
		}
		vmSpan.Children = append(vmSpan.Children, g)
		if t.AlignWindow > 0 {
			g.attr("align.window_ms", fmt.Sprintf("%.1f", float64(t.AlignWindow)/1e6))
		}
	}
	if vmSpan.End == 0 {
		for _, c := range vmSpan.Children {
			vmSpan.End = max(vmSpan.End, c.End)
		}
		vmSpan.attr("open", "true")
	}
	if vmSpan.Start == 0 {
		vmSpan.Start = t0
	}
	root.Children = append(root.Children, vmSpan)
	root.Start, root.End = vmSpan.Start, vmSpan.End
	for _, c := range root.Children {
		root.Start, root.End = min(root.Start, c.Start), max(root.End, c.End)
	}
	if t.Partial {
		root.attr("partial", "true")
	}
	t.Root = root
	return t
}

// readingAlign is Trace.AlignedTo when a line the host read placed the guest's clock.
const readingAlign = "the host's reading of a guest line"

func (s *Span) attr(k, v string) {
	if s.Attrs == nil {
		s.Attrs = map[string]string{}
	}
	s.Attrs[k] = v
}

// guestSpans turns the events into the guest's spans, scaled and offset by t0: the kernel until init's
// hello, init's phases, services, the entry, the IO probe and the shutdown.
func guestSpans(evs []abi.Event, t0, end int64, scale float64) *Span {
	at := func(ns int64) int64 { return t0 + int64(float64(ns)*scale) }
	g := &Span{Name: SpanGuest, Side: Guest, Start: t0, End: at(end)}
	add := func(parent *Span, name string, start, stop int64, kv ...string) *Span {
		s := &Span{Name: name, Side: Guest, Start: at(start), End: at(stop)}
		for i := 0; i+1 < len(kv); i += 2 {
			s.attr(kv[i], kv[i+1])
		}
		parent.Children = append(parent.Children, s)
		return s
	}
	var entryStart, entryEnd, probeEnd int64 = -1, -1, -1
	var entryCode string
	var probe *Span
	services := map[string]*Span{}
	for _, ev := range evs {
		switch ev.Type {
		case abi.EventHello:
			add(g, SpanKernel, 0, ev.Time)
		case abi.EventPhase:
			s := add(g, ev.Name, ev.Start, ev.Start+ev.Duration)
			if ev.Name == SpanIOProbe {
				probe, probeEnd = s, ev.Start+ev.Duration
			}
		case abi.EventEntryStart:
			entryStart = ev.Time
		case abi.EventEntryExit:
			entryEnd = ev.Time
			if ev.Code != nil {
				entryCode = strconv.Itoa(*ev.Code)
			}
		case abi.EventServiceStart:
			services[ev.Name] = add(g, "service "+ev.Name, ev.Time, end)
		case abi.EventServiceExit:
			if s := services[ev.Name]; s != nil {
				s.End = at(ev.Time)
				if ev.Code != nil {
					s.attr("code", strconv.Itoa(*ev.Code))
				}
			}
		case abi.EventHealth:
			if s := services[ev.Name]; s != nil && ev.Status == "healthy" && s.Find("health") == nil {
				add(s, "health", s.Start-t0, ev.Time, "status", ev.Status)
			}
		case abi.EventError:
			g.attr("error", ev.Message)
		case abi.EventReseeded:
			r := add(g, SpanReseed, ev.Start, ev.Start+ev.Duration)
			for _, k := range slices.Sorted(maps.Keys(ev.Values)) {
				r.attr(k, strconv.FormatInt(ev.Values[k], 10))
			}
			if ev.Message != "" {
				r.attr("error", ev.Message)
			}
		}
	}
	if entryStart >= 0 {
		stop := entryEnd
		if stop < 0 {
			stop = end
		}
		e := add(g, SpanEntry, entryStart, stop)
		if entryCode != "" {
			e.attr("code", entryCode)
		}
		if entryEnd < 0 {
			e.attr("open", "true")
		}
	}
	// Probe results nest in the probe phase when there is one.
	for _, ev := range evs {
		if ev.Type != abi.EventProbe {
			continue
		}
		parent := g
		if probe != nil {
			parent = probe
		}
		s := add(parent, "probe "+ev.Name, ev.Start, ev.Start+ev.Duration)
		keys := make([]string, 0, len(ev.Values))
		for k := range ev.Values {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			s.attr(k, strconv.FormatInt(ev.Values[k], 10))
		}
	}
	// Shutdown: from the workload's end (and the probe's) to the guest's last known instant.
	if from := max(entryEnd, probeEnd); from > 0 && from < end {
		add(g, SpanShutdown, from, end)
	}
	g.End = max(g.End, g.Start)
	clampInto(g)
	slices.SortStableFunc(g.Children, func(a, b *Span) int { return cmp.Compare(a.Start, b.Start) })
	return g
}

// clampInto keeps each span below p inside its parent and forward in time: the guest writes the
// events, and a negative duration or a time past its end must not give a trace that does not nest.
func clampInto(p *Span) {
	for _, c := range p.Children {
		c.Start = min(max(c.Start, p.Start), p.End)
		c.End = min(max(c.End, c.Start), p.End)
		clampInto(c)
	}
}
