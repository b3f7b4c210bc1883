// Package build is the `ukernel build` command.
package build

import (
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/pipeline"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

type options struct {
	release, offline, locked bool
	target                   string
}

// NewCmdBuild returns `ukernel build`.
func NewCmdBuild(f *cmdutil.Factory) *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build the workload bundle and the adapter runtime",
		Long: `Build writes build/bundle.tgz (src/ and the locked language packages, installed for
the guest) and build/adapter/<runtime>/ (the runtime assembled from the locked Debian
packages, trimmed). It locks the environment first when env/ukernel.lock is missing, and
redoes nothing when no input changed.`,
		Example: `  ukernel build
  ukernel build --release --offline`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := f.ProjectDir()
			if err != nil {
				return err
			}
			release, err := f.LockProject(cmd.Context(), dir, cmd.CommandPath())
			if err != nil {
				return err
			}
			defer release()
			po := pipeline.Options{Dir: dir, Offline: o.offline, Locked: o.locked, Release: o.release, Target: o.target,
				Progress: f.IO.Progress(), Logger: f.Logger}
			p, err := pipeline.Load(cmd.Context(), po)
			if err != nil {
				return err
			}
			r, err := pipeline.Build(cmd.Context(), p, po)
			if err != nil {
				return err
			}
			bundle, _ := filepath.Rel(dir, r.Bundle)
			adapter, _ := filepath.Rel(dir, r.AdapterDir)
			if f.JSON {
				return f.PrintJSON(map[string]any{"bundle": bundle, "adapter": adapter, "runtime": r.Runtime, "cached": r.Cached, "digest": r.Digest})
			}
			if r.Cached {
				f.Progress("Up to date (no input changed)")
			}
			f.Progress("Built workload bundle: %s", bundle)
			f.Progress("Adapter runtime: %s", adapter)
			return nil
		},
	}
	cmd.Flags().BoolVar(&o.release, "release", false, "optimised build for production")
	cmd.Flags().StringVar(&o.target, "target", "", "override the adapter (python, shell, go, node)")
	cmd.Flags().BoolVar(&o.offline, "offline", false, "use only the local cache; fail if anything must be fetched")
	cmd.Flags().BoolVar(&o.locked, "locked", false, "fail if "+project.LockFile+" is missing or would change")
	return cmd
}
