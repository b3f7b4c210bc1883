// Package build is the `ukernel build` command.
package build

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/pipeline"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Options are the inputs of `build`.
type Options struct {
	IO         *iostreams.IOStreams
	ProjectDir func() (string, error)
	JSON       bool
	Logger     *slog.Logger
	Command    string // named by the project lock to a command waiting for it

	Release, Offline, Locked bool
	Target                   string
}

// NewCmdBuild returns `ukernel build`; runF, when set, gets the parsed options instead of
// buildRun (tests).
func NewCmdBuild(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, ProjectDir: f.ProjectDir}
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
			opts.JSON, opts.Logger, opts.Command = f.JSON, f.Logger, cmd.CommandPath()
			if runF != nil {
				return runF(opts)
			}
			return buildRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Release, "release", false, "optimised build for production")
	cmd.Flags().StringVar(&opts.Target, "target", "", "override the adapter ("+strings.Join(project.Languages(), ", ")+")")
	cmd.Flags().BoolVar(&opts.Offline, "offline", false, "use only the local cache; fail if anything must be fetched")
	cmd.Flags().BoolVar(&opts.Locked, "locked", false, "fail if "+project.LockFile+" is missing or would change")
	return cmd
}

func buildRun(ctx context.Context, opts *Options) error {
	dir, err := opts.ProjectDir()
	if err != nil {
		return err
	}
	progress := opts.IO.Progress()
	po := pipeline.Options{Dir: dir, Offline: opts.Offline, Locked: opts.Locked, Release: opts.Release, Target: opts.Target,
		Progress: progress, Logger: opts.Logger, Command: opts.Command}
	p, release, err := pipeline.Open(ctx, po)
	if err != nil {
		return err
	}
	defer release()
	r, err := pipeline.Build(ctx, p, po)
	if err != nil {
		return err
	}
	bundle, _ := filepath.Rel(dir, r.Bundle)
	adapter, _ := filepath.Rel(dir, r.AdapterDir)
	if opts.JSON {
		return cmdutil.PrintJSON(opts.IO, map[string]any{"bundle": bundle, "adapter": adapter, "runtime": r.Runtime, "cached": r.Cached, "digest": r.Digest})
	}
	if r.Cached {
		progress.Printf("Up to date (no input changed)")
	}
	progress.Printf("Built workload bundle: %s", bundle)
	progress.Printf("Adapter runtime: %s", adapter)
	return nil
}
