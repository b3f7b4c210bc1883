package trace

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/ukernel-dev/ukernel/internal/version"
)

// WriteTree prints the trace as an indented tree: offset from the run's start, duration, name
// and attributes, one span a line.
func WriteTree(w io.Writer, t *Trace) error {
	var b strings.Builder
	title := t.Root.Name
	if t.Partial {
		title += " (partial)"
	}
	fmt.Fprintf(&b, "%s  %s\n", title, fmtDur(t.Root.Duration()))
	for _, n := range t.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	if t.AlignWindow > 0 {
		fmt.Fprintf(&b, "  guest clock aligned to %s; strict error bound %s\n", t.AlignedTo, fmtDur(t.AlignWindow))
	}
	fmt.Fprintf(&b, "  %9s %9s\n", "START", "DURATION")
	base := t.Root.Start
	for _, c := range t.Root.Children {
		c.Walk(func(s *Span, depth int) {
			fmt.Fprintf(&b, "  %9s %9s %s%s%s\n", "+"+fmtDur(time.Duration(s.Start-base)), fmtDur(s.Duration()),
				strings.Repeat("  ", depth), s.Name, fmtAttrs(s.Attrs))
		})
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func fmtAttrs(a map[string]string) string {
	if len(a) == 0 {
		return ""
	}
	var parts []string
	for _, k := range sortedKeys(a) {
		parts = append(parts, k+"="+a[k])
	}
	return "  [" + strings.Join(parts, " ") + "]"
}

func sortedKeys(a map[string]string) []string {
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%dµs", d.Microseconds())
}

// Chrome trace event format (the JSON Object Format of the Trace Event Format document):
// complete events ("ph":"X") with ts and dur in microseconds; the host and the guest are two
// processes, named by metadata events, so Perfetto and chrome://tracing draw them as two lanes.
type chromeFile struct {
	TraceEvents     []chromeEvent     `json:"traceEvents"`
	DisplayTimeUnit string            `json:"displayTimeUnit"`
	OtherData       map[string]string `json:"otherData"`
}

type chromeEvent struct {
	Name string            `json:"name"`
	Cat  string            `json:"cat,omitempty"`
	Ph   string            `json:"ph"`
	Ts   float64           `json:"ts"`
	Dur  *float64          `json:"dur,omitempty"`
	Pid  int               `json:"pid"`
	Tid  int               `json:"tid"`
	Args map[string]string `json:"args,omitempty"`
}

// Process ids of the two sides in Chrome traces.
const (
	chromeHostPID  = 1
	chromeGuestPID = 2
)

// WriteChrome writes the trace in Chrome's trace event format. ts counts from the run's start;
// otherData records that start as Unix ns. Services get a thread each: they overlap the entry.
func WriteChrome(w io.Writer, t *Trace) error {
	f := chromeFile{
		DisplayTimeUnit: "ms",
		OtherData: map[string]string{
			"run_id": t.RunID, "start_unix_ns": fmt.Sprint(t.Root.Start),
			"partial": fmt.Sprint(t.Partial), "ukernel": version.Version,
		},
	}
	meta := func(pid int, name string) {
		f.TraceEvents = append(f.TraceEvents, chromeEvent{Name: "process_name", Ph: "M", Pid: pid, Tid: 1, Args: map[string]string{"name": name}})
	}
	meta(chromeHostPID, "host")
	meta(chromeGuestPID, "guest")
	base := t.Root.Start
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	t.Root.Walk(func(s *Span, depth int) {
		pid, tid := chromeHostPID, 1
		if s.Side == Guest {
			pid = chromeGuestPID
			if strings.HasPrefix(s.Name, "service ") || strings.HasPrefix(s.Name, "health") {
				tid = 2
			}
		}
		d := us(s.End - s.Start)
		f.TraceEvents = append(f.TraceEvents, chromeEvent{
			Name: s.Name, Cat: s.Side, Ph: "X", Ts: us(s.Start - base), Dur: &d, Pid: pid, Tid: tid, Args: s.Attrs,
		})
	})
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	return enc.Encode(f)
}

// OTLP JSON (the protobuf JSON mapping of ExportTraceServiceRequest) is written by hand: the
// OpenTelemetry Go SDK's OTLP exporters pull in gRPC and protobuf and send to a collector,
// while this is a file. Ids are hex, times are decimal strings of Unix ns, as the spec requires.
type otlpFile struct {
	ResourceSpans []otlpResourceSpans `json:"resourceSpans"`
}

type otlpResourceSpans struct {
	Resource   otlpResource     `json:"resource"`
	ScopeSpans []otlpScopeSpans `json:"scopeSpans"`
}

type otlpResource struct {
	Attributes []otlpKV `json:"attributes"`
}

type otlpScopeSpans struct {
	Scope otlpScope  `json:"scope"`
	Spans []otlpSpan `json:"spans"`
}

type otlpScope struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

type otlpSpan struct {
	TraceID           string   `json:"traceId"`
	SpanID            string   `json:"spanId"`
	ParentSpanID      string   `json:"parentSpanId,omitempty"`
	Name              string   `json:"name"`
	Kind              int      `json:"kind"`
	StartTimeUnixNano string   `json:"startTimeUnixNano"`
	EndTimeUnixNano   string   `json:"endTimeUnixNano"`
	Attributes        []otlpKV `json:"attributes,omitempty"`
}

type otlpKV struct {
	Key   string       `json:"key"`
	Value otlpAnyValue `json:"value"`
}

type otlpAnyValue struct {
	StringValue string `json:"stringValue"`
}

// spanKindInternal is SPAN_KIND_INTERNAL.
const spanKindInternal = 1

// WriteOTLP writes the trace as OTLP JSON. The trace id derives from the run id and each span
// id from its path in the tree, so the same run always gives the same ids.
func WriteOTLP(w io.Writer, t *Trace) error {
	traceID := hexID(t.RunID, 16)
	var spans []otlpSpan
	var walk func(s *Span, path, parent string)
	walk = func(s *Span, path, parent string) {
		id := hexID(t.RunID+"/"+path, 8)
		attrs := []otlpKV{{Key: "ukernel.side", Value: otlpAnyValue{s.Side}}}
		for _, k := range sortedKeys(s.Attrs) {
			attrs = append(attrs, otlpKV{Key: "ukernel." + k, Value: otlpAnyValue{s.Attrs[k]}})
		}
		spans = append(spans, otlpSpan{
			TraceID: traceID, SpanID: id, ParentSpanID: parent, Name: s.Name, Kind: spanKindInternal,
			StartTimeUnixNano: fmt.Sprint(s.Start), EndTimeUnixNano: fmt.Sprint(s.End), Attributes: attrs,
		})
		for i, c := range s.Children {
			walk(c, fmt.Sprintf("%s/%d:%s", path, i, c.Name), id)
		}
	}
	walk(t.Root, t.Root.Name, "")
	f := otlpFile{ResourceSpans: []otlpResourceSpans{{
		Resource: otlpResource{Attributes: []otlpKV{
			{Key: "service.name", Value: otlpAnyValue{"ukernel"}},
			{Key: "ukernel.run_id", Value: otlpAnyValue{t.RunID}},
			{Key: "ukernel.partial", Value: otlpAnyValue{fmt.Sprint(t.Partial)}},
		}},
		ScopeSpans: []otlpScopeSpans{{Scope: otlpScope{Name: "github.com/ukernel-dev/ukernel/internal/trace", Version: version.Version}, Spans: spans}},
	}}}
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	return enc.Encode(f)
}

func hexID(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:n])
}
