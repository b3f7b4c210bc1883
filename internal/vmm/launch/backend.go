package launch

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/ukernel-dev/ukernel/internal/trace"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/backends"
	"github.com/ukernel-dev/ukernel/internal/vmm/kvmprobe"
)

// chooseVMM picks the backend and accelerator for a run (backends.Choose with this host's
// live facts), checks the network against what that backend has, and prints both choices with
// their reasons.
func chooseVMM(ctx context.Context, o Options, netw vmm.Net, probe kvmprobe.Spec, progress io.Writer) (string, vmm.AccelChoice, error) {
	req, err := backends.ParseRequest(o.Backend, o.Accel, netw.Mode)
	if err != nil {
		return "", vmm.AccelChoice{}, err
	}
	c, err := backends.Choose(req, backends.Live(ctx, probe))
	if err != nil {
		return "", vmm.AccelChoice{}, err
	}
	fmt.Fprintf(progress, "Backend: %s\n", c.BackendString())
	e, err := backends.Get(c.Backend)
	if err != nil {
		return "", vmm.AccelChoice{}, err
	}
	if err := e.CheckNet(netw); err != nil {
		return "", vmm.AccelChoice{}, err
	}
	fmt.Fprintf(progress, "Accelerator: %s\n", c.AccelChoice())
	return string(c.Backend), c.AccelChoice(), nil
}

// probeSpan returns a kvmprobe.Spec.Probed that adds each KVM probe to spans.
func probeSpan(spans *[]trace.Span) func(kvmprobe.Result, time.Time) {
	return func(res kvmprobe.Result, start time.Time) {
		kv := []string{"usable", fmt.Sprint(res.Usable), "cached", fmt.Sprint(res.Cached)}
		if res.Reason != "" {
			kv = append(kv, "reason", res.Reason)
		}
		*spans = append(*spans, trace.NewSpan(trace.SpanKVMProbe, start, time.Now(), kv...))
	}
}

// recordSpans adds host spans to the run's trace; a failure only costs the trace those spans.
func (g *Guest) recordSpans(spans ...trace.Span) {
	if len(spans) == 0 {
		return
	}
	if err := trace.Append(filepath.Join(g.Run.Dir, trace.RunSpansFile), spans...); err != nil {
		g.log.Debug("record spans", "err", err)
	}
}
