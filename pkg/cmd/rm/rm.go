// Package rm implements `ukernel rm`: remove the records of finished guests.
package rm

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

// NewCmdRm returns the rm command.
func NewCmdRm(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME...",
		Short: "Remove finished guests from ps -a",
		Long: `Rm removes the record of each finished guest NAME (what ps -a lists as exited). A running
guest is refused: stop it first. The run's files under the project's logs/ stay.`,
		Example: `  ukernel rm example-worker`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := runstate.Open()
			if err != nil {
				return err
			}
			var errs []error
			removed := []string{}
			for _, name := range args {
				if err := store.Remove(name); err != nil {
					errs = append(errs, fmt.Errorf("rm %s: %w", name, err))
					continue
				}
				removed = append(removed, name)
			}
			if f.JSON {
				if err := f.PrintJSON(map[string][]string{"removed": removed}); err != nil {
					return err
				}
			} else {
				for _, name := range removed {
					fmt.Fprintln(f.IO.Out, name)
				}
			}
			return errors.Join(errs...)
		},
	}
}
