// Package cache implements `ukernel cache`.
package cache

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/template"

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
  ukernel cache prune --older-than 720h
  UKERNEL_CACHE_PUSH=1 ukernel cache push --remote registry.example.com/team/cache`,
	}
	cmd.AddCommand(NewCmdPrune(f, nil))
	cmd.AddCommand(NewCmdPush(f, nil))
	return cmd
}

// PruneOptions are the inputs of `cache prune`.
type PruneOptions struct {
	IO        *iostreams.IOStreams
	JSON      bool
	OpenCache func() (*icache.Cache, error)
	OlderThan time.Duration
	// Templates is the template store, whose snapshots are pruned too.
	Templates func() (*template.Store, error)
}

// NewCmdPrune returns `ukernel cache prune`; runF, when set, gets the parsed options instead
// of pruneRun (tests).
func NewCmdPrune(f *cmdutil.Factory, runF func(*PruneOptions) error) *cobra.Command {
	opts := &PruneOptions{IO: f.IO, OpenCache: icache.Open, Templates: template.Open}
	cmd := &cobra.Command{
		Use:     "prune",
		Short:   "Delete cached packages, indices, unpacked kernels, guest inits, boot files and template snapshots",
		Example: "  ukernel cache prune --older-than 720h",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.JSON
			if runF != nil {
				return runF(opts)
			}
			return pruneRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().DurationVar(&opts.OlderThan, "older-than", 0, "only remove entries not used for this long (0: everything; all are fetched or rebuilt on demand)")
	return cmd
}

func pruneRun(ctx context.Context, opts *PruneOptions) error {
	c, err := opts.OpenCache()
	if err != nil {
		return err
	}
	res, err := c.Prune(opts.OlderThan)
	if err != nil {
		return err
	}
	out := struct {
		icache.PruneResult
		template.SnapshotsPruned
	}{PruneResult: res}
	s, err := opts.Templates()
	if err != nil {
		return err
	}
	if out.SnapshotsPruned, err = s.PruneSnapshots(ctx, opts.OlderThan); err != nil {
		return err
	}
	if opts.JSON {
		return cmdutil.PrintJSON(opts.IO, out)
	}
	fmt.Fprintf(opts.IO.Out, "Removed %d files (%s) from %s\n", res.Files, icache.HumanSize(res.Bytes), c.Dir)
	if out.Snapshots > 0 {
		fmt.Fprintf(opts.IO.Out, "Removed %d template snapshots (%s); `ukernel template build NAME --snapshot` takes one again\n", out.Snapshots, icache.HumanSize(out.SnapshotBytes))
	}
	if len(out.KeptInUse) > 0 {
		fmt.Fprintf(opts.IO.Out, "Kept the snapshots of %s: a run or perf is starting from one; prune again once it has started\n", strings.Join(out.KeptInUse, ", "))
	}
	return nil
}
