// Package env implements `ukernel env`: lock, upgrade, show, add and remove.
package env

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/lock"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

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
	cmd.AddCommand(NewCmdLock(f, false, nil), NewCmdLock(f, true, nil), NewCmdShow(f, nil), NewCmdAdd(f, nil), NewCmdRemove(f, nil))
	return cmd
}

// Deps are what the env commands that lock take from the Factory; Command is the command's
// path, which the project lock names to a command waiting for it.
type Deps struct {
	IO          *iostreams.IOStreams
	ProjectDir  func() (string, error)
	LockProject func(ctx context.Context, dir, command string) (release func(), err error)
	JSON        bool
	Logger      *slog.Logger
	Command     string
}

func newDeps(f *cmdutil.Factory) Deps {
	return Deps{IO: f.IO, ProjectDir: f.ProjectDir, LockProject: f.LockProject}
}

// set fills in what is known only once the command line is parsed.
func (d *Deps) set(f *cmdutil.Factory, cmd *cobra.Command) {
	d.JSON, d.Logger, d.Command = f.JSON, f.Logger, cmd.CommandPath()
}

// LockFlags are the flags of the commands that lock.
type LockFlags struct {
	Locked, Offline bool
}

func (fl *LockFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&fl.Locked, "locked", false, "fail if env/ukernel.lock would change")
	cmd.Flags().BoolVar(&fl.Offline, "offline", false, "use only the cache, never the network")
}

// begin takes the project lock for d's command and returns the options to lock with.
func (d *Deps) begin(ctx context.Context, fl LockFlags, upgrade bool) (o lock.Options, release func(), err error) {
	dir, err := d.ProjectDir()
	if err != nil {
		return lock.Options{}, nil, err
	}
	if release, err = d.LockProject(ctx, dir, d.Command); err != nil {
		return lock.Options{}, nil, err
	}
	return lock.Options{Dir: dir, Offline: fl.Offline, Locked: fl.Locked, Upgrade: upgrade, Reresolve: true,
		Progress: d.IO.ErrOut, TTY: d.IO.ProgressTTY(), Logger: d.Logger}, release, nil
}

// locked says on stderr how the lock came out.
func (d *Deps) locked(l *lock.Lock, changed bool) {
	state := "up to date"
	if changed {
		state = fmt.Sprintf("%d packages, kernel %s, %d python wheels", len(l.Packages), kernelName(l), len(l.Python))
	}
	fmt.Fprintf(d.IO.ErrOut, "Locked environment: %s (%s)\n", project.LockFile, state)
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
func (d *Deps) report(res result, l *lock.Lock, changed bool, lines []string) error {
	for _, line := range lines {
		fmt.Fprintln(d.IO.ErrOut, line)
	}
	if !d.JSON {
		return nil
	}
	res.LockChanged, res.Lock = changed, summarise(l)
	return cmdutil.PrintJSON(d.IO, res)
}

func kernelName(l *lock.Lock) string {
	if l.Kernel == nil {
		return "none"
	}
	return l.Kernel.Name + " " + l.Kernel.Version
}
