package launch

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ukernel-dev/ukernel/internal/runstate"
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
		if g := publisher(o.Store, netw.Publish); g != "" {
			err = fmt.Errorf("%w, or stop the guest %s that publishes it (ukernel stop %s)", err, g, g)
		}
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

// publisher is the running guest that publishes one of the host ports of ports, if any: the
// usual holder of a port a run cannot publish.
func publisher(store *runstate.Store, ports []vmm.Port) string {
	if store == nil || len(ports) == 0 {
		return ""
	}
	states, err := store.List()
	if err != nil {
		return ""
	}
	for _, st := range states {
		if !st.Live() {
			continue
		}
		for _, held := range st.Ports {
			host, _, _ := strings.Cut(held, ":")
			for _, p := range ports {
				if host == strconv.Itoa(p.Host) {
					return st.Name
				}
			}
		}
	}
	return ""
}
