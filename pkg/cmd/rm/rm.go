// Package rm implements `ukernel rm`: remove the records of finished guests.
package rm

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Options are the inputs of `rm`.
type Options struct {
	IO        *iostreams.IOStreams
	JSON      bool
	OpenStore func() (*runstate.Store, error)

	Names []string
}

// NewCmdRm returns the rm command; runF, when set, gets the parsed options instead of rmRun
// (tests).
func NewCmdRm(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, OpenStore: runstate.Open}
	return &cobra.Command{
		Use:   "rm NAME...",
		Short: "Remove finished guests from ps -a",
		Long: `Rm removes the record of each finished guest NAME (what ps -a lists as exited). A running
guest is refused: stop it first. The run's files under the project's logs/ stay.`,
		Example: `  ukernel rm example-worker`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON, opts.Names = f.JSON, args
			if runF != nil {
				return runF(opts)
			}
			return rmRun(opts)
		},
	}
}

func rmRun(opts *Options) error {
	store, err := opts.OpenStore()
	if err != nil {
		return err
	}
	var errs []error
	removed := []string{}
	for _, name := range opts.Names {
		if err := store.Remove(name); err != nil {
			errs = append(errs, fmt.Errorf("rm %s: %w", name, err))
			continue
		}
		removed = append(removed, name)
	}
	if opts.JSON {
		if err := cmdutil.PrintJSON(opts.IO, map[string][]string{"removed": removed}); err != nil {
			return err
		}
	} else {
		for _, name := range removed {
			fmt.Fprintln(opts.IO.Out, name)
		}
	}
	return errors.Join(errs...)
}
