package env

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/lock"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/pypi"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// ShowOptions are the inputs of `env show`.
type ShowOptions struct {
	IO         *iostreams.IOStreams
	ProjectDir func() (string, error)
	JSON       bool
}

// shown is `env show --json`: the lock, and whether it is up to date with env/ukernel.env.
type shown struct {
	*lock.Lock
	UpToDate bool `json:"up_to_date"`
	// OutOfDate lists how env/ukernel.env differs from the request the lock was made for.
	OutOfDate []string `json:"out_of_date,omitempty"`
}

// NewCmdShow returns `env show`; runF, when set, gets the parsed options instead of showRun.
func NewCmdShow(f *cmdutil.Factory, runF func(*ShowOptions) error) *cobra.Command {
	opts := &ShowOptions{IO: f.IO, ProjectDir: f.ProjectDir}
	return &cobra.Command{
		Use:   "show",
		Short: "Show the request, the locked closure with sizes, and totals",
		Long: `Show env/ukernel.env's request and the closure env/ukernel.lock pins. A request the lock was
not made for (env/ukernel.env edited since) is flagged "lock out of date" with what differs;
'ukernel env lock' brings the lock up to date.`,
		Example: "  ukernel env show\n  ukernel env show --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.JSON
			if runF != nil {
				return runF(opts)
			}
			return showRun(opts)
		},
	}
}

func showRun(opts *ShowOptions) error {
	dir, err := opts.ProjectDir()
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
	if opts.JSON {
		return cmdutil.PrintJSON(opts.IO, shown{Lock: l, UpToDate: len(stale) == 0, OutOfDate: stale})
	}
	w := tabwriter.NewWriter(opts.IO.Out, 0, 4, 2, ' ', 0)
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
