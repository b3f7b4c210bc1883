// Package root assembles the ukernel command tree.
package root

import (
	"errors"
	"log"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	buildcmd "github.com/ukernel-dev/ukernel/pkg/cmd/build"
	cachecmd "github.com/ukernel-dev/ukernel/pkg/cmd/cache"
	diffcmd "github.com/ukernel-dev/ukernel/pkg/cmd/diff"
	"github.com/ukernel-dev/ukernel/pkg/cmd/doctor"
	envcmd "github.com/ukernel-dev/ukernel/pkg/cmd/env"
	initcmd "github.com/ukernel-dev/ukernel/pkg/cmd/init"
	"github.com/ukernel-dev/ukernel/pkg/cmd/inspect"
	"github.com/ukernel-dev/ukernel/pkg/cmd/logs"
	"github.com/ukernel-dev/ukernel/pkg/cmd/pack"
	perfcmd "github.com/ukernel-dev/ukernel/pkg/cmd/perf"
	"github.com/ukernel-dev/ukernel/pkg/cmd/ps"
	"github.com/ukernel-dev/ukernel/pkg/cmd/run"
	"github.com/ukernel-dev/ukernel/pkg/cmd/stop"
	tracecmd "github.com/ukernel-dev/ukernel/pkg/cmd/trace"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

// NewCmdRoot returns the root command. Subcommands are registered here and only once they work.
func NewCmdRoot(f *cmdutil.Factory, version string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ukernel <command> [flags]",
		Short: "Build, run and ship workloads as reproducible microVM images",
		Long: `ukernel turns a project (ukernel.toml, src/, env/) into one bootable, reproducible
microVM image and runs it locally with one command.`,
		Example: `  ukernel init --name example-worker --lang python --template worker
  ukernel run`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			f.Interruptible.Store(cmd.Annotations[cmdutil.InterruptibleAnnotation] == "true")
			level := slog.LevelWarn
			if f.Verbose {
				level = slog.LevelDebug
			}
			f.Logger = slog.New(slog.NewTextHandler(f.IO.ErrOut, &slog.HandlerOptions{Level: level}))
			// Libraries that write to the standard logger (u-root's bzImage reader warns about
			// signed kernels) speak at debug level, not over the command's own output.
			log.SetFlags(0)
			log.SetOutput(debugWriter{f.Logger})
		},
	}
	cmd.PersistentFlags().StringVarP(&f.Dir, "dir", "C", ".", "project directory")
	cmd.PersistentFlags().BoolVar(&f.JSON, "json", false, "print machine-readable JSON on stdout")
	cmd.PersistentFlags().BoolVarP(&f.Verbose, "verbose", "v", false, "print diagnostics on stderr")
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &cmdutil.UsageError{Err: err}
	})

	// Commands (one package each under pkg/cmd).
	cmd.AddCommand(run.NewCmdRun(f))
	cmd.AddCommand(ps.NewCmdPs(f))
	cmd.AddCommand(stop.NewCmdStop(f))
	cmd.AddCommand(logs.NewCmdLogs(f))
	cmd.AddCommand(initcmd.NewCmdInit(f))
	cmd.AddCommand(inspect.NewCmdInspect(f))
	cmd.AddCommand(buildcmd.NewCmdBuild(f))
	cmd.AddCommand(pack.NewCmdPack(f))
	cmd.AddCommand(envcmd.NewCmdEnv(f))
	cmd.AddCommand(cachecmd.NewCmdCache(f))
	cmd.AddCommand(doctor.NewCmdDoctor(f))
	cmd.AddCommand(tracecmd.NewCmdTrace(f))
	cmd.AddCommand(perfcmd.NewCmdPerf(f))
	cmd.AddCommand(diffcmd.NewCmdDiff(f))
	usageArgs(cmd)

	return cmd
}

// debugWriter turns standard-logger lines into debug records.
type debugWriter struct{ l *slog.Logger }

func (w debugWriter) Write(p []byte) (int, error) {
	w.l.Debug(strings.TrimSpace(string(p)))
	return len(p), nil
}

// usageArgs makes every wrong argument count a usage error (exit 2), as flag errors already
// are: cobra returns them as plain errors. Commands with subcommands keep cobra's own check,
// which runs before any Args (see unknownCommand).
func usageArgs(c *cobra.Command) {
	for _, sub := range c.Commands() {
		usageArgs(sub)
	}
	if c.HasSubCommands() && c.HasParent() && !c.Runnable() {
		// cobra shows a group's help for any argument (`ukernel env bogus`, exit 0).
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return cmdutil.Usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		}
	}
	if c.HasSubCommands() || c.Args == nil {
		return
	}
	orig := c.Args
	c.Args = func(cmd *cobra.Command, args []string) error {
		err := orig(cmd, args)
		var ue *cmdutil.UsageError
		if err != nil && !errors.As(err, &ue) {
			return &cmdutil.UsageError{Err: err}
		}
		return err
	}
}

// unknownCommand recognises cobra's error for an unknown subcommand, which it returns untyped.
func unknownCommand(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "unknown command ")
}
