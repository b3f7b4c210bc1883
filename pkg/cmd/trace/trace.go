// Package trace implements `ukernel trace`: a run's spans (host lock/build/pack and VMM start,
// guest kernel, init phases, entry) as a tree, Chrome/Perfetto trace JSON or OTLP JSON.
package trace

import (
	"bytes"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/runlog"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/internal/trace"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Formats of `ukernel trace`.
const (
	FormatTree   = "tree"
	FormatChrome = "chrome"
	FormatOTLP   = "otlp"
)

// Options are the inputs of `trace`.
type Options struct {
	IO         *iostreams.IOStreams
	ProjectDir func() (string, error)
	JSON       bool

	Run      string // a run id; "": the latest run
	Format   string
	Output   string // a file (relative to the working directory); "": stdout
	Template string
}

// NewCmdTrace returns the trace command; runF, when set, gets the parsed options instead of
// traceRun (tests).
func NewCmdTrace(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	o := &Options{IO: f.IO, ProjectDir: f.ProjectDir}
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
			o.JSON = f.JSON
			if len(args) == 1 {
				o.Run = args[0]
			}
			if writers[o.Format] == nil {
				return cmdutil.Usagef("--format %q: expected tree, chrome or otlp", o.Format)
			}
			if runF != nil {
				return runF(o)
			}
			return traceRun(o)
		},
	}
	cmd.Flags().StringVar(&o.Format, "format", FormatTree, "output format: tree, chrome or otlp")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "write to FILE instead of stdout")
	cmd.Flags().StringVar(&o.Template, "template", "", "a run of this template (run --template), not of the project")
	return cmd
}

// writers render a trace in each --format.
var writers = map[string]func(io.Writer, *trace.Trace) error{
	FormatTree:   trace.WriteTree,
	FormatChrome: trace.WriteChrome,
	FormatOTLP:   trace.WriteOTLP,
}

func traceRun(o *Options) error {
	dir, err := o.ProjectDir()
	if err != nil {
		return err
	}
	if o.Template != "" {
		s, err := template.Open()
		if err != nil {
			return err
		}
		if _, err := s.Get(o.Template); err != nil {
			return err
		}
		dir = s.TemplateDir(o.Template)
	}
	r, err := runlog.Find(dir, o.Run)
	if err != nil {
		return err
	}
	t, err := trace.Load(dir, r)
	if err != nil {
		return err
	}
	if t.Partial {
		fmt.Fprintf(o.IO.ErrOut, "warning: run %s: partial trace\n", r.ID)
	}
	if o.JSON && o.Format == FormatTree && o.Output == "" {
		return cmdutil.PrintJSON(o.IO, struct {
			RunID         string      `json:"run_id"`
			Partial       bool        `json:"partial"`
			Notes         []string    `json:"notes,omitempty"`
			AlignWindowNS int64       `json:"align_window_ns"`
			Root          *trace.Span `json:"root"`
		}{t.RunID, t.Partial, t.Notes, int64(t.AlignWindow), t.Root})
	}
	var b bytes.Buffer
	if err := writers[o.Format](&b, t); err != nil {
		return err
	}
	if o.Output == "" {
		_, err := o.IO.Out.Write(b.Bytes())
		return err
	}
	if err := atomicfile.WriteFile(o.Output, b.Bytes(), 0o644); err != nil {
		return err
	}
	if o.JSON {
		return cmdutil.PrintJSON(o.IO, struct {
			RunID   string `json:"run_id"`
			Format  string `json:"format"`
			Output  string `json:"output"`
			Partial bool   `json:"partial"`
		}{r.ID, o.Format, o.Output, t.Partial})
	}
	o.IO.Progress().Printf("Wrote %s trace of run %s to %s", o.Format, r.ID, o.Output)
	return nil
}
