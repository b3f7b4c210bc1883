// Package trace implements `ukernel trace`: a run's spans (host lock/build/pack and VMM start,
// guest kernel, init phases, entry) as a tree, Chrome/Perfetto trace JSON or OTLP JSON.
package trace

import (
	"bytes"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/runlog"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/internal/trace"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

// Formats of `ukernel trace`.
const (
	FormatTree   = "tree"
	FormatChrome = "chrome"
	FormatOTLP   = "otlp"
)

type options struct {
	f        *cmdutil.Factory
	run      string
	format   string
	output   string
	template string
}

// NewCmdTrace returns the trace command.
func NewCmdTrace(f *cmdutil.Factory) *cobra.Command {
	o := &options{f: f}
	cmd := &cobra.Command{
		Use:         "trace [RUN]",
		Annotations: map[string]string{cmdutil.InterruptibleAnnotation: "true"}, // killed, it leaves nothing half-done
		Short:       "Show where a run's time went, as spans",
		Long: `Trace shows the latest run (or the run RUN, an id under logs/runs/) as spans on one clock:
the host's lock, build and pack (with cache hits) when they came right before the run, the KVM
probe (--accel auto), QEMU's start, and the guest's kernel, init phases, services, entry and shutdown.

--format tree prints an indented tree with offsets and durations; chrome writes Chrome trace
event JSON (open it in https://ui.perfetto.dev or chrome://tracing); otlp writes OTLP JSON for
OpenTelemetry tools. A run whose records are incomplete is shown and marked partial.`,
		Example: `  ukernel trace
  ukernel trace --format chrome -o trace.json
  ukernel trace 20261122T101500Z-a1b2c3 --format otlp
  ukernel trace --template api`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.run = args[0]
			}
			return run(o)
		},
	}
	cmd.Flags().StringVar(&o.format, "format", FormatTree, "output format: tree, chrome or otlp")
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "write to FILE instead of stdout")
	cmd.Flags().StringVar(&o.template, "template", "", "a run of this template (run --template), not of the project")
	return cmd
}

func run(o *options) error {
	var write func(*bytes.Buffer, *trace.Trace) error
	switch o.format {
	case FormatTree:
		write = func(b *bytes.Buffer, t *trace.Trace) error { return trace.WriteTree(b, t) }
	case FormatChrome:
		write = func(b *bytes.Buffer, t *trace.Trace) error { return trace.WriteChrome(b, t) }
	case FormatOTLP:
		write = func(b *bytes.Buffer, t *trace.Trace) error { return trace.WriteOTLP(b, t) }
	default:
		return cmdutil.Usagef("--format %q: expected tree, chrome or otlp", o.format)
	}
	dir, err := o.f.ProjectDir()
	if err != nil {
		return err
	}
	if o.template != "" {
		s, err := template.Open()
		if err != nil {
			return err
		}
		if _, err := s.Get(o.template); err != nil {
			return err
		}
		dir = s.TemplateDir(o.template)
	}
	r, err := runlog.Find(dir, o.run)
	if err != nil {
		return err
	}
	t, err := trace.Load(dir, r)
	if err != nil {
		return err
	}
	if t.Partial {
		fmt.Fprintf(o.f.IO.ErrOut, "warning: run %s: partial trace\n", r.ID)
	}
	if o.f.JSON && o.format == FormatTree && o.output == "" {
		return o.f.PrintJSON(struct {
			RunID         string      `json:"run_id"`
			Partial       bool        `json:"partial"`
			Notes         []string    `json:"notes,omitempty"`
			AlignWindowNS int64       `json:"align_window_ns"`
			Root          *trace.Span `json:"root"`
		}{t.RunID, t.Partial, t.Notes, int64(t.AlignWindow), t.Root})
	}
	var b bytes.Buffer
	if err := write(&b, t); err != nil {
		return err
	}
	if o.output == "" {
		_, err := o.f.IO.Out.Write(b.Bytes())
		return err
	}
	if err := atomicfile.WriteFile(o.output, b.Bytes(), 0o644); err != nil {
		return err
	}
	if o.f.JSON {
		return o.f.PrintJSON(struct {
			RunID   string `json:"run_id"`
			Format  string `json:"format"`
			Output  string `json:"output"`
			Partial bool   `json:"partial"`
		}{r.ID, o.format, o.output, t.Partial})
	}
	o.f.Progress("Wrote %s trace of run %s to %s", o.format, r.ID, o.output)
	return nil
}
