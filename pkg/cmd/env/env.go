// Package env implements `ukernel env`: lock, upgrade, show, add and remove.
package env

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/debian"
	"github.com/ukernel-dev/ukernel/internal/lock"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

type flags struct {
	locked, offline bool
}

func (fl *flags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&fl.locked, "locked", false, "fail if env/ukernel.lock would change")
	cmd.Flags().BoolVar(&fl.offline, "offline", false, "use only the cache, never the network")
}

// NewCmdEnv returns `ukernel env`.
func NewCmdEnv(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "env <command>",
		Short: "Manage the pinned environment (env/ukernel.env and env/ukernel.lock)",
		Long: `An environment is a request (env/ukernel.env: base, kernel, system and python packages) and a
lock (env/ukernel.lock) that pins its exact closure by SHA-256. Images are built from the lock only.

Debian packages come from the mirror in ukernel.toml ([env] mirror), else $UKERNEL_DEBIAN_MIRROR,
else the host's apt sources; indices are verified against the Debian archive keyring.`,
		Example: `  ukernel env add --system libssl
  ukernel env add requests==2.32.3
  ukernel env lock --locked
  ukernel env show --json`,
	}
	cmd.AddCommand(newCmdLock(f, false), newCmdLock(f, true), newCmdShow(f), newCmdAdd(f), newCmdRemove(f))
	return cmd
}

func options(f *cmdutil.Factory, fl flags, upgrade bool) (lock.Options, error) {
	dir, err := f.ProjectDir()
	if err != nil {
		return lock.Options{}, err
	}
	return lock.Options{Dir: dir, Offline: fl.offline, Locked: fl.locked, Upgrade: upgrade,
		Progress: f.IO.ErrOut, TTY: f.IO.ProgressTTY(), Logger: f.Logger}, nil
}

func relock(ctx context.Context, f *cmdutil.Factory, o lock.Options) (*lock.Lock, error) {
	l, changed, err := lock.Resolve(ctx, o)
	if err != nil {
		return nil, err
	}
	state := "up to date"
	if changed {
		state = fmt.Sprintf("%d packages, kernel %s, %d python wheels", len(l.Packages), kernelName(l), len(l.Python))
	}
	fmt.Fprintf(f.IO.ErrOut, "Locked environment: %s (%s)\n", project.LockFile, state)
	return l, nil
}

// saveAndRelock locks the edited request, then saves it: a request that does not lock (or whose
// locking is interrupted) never reaches env/ukernel.env, where it would break every later
// build. Killed between the two writes, the lock is ahead of the env file, and the next build
// locks the env file's request again.
func saveAndRelock(ctx context.Context, f *cmdutil.Factory, o lock.Options, env *project.Env) error {
	o.Env = env
	if _, err := relock(ctx, f, o); err != nil {
		return fmt.Errorf("%w\n%s left unchanged", err, project.EnvFile)
	}
	return env.Save(o.Dir)
}

func kernelName(l *lock.Lock) string {
	if l.Kernel == nil {
		return "none"
	}
	return l.Kernel.Name + " " + l.Kernel.Version
}

func newCmdLock(f *cmdutil.Factory, upgrade bool) *cobra.Command {
	var fl flags
	use, short, example := "lock", "Resolve env/ukernel.env into env/ukernel.lock, keeping locked versions", "  ukernel env lock\n  ukernel env lock --locked --offline   # CI: fail if the lock is stale"
	if upgrade {
		use, short, example = "upgrade", "Re-resolve env/ukernel.lock to the newest available versions", "  ukernel env upgrade"
	}
	cmd := &cobra.Command{
		Use: use, Short: short, Example: example, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := options(f, fl, upgrade)
			if err != nil {
				return err
			}
			_, err = relock(cmd.Context(), f, o)
			return err
		},
	}
	fl.add(cmd)
	return cmd
}

func newCmdShow(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use:     "show",
		Short:   "Show the request, the locked closure with sizes, and totals",
		Example: "  ukernel env show\n  ukernel env show --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := f.ProjectDir()
			if err != nil {
				return err
			}
			l, err := lock.Load(dir)
			if err != nil {
				return err
			}
			if f.JSON {
				return f.PrintJSON(l)
			}
			w := tabwriter.NewWriter(f.IO.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "Base:\t%s\n", l.Request.Base)
			fmt.Fprintf(w, "Kernel:\t%s (%s)\n", kernelName(l), cache.HumanSize(kernelSize(l)))
			fmt.Fprintf(w, "System:\t%s\n", strings.Join(l.Request.System, " "))
			fmt.Fprintf(w, "Python:\t%s\n", strings.Join(l.Request.Python, " "))
			for _, a := range l.Archives {
				fmt.Fprintf(w, "Archive:\t%s %s (%s) %s\n", a.Origin, a.Codename, a.Suite, a.Date)
			}
			fmt.Fprintln(w)
			fmt.Fprintln(w, "PACKAGE\tVERSION\tSUITE\tSIZE")
			for _, p := range l.Packages {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", p.Name, p.Version, p.Suite, cache.HumanSize(p.Size))
			}
			for _, p := range l.Python {
				fmt.Fprintf(w, "%s\t%s\tpython\t%s\n", p.Name, p.Version, p.Filename)
			}
			fmt.Fprintf(w, "\nTotal:\t%d Debian packages (%s with the kernel), %d python wheels\n", len(l.Packages), cache.HumanSize(l.Size()), len(l.Python))
			fmt.Fprintf(w, "Digest:\t%s\n", l.Digest)
			return w.Flush()
		},
	}
}

func kernelSize(l *lock.Lock) int64 {
	if l.Kernel == nil {
		return 0
	}
	return l.Kernel.Size
}

func newCmdAdd(f *cmdutil.Factory) *cobra.Command {
	var fl flags
	var system bool
	cmd := &cobra.Command{
		Use:   "add [--system] PACKAGE...",
		Short: "Add packages to env/ukernel.env and lock",
		Long: `Add Python requirements (default) or, with --system, Debian packages. A Debian package may
be given as NAME, NAME=VERSION, or a stem ukernel can map (libssl -> libssl3); it says which
package it chose, and lists candidates when the name is ambiguous or unknown.`,
		Example: "  ukernel env add requests==2.32.3\n  ukernel env add --system libssl\n  ukernel env add --system curl=7.88.1-10+deb12u12",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := options(f, fl, false)
			if err != nil {
				return err
			}
			env, err := project.LoadEnv(o.Dir)
			if err != nil {
				return err
			}
			if system {
				if err := addSystem(cmd.Context(), f, o, env, args); err != nil {
					return err
				}
			} else {
				for _, a := range args {
					n := strings.ToLower(project.PythonReqName(a))
					env.Python = slices.DeleteFunc(env.Python, func(r string) bool { return strings.ToLower(project.PythonReqName(r)) == n })
					env.Python = append(env.Python, a)
					fmt.Fprintf(f.IO.ErrOut, "Added %s to %s\n", a, project.EnvFile)
				}
			}
			if err := env.Validate(project.EnvFile, nil); err != nil {
				return err
			}
			if o.Locked {
				return fmt.Errorf("--locked: adding packages changes %s", project.LockFile)
			}
			return saveAndRelock(cmd.Context(), f, o, env)
		},
	}
	cmd.Flags().BoolVar(&system, "system", false, "add Debian packages instead of Python requirements")
	fl.add(cmd)
	return cmd
}

func addSystem(ctx context.Context, f *cmdutil.Factory, o lock.Options, env *project.Env, args []string) error {
	base, err := project.LookupBase(env.Base)
	if err != nil {
		return err
	}
	arch, err := lock.OpenArchive(ctx, o, base.Codename)
	if err != nil {
		return err
	}
	r := debian.NewResolver(arch.Packages)
	for _, a := range args {
		p, err := r.Choose(a)
		if err != nil {
			return err
		}
		entry := p.Name
		if strings.Contains(a, "=") {
			entry += "=" + p.Version
		}
		env.System = slices.DeleteFunc(env.System, func(s string) bool { n, _, _ := strings.Cut(s, "="); return n == p.Name })
		env.System = append(env.System, entry)
		fmt.Fprintf(f.IO.ErrOut, "Added %s (%s) to %s\n", p.Name, p.Version, project.EnvFile)
	}
	return nil
}

func newCmdRemove(f *cmdutil.Factory) *cobra.Command {
	var fl flags
	cmd := &cobra.Command{
		Use:     "remove PACKAGE...",
		Short:   "Remove system or Python packages from env/ukernel.env and lock",
		Example: "  ukernel env remove requests libssl3",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := options(f, fl, false)
			if err != nil {
				return err
			}
			env, err := project.LoadEnv(o.Dir)
			if err != nil {
				return err
			}
			for _, a := range args {
				n := len(env.System) + len(env.Python)
				env.System = slices.DeleteFunc(env.System, func(s string) bool { name, _, _ := strings.Cut(s, "="); return name == a })
				env.Python = slices.DeleteFunc(env.Python, func(r string) bool {
					return strings.EqualFold(project.PythonReqName(r), project.PythonReqName(a))
				})
				if len(env.System)+len(env.Python) == n {
					return fmt.Errorf("%s is not in %s", a, project.EnvFile)
				}
				fmt.Fprintf(f.IO.ErrOut, "Removed %s from %s\n", a, project.EnvFile)
			}
			if o.Locked {
				return fmt.Errorf("--locked: removing packages changes %s", project.LockFile)
			}
			return saveAndRelock(cmd.Context(), f, o, env)
		},
	}
	fl.add(cmd)
	return cmd
}
