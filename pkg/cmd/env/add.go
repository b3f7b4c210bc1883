package env

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/debian"
	"github.com/ukernel-dev/ukernel/internal/lock"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

// AddOptions are the inputs of `env add`.
type AddOptions struct {
	Deps
	LockFlags
	System   bool
	Packages []string
}

// NewCmdAdd returns `env add`; runF, when set, gets the parsed options instead of addRun.
func NewCmdAdd(f *cmdutil.Factory, runF func(*AddOptions) error) *cobra.Command {
	opts := &AddOptions{Deps: newDeps(f)}
	cmd := &cobra.Command{
		Use:   "add [--system] PACKAGE...",
		Short: "Add packages to env/ukernel.env and lock",
		Long: `Add Python requirements (default) or, with --system, Debian packages. The request is locked
first and written to env/ukernel.env only once it has locked: what fails to lock changes nothing.

A Debian package is NAME or NAME=VERSION (case does not matter). A name that is not a package
is taken only when it means one package without guessing: a virtual name exactly one package
provides, or a library stem followed by nothing but a soversion ("libssl" -> libssl3, the only
lib<name><soversion> package). Anything else is refused with the candidates: several
providers or libraries, Debian's Provides ("libz": zlib1g provides libz1), similar names.`,
		Example: "  ukernel env add requests==2.32.3\n  ukernel env add --system libssl\n  ukernel env add --system curl=7.88.1-10+deb12u12\n  ukernel env add --json flask",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.set(f, cmd)
			opts.Packages = args
			if runF != nil {
				return runF(opts)
			}
			return addRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.System, "system", false, "add Debian packages instead of Python requirements")
	opts.LockFlags.add(cmd)
	return cmd
}

func addRun(ctx context.Context, opts *AddOptions) error {
	o, release, err := opts.begin(ctx, opts.LockFlags, false)
	if err != nil {
		return err
	}
	defer release()
	env, err := project.LoadEnv(o.Dir)
	if err != nil {
		return err
	}
	var added []string
	var chosen map[string]*debian.Package
	if opts.System {
		if added, chosen, err = lock.AddSystem(ctx, o, env, opts.Packages); err != nil {
			return err
		}
	} else {
		added = lock.AddPython(env, opts.Packages)
	}
	if err := env.Validate(project.EnvFile, nil); err != nil {
		return err
	}
	if o.Locked {
		return fmt.Errorf("--locked: adding packages changes %s", project.LockFile)
	}
	l, changed, err := lock.ResolveEdited(ctx, o, env)
	if err != nil {
		return err
	}
	opts.locked(l, changed)
	var lines []string
	for _, a := range added {
		what := a
		if p := chosen[a]; p != nil {
			what = fmt.Sprintf("%s (%s)", p.Name, p.Version)
		} else if w := l.Wheel(a); w != nil && !strings.Contains(a, "==") {
			what = fmt.Sprintf("%s (%s)", a, w.Version)
		}
		lines = append(lines, fmt.Sprintf("Added %s to %s", what, project.EnvFile))
	}
	return opts.report(result{Added: added}, l, changed, lines)
}
