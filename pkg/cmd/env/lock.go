package env

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/lock"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

// LockOptions are the inputs of `env lock` and `env upgrade`.
type LockOptions struct {
	Deps
	LockFlags
	Upgrade bool
}

// NewCmdLock returns `env lock`, or with upgrade `env upgrade`; runF, when set, gets the parsed
// options instead of lockRun (tests).
func NewCmdLock(f *cmdutil.Factory, upgrade bool, runF func(*LockOptions) error) *cobra.Command {
	opts := &LockOptions{Deps: newDeps(f), Upgrade: upgrade}
	use, short, example := "lock", "Resolve env/ukernel.env into env/ukernel.lock, keeping locked versions", "  ukernel env lock\n  ukernel env lock --locked --offline   # CI: fail if the lock is stale\n  ukernel env lock --json"
	if upgrade {
		use, short, example = "upgrade", "Re-resolve env/ukernel.lock to the newest available versions", "  ukernel env upgrade\n  ukernel env upgrade --json"
	}
	cmd := &cobra.Command{
		Use: use, Short: short, Example: example, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.set(f, cmd)
			if runF != nil {
				return runF(opts)
			}
			return lockRun(cmd.Context(), opts)
		},
	}
	opts.LockFlags.add(cmd)
	return cmd
}

func lockRun(ctx context.Context, opts *LockOptions) error {
	o, release, err := opts.begin(ctx, opts.LockFlags, opts.Upgrade)
	if err != nil {
		return err
	}
	defer release()
	l, changed, err := lock.Resolve(ctx, o)
	if err != nil {
		return err
	}
	opts.locked(l, changed)
	return opts.report(result{}, l, changed, nil)
}
