// Package diff implements `ukernel diff`: compare two images or two lock files.
package diff

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/diff"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Options are the inputs of `diff`.
type Options struct {
	IO       *iostreams.IOStreams
	JSON     bool
	A, B     string // as given: relative to the working directory
	ExitCode bool
}

// NewCmdDiff returns the diff command; runF, when set, gets the parsed options instead of
// diffRun (tests).
func NewCmdDiff(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO}
	cmd := &cobra.Command{
		Use:         "diff A B",
		Annotations: map[string]string{cmdutil.InterruptibleAnnotation: "true"}, // killed, it leaves nothing half-done
		Short:       "Compare two images or two locks",
		Long: `Diff compares two images (dist/NAME.img, or template:NAME[@REV] for a template's revision)
or two lock files (env/ukernel.lock): packages
added, removed and changed with their versions; for images also the files of the root
filesystem added, removed and changed with their sizes, and the ABI, adapter, kernel and size
differences. Identical inputs are reported as such.

Diff is a report: it exits 0 whether or not the inputs differ, unless --exit-code is given,
then it exits 1 when they differ (as git diff --exit-code does).`,
		Example: `  cp dist/api.img /tmp/api-before.img
  ukernel env add --system jq && ukernel pack
  ukernel diff /tmp/api-before.img dist/api.img
  ukernel diff template:api@3f2a9c01 template:api
  git show HEAD~1:env/ukernel.lock > /tmp/old.lock && ukernel diff /tmp/old.lock env/ukernel.lock`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON, opts.A, opts.B = f.JSON, args[0], args[1]
			if runF != nil {
				return runF(opts)
			}
			return diffRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.ExitCode, "exit-code", false, "exit 1 when the inputs differ")
	return cmd
}

func diffRun(ctx context.Context, opts *Options) error {
	a, err := template.ImageArg(opts.A)
	if err != nil {
		return err
	}
	b, err := template.ImageArg(opts.B)
	if err != nil {
		return err
	}
	r, err := diff.Compare(ctx, a, b)
	if err != nil {
		return err
	}
	if opts.JSON {
		err = cmdutil.PrintJSON(opts.IO, r)
	} else {
		err = diff.WriteText(opts.IO.Out, r)
	}
	if err == nil && opts.ExitCode && r.Differs() {
		return &cmdutil.ExitError{Code: 1}
	}
	return err
}
