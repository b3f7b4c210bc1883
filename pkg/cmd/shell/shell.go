// Package shell implements `ukernel shell [NAME]`: an interactive shell in a running guest.
package shell

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/runstate"
	execcmd "github.com/ukernel-dev/ukernel/pkg/cmd/exec"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Options are the inputs of one shell.
type Options struct {
	IO         *iostreams.IOStreams
	Logger     *slog.Logger
	OpenStore  func() (*runstate.Store, error)
	ProjectDir func() (string, error) // for the default name

	Name string // "": the project's guest
	User string
}

// NewCmdShell returns the shell command; runF, when set, gets the parsed options instead of
// shellRun (tests).
func NewCmdShell(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	o := &Options{IO: f.IO, OpenStore: runstate.Open, ProjectDir: f.ProjectDir}
	cmd := &cobra.Command{
		Use:   "shell [NAME]",
		Short: "Open an interactive shell in a running guest",
		Long: `Shell opens an interactive shell on a terminal in the running guest NAME (default: the
project's guest, named after the project), as root or --user. The local terminal goes raw:
every key, Ctrl-C included, goes to the guest, and the guest's terminal follows its size.
Shell exits with the shell's exit code. When stdin is not a terminal (a pipe, a file,
/dev/null), the shell runs without one and ends at the end of its input. The user's shell is used when the image has it, else
sh from the image's PATH, else the development image's busybox.

Images packed with --release or --readonly refuse it unless ukernel.toml sets
[debug] shell = true.`,
		Example: `  ukernel shell
  ukernel shell --user app example-worker`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Logger = f.Logger
			if len(args) == 1 {
				o.Name = args[0]
				if err := runstate.ValidateName(o.Name); err != nil {
					return &cmdutil.UsageError{Err: err}
				}
			}
			if f.JSON {
				return cmdutil.Usagef("shell has no --json: it is interactive")
			}
			if runF != nil {
				return runF(o)
			}
			return shellRun(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVarP(&o.User, "user", "u", "", "run as this user of the image (default root)")
	return cmd
}

func shellRun(ctx context.Context, o *Options) error {
	name := o.Name
	if name == "" {
		dir, err := o.ProjectDir()
		if err != nil {
			return err
		}
		cfg, err := project.Load(dir)
		if err != nil {
			return cmdutil.Usagef("shell: no guest named, and no project here to take its name from: %v", err)
		}
		name = cfg.Project.Name
	}
	return execcmd.Session(ctx, o.IO, o.OpenStore, o.Logger, name, request(o))
}

// request is the session shell asks for: a terminal in the guest when stdin is one here.
func request(o *Options) abi.ExecRequest {
	req := abi.ExecRequest{User: o.User, TTY: isTerminal(o.IO.In)}
	if !req.TTY {
		// A guest terminal turns the end of input into a ^D that a shell not yet at its prompt
		// reads as a NUL, so `ukernel shell </dev/null` (or a pipe) never ended. Without a
		// terminal here the shell gets no terminal there either (as ssh does), and the end of
		// stdin ends it.
		fmt.Fprintln(o.IO.ErrOut, "stdin is not a terminal: the shell runs without one and ends at the end of its input")
	}
	return req
}

// isTerminal reports whether in is a terminal.
func isTerminal(in io.Reader) bool {
	f, ok := in.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
