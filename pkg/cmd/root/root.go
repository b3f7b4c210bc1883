// Package root assembles the ukernel command tree.
package root

import (
	"errors"
	"fmt"
	"log"
	"log/slog"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ukernel-dev/ukernel/internal/suggest"
	iversion "github.com/ukernel-dev/ukernel/internal/version"

	buildcmd "github.com/ukernel-dev/ukernel/pkg/cmd/build"
	cachecmd "github.com/ukernel-dev/ukernel/pkg/cmd/cache"
	deploycmd "github.com/ukernel-dev/ukernel/pkg/cmd/deploy"
	diffcmd "github.com/ukernel-dev/ukernel/pkg/cmd/diff"
	"github.com/ukernel-dev/ukernel/pkg/cmd/doctor"
	envcmd "github.com/ukernel-dev/ukernel/pkg/cmd/env"
	execcmd "github.com/ukernel-dev/ukernel/pkg/cmd/exec"
	initcmd "github.com/ukernel-dev/ukernel/pkg/cmd/init"
	"github.com/ukernel-dev/ukernel/pkg/cmd/inspect"
	keycmd "github.com/ukernel-dev/ukernel/pkg/cmd/key"
	"github.com/ukernel-dev/ukernel/pkg/cmd/logs"
	"github.com/ukernel-dev/ukernel/pkg/cmd/pack"
	perfcmd "github.com/ukernel-dev/ukernel/pkg/cmd/perf"
	"github.com/ukernel-dev/ukernel/pkg/cmd/ps"
	pullcmd "github.com/ukernel-dev/ukernel/pkg/cmd/pull"
	pushcmd "github.com/ukernel-dev/ukernel/pkg/cmd/push"
	rmcmd "github.com/ukernel-dev/ukernel/pkg/cmd/rm"
	"github.com/ukernel-dev/ukernel/pkg/cmd/run"
	shellcmd "github.com/ukernel-dev/ukernel/pkg/cmd/shell"
	"github.com/ukernel-dev/ukernel/pkg/cmd/stop"
	templatecmd "github.com/ukernel-dev/ukernel/pkg/cmd/template"
	tracecmd "github.com/ukernel-dev/ukernel/pkg/cmd/trace"
	trustcmd "github.com/ukernel-dev/ukernel/pkg/cmd/trust"
	verifycmd "github.com/ukernel-dev/ukernel/pkg/cmd/verify"
	versioncmd "github.com/ukernel-dev/ukernel/pkg/cmd/version"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

// NewCmdRoot returns the root command; version is ukernel's own version (Go's and the ABI's
// are this binary's). Subcommands are registered here and only once they work.
func NewCmdRoot(f *cmdutil.Factory, version string) *cobra.Command {
	info := iversion.Get()
	info.Ukernel = version
	var showVersion bool
	cmd := &cobra.Command{
		Use:   "ukernel <command> [flags]",
		Short: "Build, run and ship workloads as reproducible microVM images",
		Long: `ukernel turns a project (ukernel.toml, src/, env/) into one bootable, reproducible
microVM image and runs it locally with one command.`,
		Example: `  ukernel init --name example-worker --lang python --template worker
  ukernel run`,
		// --version is the root's own flag rather than cobra's, so that it honours --json.
		RunE: func(cmd *cobra.Command, args []string) error {
			if showVersion {
				return versioncmd.Run(&versioncmd.Options{IO: f.IO, JSON: f.JSON, Info: info})
			}
			return cmd.Help()
		},
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
	cmd.Flags().BoolVar(&showVersion, "version", false, "print the versions of ukernel, Go and the ABI")
	cmd.PersistentFlags().BoolVarP(&f.Verbose, "verbose", "v", false, "print diagnostics on stderr")
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &cmdutil.UsageError{Err: flagError(c, err)}
	})
	// Without subcommand the root runs; any argument is a subcommand it does not know.
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return unknownCommand(cmd, args[0])
		}
		return nil
	}

	// Commands (one package each under pkg/cmd).
	cmd.AddCommand(run.NewCmdRun(f, nil))
	cmd.AddCommand(ps.NewCmdPs(f, nil))
	cmd.AddCommand(stop.NewCmdStop(f, nil))
	cmd.AddCommand(execcmd.NewCmdExec(f, nil))
	cmd.AddCommand(shellcmd.NewCmdShell(f, nil))
	cmd.AddCommand(logs.NewCmdLogs(f, nil))
	cmd.AddCommand(initcmd.NewCmdInit(f, nil))
	cmd.AddCommand(inspect.NewCmdInspect(f, nil))
	cmd.AddCommand(buildcmd.NewCmdBuild(f, nil))
	cmd.AddCommand(pack.NewCmdPack(f, nil))
	cmd.AddCommand(envcmd.NewCmdEnv(f))
	cmd.AddCommand(cachecmd.NewCmdCache(f))
	cmd.AddCommand(doctor.NewCmdDoctor(f, nil))
	cmd.AddCommand(tracecmd.NewCmdTrace(f, nil))
	cmd.AddCommand(perfcmd.NewCmdPerf(f, nil))
	cmd.AddCommand(diffcmd.NewCmdDiff(f, nil))
	cmd.AddCommand(versioncmd.NewCmdVersion(f, info, nil))
	cmd.AddCommand(run.NewCmdMonitor(f, nil))
	cmd.AddCommand(rmcmd.NewCmdRm(f, nil))
	cmd.AddCommand(pushcmd.NewCmdPush(f, nil))
	cmd.AddCommand(pullcmd.NewCmdPull(f, nil))
	cmd.AddCommand(verifycmd.NewCmdVerify(f, nil))
	cmd.AddCommand(keycmd.NewCmdKey(f, nil))
	cmd.AddCommand(trustcmd.NewCmdTrust(f, nil))
	tmpl := templatecmd.NewCmdTemplate(f)
	tmpl.AddCommand(pushcmd.NewCmdTemplatePush(f, nil), pullcmd.NewCmdTemplatePull(f, nil))
	cmd.AddCommand(tmpl)
	cmd.AddCommand(deploycmd.NewCmdDeploy(f, nil))
	cmd.AddCommand(deploycmd.NewCmdAgent(f))
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
				return unknownCommand(cmd, args[0])
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
		if err == nil || errors.As(err, &ue) {
			return err
		}
		// cobra's own messages ("accepts 2 arg(s), received 1") name neither the command nor
		// the arguments it takes: say both.
		name := strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
		if len(args) > 0 && orig(cmd, nil) == nil && orig(cmd, args[:1]) != nil {
			return cmdutil.Usagef("%s takes no arguments, got %q; usage: %s", name, args[0], cmd.UseLine())
		}
		return cmdutil.Usagef("%s: %v; usage: %s", name, err, cmd.UseLine())
	}
}

// unknownCommand is the usage error for a subcommand of c that does not exist, with the
// nearest ones as suggestions (`ukernel buidl`: did you mean build?).
func unknownCommand(c *cobra.Command, typed string) error {
	var names []string
	for _, sub := range c.Commands() {
		if sub.IsAvailableCommand() {
			names = append(names, sub.Name())
		}
	}
	msg := fmt.Sprintf("unknown command %q for %q", typed, c.CommandPath())
	near := suggest.Closest(typed, names)
	if len(near) == 0 && typed != "" {
		// An abbreviation (`ukernel insp`) is far in edits but plain to read.
		for _, n := range names {
			if strings.HasPrefix(n, strings.ToLower(typed)) {
				near = append(near, n)
			}
		}
	}
	if hint := suggest.Phrase(near, identity); hint != "" {
		msg += "; " + hint
	}
	return cmdutil.Usagef("%s", msg)
}

// flagError adds the nearest flags of c to pflag's error for an unknown one ("unknown flag:
// --detatch; did you mean --detach?"); a long name given with one dash (-detach) gets its
// double-dash form.
func flagError(c *cobra.Command, err error) error {
	var ne *pflag.NotExistError
	if !errors.As(err, &ne) {
		return err
	}
	var names []string
	c.Flags().VisitAll(func(fl *pflag.Flag) {
		if !fl.Hidden {
			names = append(names, fl.Name)
		}
	})
	var hint string
	if group := ne.GetSpecifiedShortnames(); group != "" {
		if slices.Contains(names, group) {
			hint = "did you mean --" + group + "?"
		}
	} else {
		hint = suggest.Phrase(suggest.Closest(ne.GetSpecifiedName(), names), func(n string) string { return "--" + n })
	}
	if hint == "" {
		return err
	}
	return fmt.Errorf("%w; %s", err, hint)
}

func identity(s string) string { return s }
