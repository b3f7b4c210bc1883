// Package exec implements `ukernel exec NAME -- CMD [ARGS...]`: run a command in a running
// guest, over its exec channel (no SSH server or network in the guest), and exit with its code.
package exec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/internal/session"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Options are the inputs of one exec.
type Options struct {
	IO        *iostreams.IOStreams
	Logger    *slog.Logger
	OpenStore func() (*runstate.Store, error)

	Name    string
	Argv    []string
	User    string
	Workdir string
	Env     []string
	TTY     bool
}

// NewCmdExec returns the exec command; runF, when set, gets the parsed options instead of
// execRun (tests).
func NewCmdExec(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	o := &Options{IO: f.IO, OpenStore: runstate.Open}
	cmd := &cobra.Command{
		Use:   "exec NAME -- CMD [ARGS...]",
		Short: "Run a command in a running guest",
		Long: `Exec runs a command in the running guest NAME, as root or --user, in the workload's root
filesystem and environment, and exits with the command's exit code. Its stdout and stderr
come back apart; stdin is passed on. Ctrl-C goes to the command; a third one leaves the
session (exit 130). With -t it runs on a terminal of its own in the guest (the local terminal
goes raw, every key goes to the guest, and its size follows). A command without a slash is looked up
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
			if err := runstate.ValidateName(args[0]); err != nil {
				return &cmdutil.UsageError{Err: err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name, o.Argv, o.Logger = args[0], args[1:], f.Logger
			if f.JSON {
				return cmdutil.Usagef("exec has no --json: its stdout is the command's own")
			}
			if runF != nil {
				return runF(o)
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

func execRun(ctx context.Context, o *Options) error {
	return Session(ctx, o.IO, o.OpenStore, o.Logger, o.Name, abi.ExecRequest{Argv: o.Argv, Env: o.Env, Cwd: o.Workdir, User: o.User, TTY: o.TTY})
}

// Session runs req in the guest name and turns its exit code into the command's (shell's too).
func Session(ctx context.Context, io *iostreams.IOStreams, openStore func() (*runstate.Store, error), log *slog.Logger, name string, req abi.ExecRequest) error {
	store, err := openStore()
	if err != nil {
		return err
	}
	conn, err := session.Dial(ctx, store, name, log)
	if err != nil {
		return err
	}
	code, err := session.Attach(ctx, conn, req, session.Streams{In: io.In, Out: io.Out, ErrOut: io.ErrOut}, nil)
	if err != nil {
		if r, ok := err.(*session.RefusedError); ok {
			return &cmdutil.ExitError{Code: r.Code, Err: fmt.Errorf("exec into %s: %s", name, r.Message)}
		}
		if errors.Is(err, session.ErrLeft) {
			return &cmdutil.ExitError{Code: code, Err: err}
		}
		return err
	}
	if code != 0 {
		return &cmdutil.ExitError{Code: code}
	}
	return nil
}
