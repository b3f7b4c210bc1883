// Package perf implements `ukernel perf`: boot the image N times and report cold-start
// percentiles per phase and the guest's block IO latencies, optionally as an SVG timeline.
package perf

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/perf"
	"github.com/ukernel-dev/ukernel/internal/pipeline"
	"github.com/ukernel-dev/ukernel/internal/trace"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

type options struct {
	runs    int
	image   string
	svg     string
	accel   string
	timeout time.Duration
	offline bool
}

// NewCmdPerf returns the perf command.
func NewCmdPerf(f *cmdutil.Factory) *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:   "perf",
		Short: "Measure cold starts and guest block IO",
		Long: `Perf boots the project's image (built on demand, or --image) --runs times, one after the
other, each with its console kept in its own run directory under logs/runs/. It prints the
p50, p90 and max of every boot phase — QEMU's start-up, the kernel, each init phase, the
entry — and of the time from QEMU's start to the entry. After the entry exits, the guest runs
a block IO probe: 4 KiB random reads of the root partition, and random writes and reads on the
data volume (or, without one, on the tmpfs behind the root overlay); their latency
percentiles are printed too. --svg draws the phases of every run as a timeline.`,
		Example: `  ukernel perf
  ukernel perf --runs 5 --svg boot.svg
  ukernel perf --image dist/api.img --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, f, o)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&o.runs, "runs", 10, "number of boots")
	fl.StringVar(&o.image, "image", "", "boot this image instead of building the project's (relative to the project directory)")
	fl.StringVar(&o.svg, "svg", "", "write the per-phase timeline of the runs to FILE (SVG)")
	fl.StringVar(&o.accel, "accel", "auto", "accelerator: auto, kvm or tcg")
	fl.DurationVar(&o.timeout, "timeout", 2*time.Minute, "deadline of one boot; a workload still running then is stopped")
	fl.BoolVar(&o.offline, "offline", false, "build without network access")
	return cmd
}

func run(cmd *cobra.Command, f *cmdutil.Factory, o *options) error {
	if o.runs < 1 {
		return cmdutil.Usagef("--runs %d: expected at least 1", o.runs)
	}
	ctx := cmd.Context()
	dir, err := f.ProjectDir()
	if err != nil {
		return err
	}
	img := o.image
	if img != "" && !filepath.IsAbs(img) {
		img = filepath.Join(dir, img) // like pack, inspect and run: relative to the project (-C)
	}
	if img == "" {
		if img, err = pipeline.Image(ctx, pipeline.Options{Dir: dir, Offline: o.offline, Progress: f.IO.Progress(), Logger: f.Logger}); err != nil {
			return err
		}
	}
	boots, err := perf.Run(ctx, perf.Options{
		ProjectDir: dir, Image: img, Runs: o.runs, Accel: o.accel, Timeout: o.timeout,
		Progress: f.IO.Progress(), Log: f.Logger,
	})
	if err != nil {
		return err
	}
	s := perf.Summarise(boots)
	if o.svg != "" {
		var b bytes.Buffer
		title := fmt.Sprintf("%s: %d cold starts, phases from QEMU's start", filepath.Base(img), len(boots))
		if err := trace.WriteTimeline(&b, title, perf.Timeline(boots)); err != nil {
			return err
		}
		tmp := filepath.Join(filepath.Dir(o.svg), "."+filepath.Base(o.svg)+".tmp")
		if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("--svg %s: %w", o.svg, err)
		}
		if err := os.Rename(tmp, o.svg); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("--svg %s: %w", o.svg, err)
		}
		f.Progress("Timeline: %s", o.svg)
	}
	if f.JSON {
		return f.PrintJSON(s)
	}
	return perf.WriteText(f.IO.Out, s)
}
