package launch

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/ukernel-dev/ukernel/internal/trace"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/firecracker"
	"github.com/ukernel-dev/ukernel/internal/vmm/qemu"
)

// chooseVMM picks the backend and accelerator for a run, checks the network against what that
// backend has, and prints both choices with their reasons.
func chooseVMM(ctx context.Context, o Options, netw vmm.Net, probe vmm.ProbeSpec, progress io.Writer) (string, vmm.AccelChoice, error) {
	var choice vmm.BackendChoice
	var err error
	switch {
	case o.Accel == vmm.AccelTCG && o.Backend == vmm.BackendFirecracker:
		return "", vmm.AccelChoice{}, fmt.Errorf("--backend firecracker runs only under KVM, not --accel tcg")
	case o.Accel == vmm.AccelTCG && (o.Backend == vmm.BackendAuto || o.Backend == ""):
		choice = vmm.BackendChoice{Backend: vmm.BackendQEMU, Reason: "--accel tcg"}
	default:
		if choice, err = vmm.ChooseBackend(ctx, o.Backend, netw.Mode, probe); err != nil {
			return "", vmm.AccelChoice{}, err
		}
	}
	fmt.Fprintf(progress, "Backend: %s\n", choice)
	var accel vmm.AccelChoice
	if choice.Backend == firecracker.Name {
		if err := firecracker.CheckNet(netw); err != nil {
			return "", vmm.AccelChoice{}, err
		}
		accel = vmm.AccelChoice{Accel: vmm.AccelKVM}
	} else {
		if err := qemu.CheckNet(netw); err != nil {
			return "", vmm.AccelChoice{}, err
		}
		if accel, err = vmm.ChooseAccel(ctx, o.Accel, probe); err != nil {
			return "", vmm.AccelChoice{}, err
		}
	}
	fmt.Fprintf(progress, "Accelerator: %s\n", accel)
	return choice.Backend, accel, nil
}

// probeSpan returns a vmm.ProbeSpec.Probed that adds each KVM probe to spans.
func probeSpan(spans *[]trace.Span) func(vmm.ProbeResult, time.Time) {
	return func(res vmm.ProbeResult, start time.Time) {
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
