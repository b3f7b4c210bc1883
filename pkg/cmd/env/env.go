// Package env implements `ukernel env`: lock, upgrade, show, add and remove.
package env

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/debian"
	"github.com/ukernel-dev/ukernel/internal/lock"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/pypi"
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
		Long: `An environment is a request (ukernel.toml's [env] base, the one place the base is set, and
env/ukernel.env: kernel, system and python packages) and a lock (env/ukernel.lock) that pins its
exact closure by SHA-256. Images are built from the lock only. With --json, add, remove, lock and
upgrade print one JSON document: what changed and the resulting lock.

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
	return lock.Options{Dir: dir, Offline: fl.offline, Locked: fl.locked, Upgrade: upgrade, Reresolve: true,
		Progress: f.IO.ErrOut, TTY: f.IO.ProgressTTY(), Logger: f.Logger}, nil
}

// relock locks o's request and says so on stderr.
func relock(ctx context.Context, f *cmdutil.Factory, o lock.Options) (*lock.Lock, bool, error) {
	l, changed, err := lock.Resolve(ctx, o)
	if err != nil {
		return nil, false, err
	}
	state := "up to date"
	if changed {
		state = fmt.Sprintf("%d packages, kernel %s, %d python wheels", len(l.Packages), kernelName(l), len(l.Python))
	}
	fmt.Fprintf(f.IO.ErrOut, "Locked environment: %s (%s)\n", project.LockFile, state)
	return l, changed, nil
}

// saveAndRelock locks the edited request, then saves it: a request that does not lock (or whose
// locking is interrupted) never reaches env/ukernel.env, where it would break every later
// build. Killed between the two writes, the lock is ahead of the env file, and the next build
// locks the env file's request again.
func saveAndRelock(ctx context.Context, f *cmdutil.Factory, o lock.Options, env *project.Env) (*lock.Lock, bool, error) {
	o.Env = env
	l, changed, err := relock(ctx, f, o)
	if err != nil {
		return nil, false, fmt.Errorf("%w\n%s left unchanged", err, project.EnvFile)
	}
	return l, changed, env.Save(o.Dir)
}

// result is the one JSON document add, remove, lock and upgrade print with --json.
type result struct {
	Added   []string `json:"added,omitempty"`   // as written to env/ukernel.env
	Removed []string `json:"removed,omitempty"` // as they were in env/ukernel.env
	// LockChanged tells whether env/ukernel.lock was written.
	LockChanged bool    `json:"lock_changed"`
	Lock        summary `json:"lock"`
}

// summary describes a lock in a few numbers.
type summary struct {
	File     string `json:"file"`
	Digest   string `json:"digest"`
	Base     string `json:"base"`
	Kernel   string `json:"kernel"`
	Packages int    `json:"packages"`
	Wheels   int    `json:"python_wheels"`
	// Size is the download size of the Debian packages and the kernel, in bytes.
	Size int64 `json:"size"`
}

func summarise(l *lock.Lock) summary {
	return summary{File: project.LockFile, Digest: l.Digest, Base: l.Base, Kernel: kernelName(l),
		Packages: len(l.Packages), Wheels: len(l.Python), Size: l.Size()}
}

// report prints what changed: lines on stderr, and the JSON document with --json.
func report(f *cmdutil.Factory, res result, l *lock.Lock, changed bool, lines []string) error {
	for _, line := range lines {
		fmt.Fprintln(f.IO.ErrOut, line)
	}
	if !f.JSON {
		return nil
	}
	res.LockChanged, res.Lock = changed, summarise(l)
	return f.PrintJSON(res)
}

func kernelName(l *lock.Lock) string {
	if l.Kernel == nil {
		return "none"
	}
	return l.Kernel.Name + " " + l.Kernel.Version
}

func newCmdLock(f *cmdutil.Factory, upgrade bool) *cobra.Command {
	var fl flags
	use, short, example := "lock", "Resolve env/ukernel.env into env/ukernel.lock, keeping locked versions", "  ukernel env lock\n  ukernel env lock --locked --offline   # CI: fail if the lock is stale\n  ukernel env lock --json"
	if upgrade {
		use, short, example = "upgrade", "Re-resolve env/ukernel.lock to the newest available versions", "  ukernel env upgrade\n  ukernel env upgrade --json"
	}
	cmd := &cobra.Command{
		Use: use, Short: short, Example: example, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := options(f, fl, upgrade)
			if err != nil {
				return err
			}
			release, err := f.LockProject(cmd.Context(), o.Dir, cmd.CommandPath())
			if err != nil {
				return err
			}
			defer release()
			l, changed, err := relock(cmd.Context(), f, o)
			if err != nil {
				return err
			}
			return report(f, result{}, l, changed, nil)
		},
	}
	fl.add(cmd)
	return cmd
}

// shown is `env show --json`: the lock, and whether it is up to date with env/ukernel.env.
type shown struct {
	*lock.Lock
	UpToDate bool `json:"up_to_date"`
	// OutOfDate lists how env/ukernel.env differs from the request the lock was made for.
	OutOfDate []string `json:"out_of_date,omitempty"`
}

func newCmdShow(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Show the request, the locked closure with sizes, and totals",
		Long: `Show env/ukernel.env's request and the closure env/ukernel.lock pins. A request the lock was
not made for (env/ukernel.env edited since) is flagged "lock out of date" with what differs;
'ukernel env lock' brings the lock up to date.`,
		Example: "  ukernel env show\n  ukernel env show --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := f.ProjectDir()
			if err != nil {
				return err
			}
			env, err := project.LoadEnv(dir)
			if err != nil {
				return err
			}
			l, err := lock.Load(dir)
			if err != nil {
				return err
			}
			stale := l.Stale(env)
			if f.JSON {
				return f.PrintJSON(shown{Lock: l, UpToDate: len(stale) == 0, OutOfDate: stale})
			}
			w := tabwriter.NewWriter(f.IO.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "Base:\t%s\n", env.Base)
			fmt.Fprintf(w, "Kernel:\t%s (%s)\n", kernelName(l), cache.HumanSize(kernelSize(l)))
			fmt.Fprintf(w, "System:\t%s\n", strings.Join(env.System, " "))
			fmt.Fprintf(w, "Python:\t%s\n", strings.Join(env.Python, " "))
			if len(stale) == 0 {
				fmt.Fprintf(w, "Lock:\tup to date\n")
			} else {
				fmt.Fprintf(w, "Lock:\tlock out of date (%s changed: %s); run ukernel env lock\n", project.EnvFile, strings.Join(stale, ", "))
			}
			for _, a := range l.Archives {
				fmt.Fprintf(w, "Archive:\t%s %s (%s) %s\n", a.Origin, a.Codename, a.Suite, a.Date)
			}
			fmt.Fprintln(w)
			fmt.Fprintln(w, "PACKAGE\tVERSION\tSUITE\tSIZE")
			for _, p := range l.Packages {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", p.Name, p.Version, p.Suite, cache.HumanSize(p.Size))
			}
			c, _ := cache.Open()
			for _, p := range l.Python {
				fmt.Fprintf(w, "%s\t%s\tpython\t%s\n", p.Name, p.Version, wheelSize(c, p))
			}
			fmt.Fprintf(w, "\nTotal:\t%d Debian packages (%s with the kernel), %d python wheels\n", len(l.Packages), cache.HumanSize(l.Size()), len(l.Python))
			fmt.Fprintf(w, "Digest:\t%s\n", l.Digest)
			return w.Flush()
		},
	}
}

// wheelSize is the locked size, else the cached file's (locks written before sizes were
// recorded), else unknown.
func wheelSize(c *cache.Cache, w pypi.Wheel) string {
	if w.Size > 0 {
		return cache.HumanSize(w.Size)
	}
	if c != nil && c.Has(w.SHA256) {
		if fi, err := os.Stat(c.BlobPath(w.SHA256)); err == nil {
			return cache.HumanSize(fi.Size())
		}
	}
	return "-"
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
			o, err := options(f, fl, false)
			if err != nil {
				return err
			}
			release, err := f.LockProject(cmd.Context(), o.Dir, cmd.CommandPath())
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
			if system {
				if added, chosen, err = addSystem(cmd.Context(), o, env, args); err != nil {
					return err
				}
			} else {
				for _, a := range args {
					n := strings.ToLower(project.PythonReqName(a))
					env.Python = slices.DeleteFunc(env.Python, func(r string) bool { return strings.ToLower(project.PythonReqName(r)) == n })
					env.Python = append(env.Python, a)
					added = append(added, a)
				}
			}
			if err := env.Validate(project.EnvFile, nil); err != nil {
				return err
			}
			if o.Locked {
				return fmt.Errorf("--locked: adding packages changes %s", project.LockFile)
			}
			l, changed, err := saveAndRelock(cmd.Context(), f, o, env)
			if err != nil {
				return err
			}
			var lines []string
			for _, a := range added {
				what := a
				if p := chosen[a]; p != nil {
					what = fmt.Sprintf("%s (%s)", p.Name, p.Version)
				} else if w := lockedWheel(l, a); w != nil && !strings.Contains(a, "==") {
					what = fmt.Sprintf("%s (%s)", a, w.Version)
				}
				lines = append(lines, fmt.Sprintf("Added %s to %s", what, project.EnvFile))
			}
			return report(f, result{Added: added}, l, changed, lines)
		},
	}
	cmd.Flags().BoolVar(&system, "system", false, "add Debian packages instead of Python requirements")
	fl.add(cmd)
	return cmd
}

// lockedWheel is the wheel the lock pins for requirement req, if any.
func lockedWheel(l *lock.Lock, req string) *pypi.Wheel {
	n := pypi.Normalize(project.PythonReqName(req))
	for i := range l.Python {
		if l.Python[i].Name == n {
			return &l.Python[i]
		}
	}
	return nil
}

// addSystem maps each argument to one Debian package (see debian.Resolver.Choose) and puts it
// in env; it returns the entries added and the package chosen for each.
func addSystem(ctx context.Context, o lock.Options, env *project.Env, args []string) ([]string, map[string]*debian.Package, error) {
	base, err := project.LookupBase(env.Base)
	if err != nil {
		return nil, nil, err
	}
	arch, err := lock.OpenArchive(ctx, o, base.Codename)
	if err != nil {
		return nil, nil, err
	}
	r := debian.NewResolver(arch.Packages)
	var added []string
	chosen := map[string]*debian.Package{}
	for _, a := range args {
		p, err := r.Choose(a)
		if err != nil {
			return nil, nil, err
		}
		entry := p.Name
		if strings.Contains(a, "=") {
			entry += "=" + p.Version
		}
		env.System = slices.DeleteFunc(env.System, func(s string) bool { n, _, _ := strings.Cut(s, "="); return n == p.Name })
		env.System = append(env.System, entry)
		added = append(added, entry)
		chosen[entry] = p
	}
	return added, chosen, nil
}

func newCmdRemove(f *cmdutil.Factory) *cobra.Command {
	var fl flags
	var system bool
	cmd := &cobra.Command{
		Use:   "remove [--system] PACKAGE...",
		Short: "Remove system or Python packages from env/ukernel.env and lock",
		Long: `Remove packages by name (case does not matter; a version is not needed): Debian packages and
Python requirements, or with --system only Debian packages. As with add, the request is locked
first and env/ukernel.env is written only once it has locked.`,
		Example: "  ukernel env remove requests\n  ukernel env remove --system libssl3",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := options(f, fl, false)
			if err != nil {
				return err
			}
			release, err := f.LockProject(cmd.Context(), o.Dir, cmd.CommandPath())
			if err != nil {
				return err
			}
			defer release()
			env, err := project.LoadEnv(o.Dir)
			if err != nil {
				return err
			}
			var removed []string
			for _, a := range args {
				gone := removeEntries(&env.System, func(s string) bool {
					name, _, _ := strings.Cut(s, "=")
					return strings.EqualFold(name, project.PythonReqName(a))
				})
				if !system {
					gone = append(gone, removeEntries(&env.Python, func(r string) bool {
						return pypi.Normalize(project.PythonReqName(r)) == pypi.Normalize(project.PythonReqName(a))
					})...)
				}
				if len(gone) == 0 {
					return notListed(a, system, env)
				}
				removed = append(removed, gone...)
			}
			if o.Locked {
				return fmt.Errorf("--locked: removing packages changes %s", project.LockFile)
			}
			l, changed, err := saveAndRelock(cmd.Context(), f, o, env)
			if err != nil {
				return err
			}
			var lines []string
			for _, r := range removed {
				lines = append(lines, fmt.Sprintf("Removed %s from %s", r, project.EnvFile))
			}
			return report(f, result{Removed: removed}, l, changed, lines)
		},
	}
	cmd.Flags().BoolVar(&system, "system", false, "remove only Debian packages")
	fl.add(cmd)
	return cmd
}

// removeEntries deletes the entries of list that match and returns them.
func removeEntries(list *[]string, match func(string) bool) []string {
	var gone []string
	*list = slices.DeleteFunc(*list, func(s string) bool {
		if match(s) {
			gone = append(gone, s)
			return true
		}
		return false
	})
	return gone
}

func notListed(name string, system bool, env *project.Env) error {
	listed := slices.Clone(env.System)
	what := "a package"
	if system {
		what = "a system package"
	} else {
		listed = append(listed, env.Python...)
	}
	if len(listed) == 0 {
		return fmt.Errorf("%s is not %s in %s, which lists none", name, what, project.EnvFile)
	}
	return fmt.Errorf("%s is not %s in %s; it lists: %s", name, what, project.EnvFile, strings.Join(listed, ", "))
}
