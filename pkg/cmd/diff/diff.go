// Package diff implements `ukernel diff`: compare two images or two lock files.
package diff

import (
	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/diff"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

// NewCmdDiff returns the diff command.
func NewCmdDiff(f *cmdutil.Factory) *cobra.Command {
	var exitCode bool
	cmd := &cobra.Command{
		Use:         "diff A B",
		Annotations: map[string]string{cmdutil.InterruptibleAnnotation: "true"}, // killed, it leaves nothing half-done
		Short:       "Compare two images or two locks",
		Long: `Diff compares two images (dist/NAME.img) or two lock files (env/ukernel.lock): packages
added, removed and changed with their versions; for images also the files of the root
filesystem added, removed and changed with their sizes, and the ABI, adapter, kernel and size
differences. Identical inputs are reported as such.

Diff is a report: it exits 0 whether or not the inputs differ, unless --exit-code is given,
then it exits 1 when they differ (as git diff --exit-code does).`,
		Example: `  cp dist/api.img /tmp/api-before.img
  ukernel env add --system jq && ukernel pack
  ukernel diff /tmp/api-before.img dist/api.img
  git show HEAD~1:env/ukernel.lock > /tmp/old.lock && ukernel diff /tmp/old.lock env/ukernel.lock`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := diff.Compare(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if f.JSON {
				err = f.PrintJSON(r)
			} else {
				err = diff.WriteText(f.IO.Out, r)
			}
			if err == nil && exitCode && r.Differs() {
				return &cmdutil.ExitError{Code: 1}
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&exitCode, "exit-code", false, "exit 1 when the inputs differ")
	return cmd
}
