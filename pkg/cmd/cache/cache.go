// Package cache implements `ukernel cache`.
package cache

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	icache "github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

// NewCmdCache returns `ukernel cache`.
func NewCmdCache(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache <command>",
		Short: "Manage the cache ($XDG_CACHE_HOME/ukernel): downloads and what is derived from them",
		Example: `  ukernel cache prune
  ukernel cache prune --older-than 720h`,
	}
	var olderThan time.Duration
	prune := &cobra.Command{
		Use:     "prune",
		Short:   "Delete cached packages, indices, unpacked kernels, guest inits and boot files",
		Example: "  ukernel cache prune --older-than 720h",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := icache.Open()
			if err != nil {
				return err
			}
			res, err := c.Prune(olderThan)
			if err != nil {
				return err
			}
			if f.JSON {
				return f.PrintJSON(res)
			}
			fmt.Fprintf(f.IO.Out, "Removed %d files (%s) from %s\n", res.Files, icache.HumanSize(res.Bytes), c.Dir)
			return nil
		},
	}
	prune.Flags().DurationVar(&olderThan, "older-than", 0, "only remove entries not used for this long (0: everything; all are fetched or rebuilt on demand)")
	cmd.AddCommand(prune)
	return cmd
}
