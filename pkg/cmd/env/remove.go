package env

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/lock"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

// RemoveOptions are the inputs of `env remove`.
type RemoveOptions struct {
	Deps
	LockFlags
	System   bool // Debian packages only
	Packages []string
}

// NewCmdRemove returns `env remove`; runF, when set, gets the parsed options instead of
// removeRun.
func NewCmdRemove(f *cmdutil.Factory, runF func(*RemoveOptions) error) *cobra.Command {
	opts := &RemoveOptions{Deps: newDeps(f)}
	cmd := &cobra.Command{
		Use:   "remove [--system] PACKAGE...",
		Short: "Remove system or Python packages from env/ukernel.env and lock",
		Long: `Remove packages by name (case does not matter; a version is not needed): Debian packages and
Python requirements, or with --system only Debian packages. As with add, the request is locked
first and env/ukernel.env is written only once it has locked.`,
		Example: "  ukernel env remove requests\n  ukernel env remove --system libssl3",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.set(f, cmd)
			opts.Packages = args
			if runF != nil {
				return runF(opts)
			}
			return removeRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.System, "system", false, "remove only Debian packages")
	opts.LockFlags.add(cmd)
	return cmd
}

func removeRun(ctx context.Context, opts *RemoveOptions) error {
	o, release, err := opts.begin(ctx, opts.LockFlags, false)
	if err != nil {
		return err
	}
	defer release()
	env, err := project.LoadEnv(o.Dir)
	if err != nil {
		return err
	}
	removed, err := lock.Remove(env, opts.Packages, opts.System)
	if err != nil {
		return err
	}
	if o.Locked {
		return fmt.Errorf("--locked: removing packages changes %s", project.LockFile)
	}
	l, changed, err := lock.ResolveEdited(ctx, o, env)
	if err != nil {
		return err
	}
	opts.locked(l, changed)
	var lines []string
	for _, r := range removed {
		lines = append(lines, fmt.Sprintf("Removed %s from %s", r, project.EnvFile))
	}
	return opts.report(result{Removed: removed}, l, changed, lines)
}
