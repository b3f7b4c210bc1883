// Package perf implements `ukernel perf`: boot the image N times and report cold-start
// percentiles per phase and the guest's block IO latencies, optionally as an SVG timeline.
package perf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Options are the inputs of `perf`.
type Options struct {
	IO         *iostreams.IOStreams
	ProjectDir func() (string, error)
	JSON       bool
	Logger     *slog.Logger

	Runs    int
	Image   string // as given: relative to the project directory; "": the project's, packed
	SVG     string // a file (relative to the working directory); "": no timeline
	Accel   string
	Timeout time.Duration
	Offline bool
	// Template (NAME or NAME@REV): measure restores of the template's snapshot instead.
	Template string
	// Measure boots and measures (perf.Run; tests pass their own).
	Measure func(context.Context, perf.Options) ([]perf.Boot, error)
}

// NewCmdPerf returns the perf command; runF, when set, gets the parsed options instead of
// perfRun (tests).
func NewCmdPerf(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	o := &Options{IO: f.IO, ProjectDir: f.ProjectDir, Measure: perf.Run}
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
--snapshot), with the template's run settings: QEMU's start with the state loaded
(qemu), the state's load, the resume, the host's wait for the guest's reseed
(restore.reseed), the guest's own reseed, the workload's first output after it, and the time
to its first sign of life after the restore. The template stays pinned until the last boot: a
template build meanwhile keeps the measured revision (its prune waits).`,
		Example: `  ukernel perf
  ukernel perf --runs 5 --svg boot.svg
  ukernel perf --image dist/api.img --json
  ukernel perf --template api --runs 11`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.JSON, o.Logger = f.JSON, f.Logger
			if o.Runs < 1 {
				return cmdutil.Usagef("--runs %d: expected at least 1", o.Runs)
			}
			if o.Template != "" && o.Image != "" {
				return cmdutil.Usagef("--template and --image exclude each other: a template names its image")
			}
			if runF != nil {
				return runF(o)
			}
			return perfRun(cmd.Context(), o)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&o.Runs, "runs", 10, "number of boots")
	fl.StringVar(&o.Image, "image", "", "boot this image instead of building the project's (relative to the project directory)")
	fl.StringVar(&o.SVG, "svg", "", "write the per-phase timeline of the runs to FILE (SVG)")
	fl.StringVar(&o.Accel, "accel", "auto", "accelerator: auto, kvm or tcg")
	fl.DurationVar(&o.Timeout, "timeout", 2*time.Minute, "deadline of one boot that shows no sign of life (no output line, no healthy service); it is stopped then")
	fl.BoolVar(&o.Offline, "offline", false, "build without network access")
	fl.StringVar(&o.Template, "template", "", "measure restores of this template's snapshot (NAME or NAME@REV)")
	return cmd
}

func perfRun(ctx context.Context, o *Options) error {
	dir, err := o.ProjectDir()
	if err != nil {
		return err
	}
	progress := o.IO.Progress()
	var tpl *perf.TemplateRun
	img := cmdutil.ProjectPath(dir, o.Image)
	if o.Template != "" {
		var unpin func()
		if dir, img, tpl, unpin, err = templateRun(ctx, o.Template); err != nil {
			return err
		}
		// A build's prune keeps the measured revision (and its snapshot) until the last boot.
		defer unpin()
	}
	if img == "" {
		// PackProject, not Image: the build's spans stay those of the user's last run.
		po := pipeline.Options{Dir: dir, Offline: o.Offline, Progress: progress, Logger: o.Logger, Command: "ukernel perf"}
		_, r, err := pipeline.PackProject(ctx, po)
		if err != nil {
			return err
		}
		if img = r.Image; !r.Cached {
			progress.Printf("Image created: %s", img)
		}
	}
	boots, err := o.Measure(ctx, perf.Options{
		ProjectDir: dir, Image: img, Runs: o.Runs, Accel: o.Accel, Timeout: o.Timeout,
		Progress: progress, Log: o.Logger, Template: tpl,
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
		interrupted = &cmdutil.ExitError{Code: 130, Err: fmt.Errorf("interrupted: %d of %d boots finished", len(boots), o.Runs)}
	}
	if err := report(o, img, boots); err != nil {
		return err
	}
	return interrupted
}

// templateRun resolves perf --template: the template's directory (its runs' logs), its image,
// and its snapshot with its run settings. The template stays pinned (template.Store.Pin) until
// unpin: no prune removes the revision while perf boots it.
func templateRun(ctx context.Context, ref string) (dir, img string, t *perf.TemplateRun, unpin func(), err error) {
	name, _, err := template.ParseRef(ref)
	if err != nil {
		return "", "", nil, nil, &cmdutil.UsageError{Err: err}
	}
	s, err := template.Open()
	if err != nil {
		return "", "", nil, nil, err
	}
	release, err := s.Pin(ctx, name)
	if err != nil {
		return "", "", nil, nil, err
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	res, err := s.Resolve(ref)
	if err != nil {
		return "", "", nil, nil, err
	}
	t = &perf.TemplateRun{Snapshot: filepath.Join(res.Dir, template.SnapshotDir),
		VCPU: res.Spec.VCPU, MemoryMB: res.Spec.MemoryMB, DataMB: res.Spec.DataMB}
	if res.Spec.Net != "" {
		if t.Net, err = abi.ParseNet(res.Spec.Net); err != nil {
			return "", "", nil, nil, fmt.Errorf("template %s: net: %w", res.Spec.Name, err)
		}
	} else if len(res.Spec.Publish) > 0 {
		t.Net = abi.Net{Mode: abi.NetUser} // as the snapshot's boot had (templatebuild.Snapshot)
	}
	return s.TemplateDir(res.Spec.Name), res.Image, t, release, nil
}

func report(o *Options, img string, boots []perf.Boot) error {
	s := perf.Summarise(boots)
	s.Restores = o.Template != ""
	if o.SVG != "" {
		var b bytes.Buffer
		title := fmt.Sprintf("%s: %d cold starts, phases from QEMU's start", filepath.Base(img), len(boots))
		if err := trace.WriteTimeline(&b, title, perf.Timeline(boots)); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(o.SVG, b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("--svg: %w", err)
		}
		o.IO.Progress().Printf("Timeline: %s", o.SVG)
	}
	if o.JSON {
		return cmdutil.PrintJSON(o.IO, s)
	}
	return perf.WriteText(o.IO.Out, s)
}
