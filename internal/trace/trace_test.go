package trace

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/runlog"
)

// bootEvents is a recorded boot of the minimal preset under TCG (t_ns: guest CLOCK_BOOTTIME).
const bootEvents = `{"type":"hello","t_ns":1426224722,"abi":"0.3.0"}
{"type":"phase","t_ns":1475584188,"name":"init","start_ns":1426224722,"dur_ns":49359466}
{"type":"phase","t_ns":1845783654,"name":"modules","start_ns":1476002125,"dur_ns":369781529}
{"type":"phase","t_ns":1980917393,"name":"devices","start_ns":1845973168,"dur_ns":134944225}
{"type":"phase","t_ns":2024408418,"name":"config","start_ns":1987188879,"dur_ns":37219539}
{"type":"phase","t_ns":2099119951,"name":"mounts","start_ns":2024563144,"dur_ns":74556807}
{"type":"phase","t_ns":2193758729,"name":"network","start_ns":2099293696,"dur_ns":94465033}
{"type":"entry.start","t_ns":2222071078,"pid":85}
{"type":"entry.exit","t_ns":2907265146,"code":0}
{"type":"probe","t_ns":2950000000,"name":"root.randread","start_ns":2910000000,"dur_ns":40000000,"values":{"ops":200,"p50_ns":185000,"p90_ns":500000,"p99_ns":7000000,"max_ns":9000000,"clock_res_ns":1}}
{"type":"phase","t_ns":2960000000,"name":"ioprobe","start_ns":2908000000,"dur_ns":52000000}
{"type":"poweroff","t_ns":2960650635,"code":0}
`

// writeRun lays out a run directory as launch leaves it: events, console and host spans.
func writeRun(t *testing.T, events string, host []Span) (string, runlog.Run) {
	t.Helper()
	proj := t.TempDir()
	r, err := runlog.NewRun(proj, time.Unix(1_800_000_000, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.Events(), []byte(events), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.Console(), []byte("[    0.322772] PCI: Fatal\nHello\n[    2.973836] reboot: Power down\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if host != nil {
		if err := WriteSpans(filepath.Join(r.Dir, RunSpansFile), host); err != nil {
			t.Fatal(err)
		}
	}
	return proj, r
}

var spawn = time.Unix(1_800_000_000, 0)

func hostSpans() []Span {
	return []Span{
		NewSpan(SpanVMMStart, spawn, spawn.Add(50*time.Millisecond), "backend", "qemu"),
		NewSpan(SpanVM, spawn, spawn.Add(3400*time.Millisecond), "backend", "qemu"),
	}
}

// CheckNesting fails when a child leaves its parent's interval.
func CheckNesting(t *testing.T, root *Span) {
	t.Helper()
	var check func(p *Span)
	check = func(p *Span) {
		if p.End < p.Start {
			t.Errorf("span %s ends before it starts", p.Name)
		}
		for _, c := range p.Children {
			if c.Start < p.Start || c.End > p.End {
				t.Errorf("span %s [%d, %d] is not inside its parent %s [%d, %d]", c.Name, c.Start, c.End, p.Name, p.Start, p.End)
			}
			check(c)
		}
	}
	check(root)
}

func TestAssembleAlignsAndNests(t *testing.T) {
	proj, r := writeRun(t, bootEvents, hostSpans())
	tr, err := Load(proj, r)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Partial {
		t.Fatalf("complete run marked partial: %v", tr.Notes)
	}
	CheckNesting(t, tr.Root)
	g := tr.Root.Find(SpanGuest)
	// P is the console's power-down stamp (2.973836 s), later than the last event.
	wantT0 := spawn.Add(3400*time.Millisecond).UnixNano() - 2_973_836_000
	if g.Start != wantT0 {
		t.Errorf("guest t0 = %d, want E-P = %d", g.Start, wantT0)
	}
	if want := 3400*time.Millisecond - 2973836*time.Microsecond; tr.AlignWindow != want {
		t.Errorf("align window %s, want %s", tr.AlignWindow, want)
	}
	k := g.Find(SpanKernel)
	if k == nil || k.Start != g.Start || k.Duration() != 1426224722 {
		t.Fatalf("kernel span %+v, want [t0, t0+hello]", k)
	}
	var names []string
	for _, c := range g.Children {
		names = append(names, c.Name)
	}
	want := "kernel init modules devices config mounts network entry ioprobe shutdown"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("guest spans %q, want %q", got, want)
	}
	if p := g.Find("probe root.randread"); p == nil || p.Attrs["p50_ns"] != "185000" {
		t.Errorf("probe span %+v", p)
	}
}

// TestReadingsPlaceTheGuestClock: QEMU's exit seen seconds after the guest powered off (a
// guest perf or stop asked to stop, on a loaded host) would place the guest late; the lines the
// host read, each after the guest stamped it, bound its t=0 and the tightest places it. A
// service's line (not stamped by the entry's start) and a console line without a stamp do not
// count. A run without a recorded end is placed by them too.
func TestReadingsPlaceTheGuestClock(t *testing.T) {
	rec := func(at time.Duration, stream, service, log string) string {
		b, _ := json.Marshal(map[string]string{"time": spawn.Add(at).Format(time.RFC3339Nano), "stream": stream, "service": service, "log": log})
		return string(b) + "\n"
	}
	const entryStart = 2222071078 // bootEvents' entry.start
	for _, c := range []struct {
		name   string
		output string
		end    time.Duration // QEMU's exit seen; 0: no recorded end
		want   time.Duration // t0 after QEMU's spawn
	}{
		{"console line", rec(700*time.Millisecond, "kernel", "", "[    0.322772] PCI: Fatal\n") +
			rec(2*time.Second, "stdout", "db", "ready\n") + rec(2100*time.Millisecond, "kernel", "", "Hello\n") +
			rec(2600*time.Millisecond, "stdout", "", "up\n"), 6 * time.Second, 377228 * time.Microsecond},
		{"entry's first line", rec(900*time.Millisecond, "kernel", "", "[    0.322772] PCI: Fatal\n") +
			rec(2500*time.Millisecond, "stdout", "", "up\n") + rec(2510*time.Millisecond, "stderr", "", "second\n"),
			6 * time.Second, 2500*time.Millisecond - entryStart},
		{"no recorded end", rec(700*time.Millisecond, "kernel", "", "[    0.322772] PCI: Fatal\n"), 0, 377228 * time.Microsecond},
		{"QEMU's exit is tighter", rec(900*time.Millisecond, "kernel", "", "[    0.322772] PCI: Fatal\n"), 3400 * time.Millisecond, 3400*time.Millisecond - 2973836*time.Microsecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			host := hostSpans()
			host[1].End = spawn.Add(c.end).UnixNano()
			if c.end == 0 {
				host = host[:1]
			}
			proj, r := writeRun(t, bootEvents, host)
			if err := os.WriteFile(r.Output(), []byte(c.output), 0o644); err != nil {
				t.Fatal(err)
			}
			tr, err := Load(proj, r)
			if err != nil {
				t.Fatal(err)
			}
			CheckNesting(t, tr.Root)
			g := tr.Root.Find(SpanGuest)
			if got := time.Duration(g.Start - spawn.UnixNano()); got != c.want || tr.AlignWindow != c.want {
				t.Errorf("guest t0 at +%s (window %s, aligned to %s), want +%s", got, tr.AlignWindow, tr.AlignedTo, c.want)
			}
			if e := g.Find(SpanEntry); e == nil || e.Start != g.Start+entryStart {
				t.Errorf("entry span %+v, want at t0 + its start", e)
			}
		})
	}
}

// TestKVMProbeSpan: the KVM probe before the VMM's start is a step of the run's trace.
func TestKVMProbeSpan(t *testing.T) {
	host := append([]Span{NewSpan(SpanKVMProbe, spawn.Add(-4*time.Second), spawn.Add(-10*time.Millisecond), "usable", "false", "cached", "false")}, hostSpans()...)
	proj, r := writeRun(t, bootEvents, host)
	tr, err := Load(proj, r)
	if err != nil {
		t.Fatal(err)
	}
	CheckNesting(t, tr.Root)
	p := tr.Root.Find(SpanKVMProbe)
	if p == nil || p.Attrs["usable"] != "false" || p.Duration() != 3990*time.Millisecond {
		t.Fatalf("probe span %+v", p)
	}
	if tr.Root.Start != p.Start {
		t.Errorf("the run starts at %d, not with the probe at %d", tr.Root.Start, p.Start)
	}
	var b bytes.Buffer
	if err := WriteTree(&b, tr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), SpanKVMProbe) {
		t.Errorf("tree lacks the probe:\n%s", b.String())
	}
}

func TestFastGuestClockIsScaled(t *testing.T) {
	host := []Span{NewSpan(SpanVM, spawn, spawn.Add(2*time.Second))}
	proj, r := writeRun(t, bootEvents, host)
	tr, err := Load(proj, r)
	if err != nil {
		t.Fatal(err)
	}
	CheckNesting(t, tr.Root)
	g := tr.Root.Find(SpanGuest)
	if g.Start != spawn.UnixNano() || g.End != spawn.Add(2*time.Second).UnixNano() {
		t.Errorf("guest span [%d, %d], want QEMU's lifetime", g.Start, g.End)
	}
	if !strings.Contains(strings.Join(tr.Notes, " "), "guest clock runs fast") {
		t.Errorf("notes %v", tr.Notes)
	}
}

func TestTruncatedEventsArePartial(t *testing.T) {
	cut := bootEvents[:strings.Index(bootEvents, `{"type":"entry.exit"`)+17]
	proj, r := writeRun(t, cut, hostSpans()[:1])
	tr, err := Load(proj, r)
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Partial {
		t.Fatal("truncated events not marked partial")
	}
	var b bytes.Buffer
	if err := WriteTree(&b, tr); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"(partial)", "events end mid-line", "no power-off", "network", "entry  [open=true]"} {
		if !strings.Contains(out, want) {
			t.Errorf("tree lacks %q:\n%s", want, out)
		}
	}
	CheckNesting(t, tr.Root)
}

func TestNoRunsYet(t *testing.T) {
	proj, r := writeRun(t, "", nil)
	if _, err := Load(proj, r); err == nil || !strings.Contains(err.Error(), "reported nothing") {
		t.Fatalf("empty run: %v", err)
	}
}

// Trace Event Format, JSON Object Format: a strict reading. Every field is typed, unknown
// fields are errors, complete events need ts and dur in microseconds (non-negative), and
// complete events on one thread must nest (the format's rule for "X" slices).
type strictFile struct {
	TraceEvents     *[]strictEvent     `json:"traceEvents"`
	DisplayTimeUnit *string            `json:"displayTimeUnit"`
	OtherData       *map[string]string `json:"otherData"`
}

type strictEvent struct {
	Name *string            `json:"name"`
	Cat  *string            `json:"cat"`
	Ph   *string            `json:"ph"`
	Ts   *float64           `json:"ts"`
	Dur  *float64           `json:"dur"`
	Pid  *int               `json:"pid"`
	Tid  *int               `json:"tid"`
	Args *map[string]string `json:"args"`
}

// ValidateChrome checks data against the strict reading above and returns the X events.
func ValidateChrome(data []byte) ([]strictEvent, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f strictFile
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the JSON object")
	}
	if f.TraceEvents == nil {
		return nil, fmt.Errorf("traceEvents missing")
	}
	if f.DisplayTimeUnit != nil && *f.DisplayTimeUnit != "ms" && *f.DisplayTimeUnit != "ns" {
		return nil, fmt.Errorf("displayTimeUnit %q: must be ms or ns", *f.DisplayTimeUnit)
	}
	var xs []strictEvent
	for i, e := range *f.TraceEvents {
		if e.Name == nil || e.Ph == nil || e.Pid == nil || e.Tid == nil {
			return nil, fmt.Errorf("event %d lacks name, ph, pid or tid", i)
		}
		switch *e.Ph {
		case "X":
			if e.Ts == nil || e.Dur == nil || *e.Ts < 0 || *e.Dur < 0 {
				return nil, fmt.Errorf("complete event %d (%s) needs ts and dur >= 0", i, *e.Name)
			}
			xs = append(xs, e)
		case "M":
			if *e.Name != "process_name" && *e.Name != "thread_name" || e.Args == nil || (*e.Args)["name"] == "" {
				return nil, fmt.Errorf("metadata event %d: %s with args.name expected", i, *e.Name)
			}
		default:
			return nil, fmt.Errorf("event %d: phase %q not used by ukernel", i, *e.Ph)
		}
	}
	for i, a := range xs {
		for _, b := range xs[i+1:] {
			if *a.Pid != *b.Pid || *a.Tid != *b.Tid {
				continue
			}
			// ts and dur are float microseconds: allow 1 ns of rounding (ts+dur of one slice
			// and ts of the next can differ in the last bit) before calling slices overlapping.
			const eps = 1e-3
			a0, a1, b0, b1 := *a.Ts, *a.Ts+*a.Dur, *b.Ts, *b.Ts+*b.Dur
			overlap := a0 < b1-eps && b0 < a1-eps
			nested := (a0 <= b0+eps && b1 <= a1+eps) || (b0 <= a0+eps && a1 <= b1+eps)
			if overlap && !nested {
				return nil, fmt.Errorf("slices %s [%g,%g] and %s [%g,%g] on pid %d tid %d overlap without nesting", *a.Name, a0, a1, *b.Name, b0, b1, *a.Pid, *a.Tid)
			}
		}
	}
	return xs, nil
}

func TestChromeIsStrictTraceEventFormat(t *testing.T) {
	proj, r := writeRun(t, bootEvents, hostSpans())
	tr, err := Load(proj, r)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteChrome(&b, tr); err != nil {
		t.Fatal(err)
	}
	xs, err := ValidateChrome(b.Bytes())
	if err != nil {
		t.Fatalf("chrome JSON: %v\n%s", err, b.String())
	}
	var kernelDur float64
	for _, x := range xs {
		if *x.Name == SpanKernel {
			kernelDur = *x.Dur
		}
	}
	if kernelDur != 1426224.722 {
		t.Errorf("kernel dur %v µs, want 1426224.722", kernelDur)
	}
}

func TestOTLP(t *testing.T) {
	proj, r := writeRun(t, bootEvents, hostSpans())
	tr, err := Load(proj, r)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteOTLP(&b, tr); err != nil {
		t.Fatal(err)
	}
	var f otlpFile
	dec := json.NewDecoder(&b)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		t.Fatal(err)
	}
	spans := f.ResourceSpans[0].ScopeSpans[0].Spans
	ids := map[string]bool{}
	for _, s := range spans {
		if len(s.TraceID) != 32 || len(s.SpanID) != 16 {
			t.Errorf("span %s: trace id %q / span id %q not 16/8 bytes hex", s.Name, s.TraceID, s.SpanID)
		}
		ids[s.SpanID] = true
	}
	for _, s := range spans[1:] {
		if !ids[s.ParentSpanID] {
			t.Errorf("span %s: parent %q unknown", s.Name, s.ParentSpanID)
		}
	}
	if spans[0].ParentSpanID != "" || len(spans) < 12 {
		t.Errorf("root %+v, %d spans", spans[0], len(spans))
	}
}

// CheckSVG renders svg with rsvg-convert and returns the phases drawn per run.
func CheckSVG(t *testing.T, svg []byte) map[string][]string {
	t.Helper()
	if _, err := exec.LookPath("rsvg-convert"); err != nil {
		t.Fatal("rsvg-convert not found: install librsvg2-bin (scripts/deps.sh)")
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "t.svg"), filepath.Join(dir, "t.png")
	if err := os.WriteFile(in, svg, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if o, err := exec.CommandContext(ctx, "rsvg-convert", "-o", out, in).CombinedOutput(); err != nil {
		t.Fatalf("rsvg-convert: %v: %s", err, o)
	}
	if png, err := os.ReadFile(out); err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("rsvg-convert gave no PNG: %v", err)
	}
	bars := map[string][]string{}
	dec := xml.NewDecoder(bytes.NewReader(svg))
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			var run, phase, class string
			for _, a := range se.Attr {
				switch a.Name.Local {
				case "data-run":
					run = a.Value
				case "data-phase":
					phase = a.Value
				case "class":
					class = a.Value
				}
			}
			if class == "phase" {
				bars[run] = append(bars[run], phase)
			}
		}
	}
	return bars
}

func TestTimelineSVG(t *testing.T) {
	rows := []TimelineRow{
		{Label: "run 1", Bars: []Bar{{"qemu", 0, 400 * time.Millisecond}, {"kernel", 400 * time.Millisecond, 1800 * time.Millisecond}, {"init", 1800 * time.Millisecond, 1850 * time.Millisecond}}},
		{Label: "run 2", Bars: []Bar{{"qemu", 0, 300 * time.Millisecond}, {"kernel", 300 * time.Millisecond, 1900 * time.Millisecond}, {"init", 1900 * time.Millisecond, 1960 * time.Millisecond}}},
	}
	var b bytes.Buffer
	if err := WriteTimeline(&b, "test <&>", rows); err != nil {
		t.Fatal(err)
	}
	bars := CheckSVG(t, b.Bytes())
	for _, run := range []string{"1", "2"} {
		if got := strings.Join(bars[run], " "); got != "qemu kernel init" {
			t.Errorf("run %s bars %q, want one per phase", run, got)
		}
	}
}

func TestParseEventsSkipsBadLines(t *testing.T) {
	evs, problems := ParseEvents([]byte("{\"type\":\"hello\",\"t_ns\":1}\ngarbage\n{\"type\":\"poweroff\",\"t_ns\":2}\n{\"type\":\"pha"))
	if len(evs) != 2 || len(problems) != 2 || evs[1].Type != abi.EventPowerOff {
		t.Fatalf("events %v problems %v", evs, problems)
	}
}

// TestChromeValidatorRounding: adjacent slices whose float end and start differ in the last bit
// (as 794590.181+1104817.073 does) are adjacent, not overlapping; a real overlap still fails.
func TestChromeValidatorRounding(t *testing.T) {
	doc := func(a0, ad, b0, bd float64) []byte {
		return []byte(fmt.Sprintf(`{"traceEvents":[
{"name":"kernel","cat":"guest","ph":"X","ts":%v,"dur":%v,"pid":2,"tid":1},
{"name":"init","cat":"guest","ph":"X","ts":%v,"dur":%v,"pid":2,"tid":1}],"displayTimeUnit":"ms"}`, a0, ad, b0, bd))
	}
	if _, err := ValidateChrome(doc(794590.181, 1104817.073, 1899407.254, 39088.385)); err != nil {
		t.Errorf("adjacent slices rejected: %v", err)
	}
	if _, err := ValidateChrome(doc(0, 100, 50, 100)); err == nil {
		t.Error("overlapping slices accepted")
	}
}

// TestAssembleRestored: a restored guest's clock goes on from the snapshot's boot (its events
// say 12 s of uptime 0.4 s after QEMU's start); its reseeded event, seen by the host within the
// reseed span, places it, and the restore's host spans sit in the VM's, with the workload's
// first output after it (a kernel line is not the workload's).
func TestAssembleRestored(t *testing.T) {
	events := `{"type":"reseeded","t_ns":12735515093,"start_ns":12585295704,"dur_ns":150252657,"values":{"clock_step_ns":5023456491,"reseed_ns":12000750}}
{"type":"entry.exit","t_ns":13399826517,"code":0}
{"type":"poweroff","t_ns":13441212248,"code":0}
`
	seen := spawn.Add(460 * time.Millisecond)
	host := []Span{
		NewSpan(SpanVMMStart, spawn, spawn.Add(280*time.Millisecond), "backend", "qemu"),
		NewSpan(SpanRestore+"resume", spawn.Add(283*time.Millisecond), spawn.Add(285*time.Millisecond)),
		NewSpan(SpanRestore+"reseed", spawn.Add(285*time.Millisecond), seen),
		NewSpan(SpanVM, spawn, spawn.Add(1300*time.Millisecond), "backend", "qemu"),
	}
	proj, r := writeRun(t, events, host)
	answered := seen.Add(190 * time.Millisecond)
	output := fmt.Sprintf("{\"time\":%q,\"stream\":\"kernel\",\"log\":\"a console line\\n\"}\n{\"time\":%q,\"stream\":\"stderr\",\"log\":\"GET /healthz 200\\n\"}\n",
		seen.Add(50*time.Millisecond).Format(time.RFC3339Nano), answered.Format(time.RFC3339Nano))
	if err := os.WriteFile(r.Output(), []byte(output), 0o644); err != nil {
		t.Fatal(err)
	}
	tr, err := Load(proj, r)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Partial {
		t.Errorf("a complete restored run is partial: %v", tr.Notes)
	}
	if fo := tr.Root.Find(SpanFirstOutput); fo == nil || fo.Start != seen.UnixNano() || fo.End != answered.UnixNano() || fo.Attrs["stream"] != "stderr" {
		t.Errorf("first output after the restore %+v, want %d..%d", fo, seen.UnixNano(), answered.UnixNano())
	}
	CheckNesting(t, tr.Root)
	g := tr.Root.Find(SpanGuest)
	rs := g.Find(SpanReseed)
	if rs == nil || rs.End != seen.UnixNano()-(12735515093-12585295704-150252657) || rs.Attrs["reseed_ns"] != "12000750" {
		t.Fatalf("reseed span %+v (host saw the event at %d)", rs, seen.UnixNano())
	}
	if g.Start != rs.Start || g.Attrs["restored"] != "true" {
		t.Errorf("the restored guest starts at %d, its reseed at %d", g.Start, rs.Start)
	}
	vm := tr.Root.Find(SpanVM)
	if vm.Find(SpanRestore+"reseed") == nil || tr.AlignedTo != "the restored guest's reseeded event" {
		t.Errorf("the restore's spans are not the VM's, or the clock not aligned by them: %+v", tr)
	}
}
