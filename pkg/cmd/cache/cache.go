// Package cache implements `ukernel cache`.
package cache

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	icache "github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// NewCmdCache returns `ukernel cache`.
func NewCmdCache(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache <command>",
		Short: "Manage the cache ($XDG_CACHE_HOME/ukernel): downloads and what is derived from them",
		Example: `  ukernel cache prune
  ukernel cache prune --older-than 720h`,
	}
	cmd.AddCommand(NewCmdPrune(f, nil))
	return cmd
}

// PruneOptions are the inputs of `cache prune`.
type PruneOptions struct {
	IO        *iostreams.IOStreams
	JSON      bool
	OpenCache func() (*icache.Cache, error)
	OlderThan time.Duration
}

// NewCmdPrune returns `ukernel cache prune`; runF, when set, gets the parsed options instead
// of pruneRun (tests).
func NewCmdPrune(f *cmdutil.Factory, runF func(*PruneOptions) error) *cobra.Command {
	opts := &PruneOptions{IO: f.IO, OpenCache: icache.Open}
	cmd := &cobra.Command{
		Use:     "prune",
		Short:   "Delete cached packages, indices, unpacked kernels, guest inits and boot files",
		Example: "  ukernel cache prune --older-than 720h",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.JSON
			if runF != nil {
				return runF(opts)
			}
			return pruneRun(opts)
		},
	}
	cmd.Flags().DurationVar(&opts.OlderThan, "older-than", 0, "only remove entries not used for this long (0: everything; all are fetched or rebuilt on demand)")
	return cmd
}

func pruneRun(opts *PruneOptions) error {
	c, err := opts.OpenCache()
	if err != nil {
		return err
	}
	res, err := c.Prune(opts.OlderThan)
	if err != nil {
		return err
	}
	if opts.JSON {
		return cmdutil.PrintJSON(opts.IO, res)
	}
	fmt.Fprintf(opts.IO.Out, "Removed %d files (%s) from %s\n", res.Files, icache.HumanSize(res.Bytes), c.Dir)
	return nil
}
