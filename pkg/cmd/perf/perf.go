// Package perf implements `ukernel perf`: boot the image N times and report cold-start
// percentiles per phase and the guest's block IO latencies, optionally as an SVG timeline.
package perf

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/perf"
	"github.com/ukernel-dev/ukernel/internal/pipeline"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/internal/trace"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

type options struct {
	runs     int
	image    string
	svg      string
	accel    string
	timeout  time.Duration
	offline  bool
	template string
}

// NewCmdPerf returns the perf command.
func NewCmdPerf(f *cmdutil.Factory) *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:   "perf",
		Short: "Measure cold starts and guest block IO",
		Long: `Perf boots the project's image (built on demand, or --image) --runs times, one after the
other, each with its console kept in its own run directory under logs/runs/ (they do not
replace the last run that logs and trace show). Each boot lasts until the workload's first
sign of life — the entry's first line of output, or a service's first healthy check — and
then the guest is stopped, so a worker or server that never exits is measured as quickly as
one that does; --timeout bounds a boot that shows none. It prints the p50, p90 and max of
every boot phase — QEMU's start-up, the kernel, each init phase, the entry — and of the time
from QEMU's start to the entry (to-entry) and to that first sign (to-ready). After the entry
has stopped, the guest runs a block IO probe: 4 KiB random reads of the root partition, and
random writes and reads on the data volume (or, without one, on the tmpfs behind the root
overlay); their latency percentiles are printed too. --svg draws the phases of every run as a
timeline. Ctrl-C stops the current boot and prints the boots finished so far (exit 130).

--template NAME[@REV] measures restores of the template's snapshot instead (template build
--snapshot), with the template's run settings: QEMU's start with the state loaded, the guest's
reseed, and the time to its first sign of life after the restore.`,
		Example: `  ukernel perf
  ukernel perf --runs 5 --svg boot.svg
  ukernel perf --image dist/api.img --json
  ukernel perf --template api --runs 11`,
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
	fl.DurationVar(&o.timeout, "timeout", 2*time.Minute, "deadline of one boot that shows no sign of life (no output line, no healthy service); it is stopped then")
	fl.BoolVar(&o.offline, "offline", false, "build without network access")
	fl.StringVar(&o.template, "template", "", "measure restores of this template's snapshot (NAME or NAME@REV)")
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
	var tpl *perf.TemplateRun
	img := o.image
	if o.template != "" {
		if img != "" {
			return cmdutil.Usagef("--template and --image exclude each other: a template names its image")
		}
		if dir, img, tpl, err = templateRun(o.template); err != nil {
			return err
		}
	}
	if img != "" && !filepath.IsAbs(img) {
		img = filepath.Join(dir, img) // like pack, inspect and run: relative to the project (-C)
	}
	if img == "" {
		// Load and Pack, not Image: the build's spans stay those of the user's last run.
		po := pipeline.Options{Dir: dir, Offline: o.offline, Progress: f.IO.Progress(), Logger: f.Logger}
		p, err := pipeline.Load(ctx, po)
		if err != nil {
			return err
		}
		r, err := pipeline.Pack(ctx, p, po)
		if err != nil {
			return err
		}
		if img = r.Image; !r.Cached {
			f.Progress("Image created: %s", img)
		}
	}
	boots, err := perf.Run(ctx, perf.Options{
		ProjectDir: dir, Image: img, Runs: o.runs, Accel: o.accel, Timeout: o.timeout,
		Progress: f.IO.Progress(), Log: f.Logger, Template: tpl,
	})
	var interrupted error
	if err != nil {
		switch {
		case ctx.Err() == nil:
			return err
		case len(boots) == 0:
			return &cmdutil.ExitError{Code: 130, Err: errors.New("interrupted before the first boot finished")}
		}
		// Ctrl-C: the boots finished so far are still a result.
		interrupted = &cmdutil.ExitError{Code: 130, Err: fmt.Errorf("interrupted: %d of %d boots finished", len(boots), o.runs)}
	}
	if err := report(f, o, img, boots); err != nil {
		return err
	}
	return interrupted
}

// templateRun resolves perf --template: the template's directory (its runs' logs), its image,
// and its snapshot with its run settings.
func templateRun(ref string) (string, string, *perf.TemplateRun, error) {
	if _, _, err := template.ParseRef(ref); err != nil {
		return "", "", nil, &cmdutil.UsageError{Err: err}
	}
	s, err := template.Open()
	if err != nil {
		return "", "", nil, err
	}
	res, err := s.Resolve(ref)
	if err != nil {
		return "", "", nil, err
	}
	t := &perf.TemplateRun{Snapshot: filepath.Join(res.Dir, template.SnapshotDir),
		VCPU: res.Spec.VCPU, MemoryMB: res.Spec.MemoryMB, DataMB: res.Spec.DataMB}
	if res.Spec.Net != "" {
		if t.Net, err = abi.ParseNet(res.Spec.Net); err != nil {
			return "", "", nil, fmt.Errorf("template %s: net: %w", res.Spec.Name, err)
		}
	} else if len(res.Spec.Publish) > 0 {
		t.Net = abi.Net{Mode: abi.NetUser} // as the snapshot's boot had (templatebuild.Snapshot)
	}
	return s.TemplateDir(res.Spec.Name), res.Image, t, nil
}

func report(f *cmdutil.Factory, o *options, img string, boots []perf.Boot) error {
	s := perf.Summarise(boots)
	s.Restores = o.template != ""
	if o.svg != "" {
		var b bytes.Buffer
		title := fmt.Sprintf("%s: %d cold starts, phases from QEMU's start", filepath.Base(img), len(boots))
		if err := trace.WriteTimeline(&b, title, perf.Timeline(boots)); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(o.svg, b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("--svg: %w", err)
		}
		f.Progress("Timeline: %s", o.svg)
	}
	if f.JSON {
		return f.PrintJSON(s)
	}
	return perf.WriteText(f.IO.Out, s)
}
