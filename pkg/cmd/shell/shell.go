// Package shell implements `ukernel shell [NAME]`: an interactive shell in a running guest.
package shell

import (
	"context"
	"log/slog"
	"net"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/internal/session"
	execcmd "github.com/ukernel-dev/ukernel/pkg/cmd/exec"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Options are the inputs of one shell.
type Options struct {
	IO   *iostreams.IOStreams
	Log  *slog.Logger
	Name string // "": the project's guest
	Dir  string // the project directory, for the default name
	User string
	Dial func(ctx context.Context, name string) (net.Conn, error)
}

// NewCmdShell returns the shell command; runF replaces shellRun in tests.
func NewCmdShell(f *cmdutil.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	o := &Options{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "shell [NAME]",
		Short: "Open an interactive shell in a running guest",
		Long: `Shell opens an interactive shell on a terminal in the running guest NAME (default: the
project's guest, named after the project), as root or --user. The local terminal goes raw:
every key, Ctrl-C included, goes to the guest, and the guest's terminal follows its size.
The shell's exit code is shell's own. The user's shell is used when the image has it, else
sh from the image's PATH, else the development image's busybox.

Images packed with --release or --readonly refuse it unless ukernel.toml sets
[debug] shell = true.`,
		Example: `  ukernel shell
  ukernel shell --user app example-worker`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Log = f.Logger
			if len(args) == 1 {
				o.Name = args[0]
			}
			dir, err := f.ProjectDir()
			if err != nil {
				return err
			}
			o.Dir = dir
			if o.Dial == nil {
				o.Dial = func(ctx context.Context, name string) (net.Conn, error) {
					store, err := runstate.Open()
					if err != nil {
						return nil, err
					}
					return session.Dial(ctx, store, name, f.Logger)
				}
			}
			if runF != nil {
				return runF(cmd.Context(), o)
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
		cfg, err := project.Load(o.Dir)
		if err != nil {
			return cmdutil.Usagef("shell: no guest named and no project here to take its name from: %v", err)
		}
		name = cfg.Project.Name
	}
	if err := runstate.ValidateName(name); err != nil {
		return err
	}
	return execcmd.Session(ctx, o.IO, o.Dial, name, abi.ExecRequest{User: o.User, TTY: true})
}
