// Package exec implements `ukernel exec NAME -- CMD [ARGS...]`: run a command in a running
// guest, over its exec channel (no SSH server or network in the guest), and exit with its code.
package exec

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/internal/session"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Options are the inputs of one exec.
type Options struct {
	IO      *iostreams.IOStreams
	Log     *slog.Logger
	Name    string
	Argv    []string
	User    string
	Workdir string
	Env     []string
	TTY     bool
	// Dial connects to the guest's exec channel (session.Dial; tests inject their own).
	Dial func(ctx context.Context, name string) (net.Conn, error)
}

// NewCmdExec returns the exec command; runF replaces execRun in tests.
func NewCmdExec(f *cmdutil.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	o := &Options{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "exec NAME -- CMD [ARGS...]",
		Short: "Run a command in a running guest",
		Long: `Exec runs a command in the running guest NAME, as root or --user, in the workload's root
filesystem and environment, and exits with the command's exit code. Its stdout and stderr
come back apart; stdin is passed on. With -t it runs on a terminal of its own in the guest
(the local terminal goes raw and its size follows). A command without a slash is looked up
in the image's PATH, then among the development image's tools (busybox).

Exec goes over a channel of the VMM's own (a virtio-serial port under QEMU, vsock under
Firecracker): the guest needs no network and no SSH server. Images packed with --release or
--readonly refuse it unless ukernel.toml sets [debug] shell = true. Each session is recorded
in the run's events (who, what, exit code).`,
		Example: `  ukernel exec example-worker -- ls -l /app
  echo hello | ukernel exec example-worker -- cat
  ukernel exec -t --user app example-worker -- top`,
		Args: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if len(args) < 2 || dash != 1 {
				return cmdutil.Usagef("exec takes a guest name, then -- and the command: ukernel exec NAME -- CMD [ARGS...]")
			}
			return runstate.ValidateName(args[0])
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name, o.Argv, o.Log = args[0], args[1:], f.Logger
			if o.Dial == nil {
				o.Dial = dialer(f)
			}
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return execRun(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVarP(&o.User, "user", "u", "", "run as this user of the image (default root)")
	cmd.Flags().StringVarP(&o.Workdir, "workdir", "w", "", "working directory in the guest (default the workload's)")
	cmd.Flags().StringArrayVarP(&o.Env, "env", "e", nil, "set KEY=VALUE in the command's environment (repeatable)")
	cmd.Flags().BoolVarP(&o.TTY, "tty", "t", false, "run on a terminal in the guest")
	return cmd
}

// dialer connects through the run state of the guests.
func dialer(f *cmdutil.Factory) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, name string) (net.Conn, error) {
		store, err := runstate.Open()
		if err != nil {
			return nil, err
		}
		return session.Dial(ctx, store, name, f.Logger)
	}
}

func execRun(ctx context.Context, o *Options) error {
	return Session(ctx, o.IO, o.Dial, o.Name, abi.ExecRequest{Argv: o.Argv, Env: o.Env, Cwd: o.Workdir, User: o.User, TTY: o.TTY})
}

// Session runs req in the guest name and turns its exit code into the command's.
func Session(ctx context.Context, io *iostreams.IOStreams, dial func(context.Context, string) (net.Conn, error), name string, req abi.ExecRequest) error {
	conn, err := dial(ctx, name)
	if err != nil {
		return err
	}
	code, err := session.Attach(ctx, conn, req, session.Streams{In: io.In, Out: io.Out, ErrOut: io.ErrOut}, nil)
	if err != nil {
		if r, ok := err.(*session.RefusedError); ok {
			return &cmdutil.ExitError{Code: r.Code, Err: fmt.Errorf("exec into %s: %s", name, r.Message)}
		}
		return err
	}
	if code != 0 {
		return &cmdutil.ExitError{Code: code}
	}
	return nil
}
