// Package run implements `ukernel run`: build and pack when needed, boot the image in a microVM,
// stream its console and exit with the workload's exit code.
package run

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/guestlog"
	"github.com/ukernel-dev/ukernel/internal/oci"
	"github.com/ukernel-dev/ukernel/internal/pipeline"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/runenv"
	"github.com/ukernel-dev/ukernel/internal/runlog"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/internal/vmm/backends"
	"github.com/ukernel-dev/ukernel/internal/vmm/launch"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Options are the inputs of `run`.
type Options struct {
	IO         *iostreams.IOStreams
	ProjectDir func() (string, error)
	JSON       bool
	Verbose    bool // -v: the kernel's console on stderr too
	Logger     *slog.Logger
	// Executable is this ukernel binary, which a detached run's monitor runs.
	Executable string

	Name        string
	VCPU        int // 0: as the image says
	MemoryMB    int // 0: as the image says
	DataMB      int // 0: as the image (or the template) says
	Net         string
	Publish     []string
	Env         []string
	EnvFiles    []string
	Secrets     []string
	Image       string // as given: relative to the project directory
	Detach      bool
	Restart     string
	Accel       string
	Backend     string
	Offline     bool
	Locked      bool
	StopTimeout time.Duration
	Template    string // NAME[@REV]
	Cold        bool   // --cold: boot even when the template has a snapshot
	Restore     bool   // --restore: restore the template's snapshot or fail

	// Set by check from the flags above.
	net abi.Net          // --net parsed; the zero Net: as the image says
	req backends.Request // --backend and --accel, for the network
}

// NewCmdRun returns the run command. Its flags are checked (usage errors, exit 2) before runF
// (tests: it gets the parsed options) or runRun, so a bad flag never waits for a build.
func NewCmdRun(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	o := &Options{IO: f.IO, ProjectDir: f.ProjectDir, Executable: f.Executable}
	cmd := &cobra.Command{
		Use:   "run [flags]",
		Short: "Boot the project's image in a microVM and run its workload",
		Long: `Run builds and packs the project when needed (cached), boots the image in a microVM and
streams the workload's output: its stdout to stdout, its stderr to stderr (the entry's and
the services'). The kernel's console is kept apart, in logs/console.log; -v shows it too, on
stderr. Everything is recorded with its time in the run's output log (see ukernel logs). It
exits with the workload's own exit code; 125 means ukernel
itself failed (the reason is printed). Ctrl-C stops the guest gracefully.

Defaults for --vcpu, --memory, --net and --publish come from ukernel.toml's [run] section,
as recorded in the image, and for --data-mb from its [data] disk_mb. --data-mb N attaches a
data volume of N MiB at /data (the project's .ukernel/data.img, or the template's own), even
to an image without [data]; a smaller existing volume is grown, a larger one never shrunk. Values given with -e and --env-file reach the guest at run time
only: they are never written into the image or the logs.

--secret NAME=@FILE (or --secret NAME, from the environment variable NAME here) hands a
secret to the guest at run time: it appears as /run/secrets/NAME (a tmpfs, mode 0400),
readable only by the users of the processes that declare it (secrets = ["NAME"] under
[project] or [services.X] in ukernel.toml; several users: through a POSIX ACL), and nowhere
else: not in the image, the logs, the events or ps.

With --template, a template whose revision has a snapshot (template build --snapshot) is
restored from it when the snapshot fits this run and host (its fingerprint: VMM, accelerator,
CPU, devices, vCPUs, memory, kernel and image) and its files verify; otherwise it boots cold and
says why in one line. A restored guest gets fresh entropy, the clock, its name and the run's
secrets, and its own copy of the snapshot's data volume (docs/SNAPSHOTS.md). A run with -e
values boots cold: running processes cannot take a new environment. --cold boots cold anyway;
--restore fails instead of booting cold.`,
		Example: `  ukernel run
  ukernel run --publish 8080:8080 -e PORT=8080
  ukernel run -d --name api --env-file app.env
  ukernel run -d --restart on-failure --name api
  ukernel run --secret db_password=@./db_password.txt --secret API_TOKEN
  ukernel run --image dist/example-worker.img --net tap:tap0 --accel tcg
  ukernel run --backend firecracker --net tap:tap0
  ukernel run --template api -d --publish 8080:8080
  ukernel run --template api --cold`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.JSON, o.Verbose, o.Logger = f.JSON, f.Verbose, f.Logger
			if err := o.check(); err != nil {
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return runRun(cmd.Context(), o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Name, "name", "", "guest name shown by ps and taken by stop (default: the project name)")
	fl.IntVar(&o.VCPU, "vcpu", 0, "virtual CPUs (default: [run] vcpu)")
	fl.IntVar(&o.MemoryMB, "memory", 0, "memory in MiB (default: [run] memory_mb)")
	fl.IntVar(&o.DataMB, "data-mb", 0, "attach a data volume of this many MiB at /data, kept and grown (never shrunk) across runs (default: [data] disk_mb, or the template's data_mb)")
	fl.StringVar(&o.Net, "net", "", "network: user, none or tap:IFACE (default: [run] net)")
	fl.StringArrayVar(&o.Publish, "publish", nil, "publish a guest TCP port on 127.0.0.1 as HOST:GUEST (repeatable; needs --net user, which it picks when the image's network is none)")
	fl.StringArrayVarP(&o.Env, "env", "e", nil, "set K=V in the workload's environment at run time (repeatable; -e K takes K from here)")
	fl.StringArrayVar(&o.EnvFiles, "env-file", nil, "read K=V lines from a file into the workload's environment (repeatable)")
	fl.StringArrayVar(&o.Secrets, "secret", nil, "give the guest a secret as NAME=@FILE, or NAME from the environment variable NAME (repeatable)")
	fl.StringVar(&o.Template, "template", "", "boot a template's current revision (NAME) or a given one (NAME@REV) with its run settings, from any directory; flags override them")
	fl.BoolVar(&o.Cold, "cold", false, "with --template: boot cold even when the template has a snapshot")
	fl.BoolVar(&o.Restore, "restore", false, "with --template: restore the template's snapshot, or fail instead of booting cold")
	fl.StringVar(&o.Image, "image", "", "boot this image instead of building the project's (relative to the project directory)")
	fl.BoolVarP(&o.Detach, "detach", "d", false, "start the guest under a monitor process and return; see ps, logs, stop, rm")
	fl.StringVar(&o.Restart, "restart", launch.RestartNo, "with -d: start the guest again when it ends: no, on-failure (it did not report code 0) or always; never after ukernel stop")
	fl.StringVar(&o.Accel, "accel", backends.Auto, "accelerator: auto, kvm or tcg")
	fl.StringVar(&o.Backend, "backend", backends.Auto, "VMM: auto (Firecracker when installed and KVM works, else QEMU), firecracker or qemu")
	fl.BoolVar(&o.Offline, "offline", false, "build without network access when a build is needed")
	fl.BoolVar(&o.Locked, "locked", false, "fail if env/ukernel.lock is missing or would change (CI)")
	fl.DurationVar(&o.StopTimeout, "stop-timeout", launch.DefaultStopTimeout, "how long the workload gets to stop before it is forced: on Ctrl-C, and the services still running when the entry exits")
	return cmd
}

// check refuses flags that are wrong by themselves; the ranges are ukernel.toml's [run] ranges.
func (o *Options) check() error {
	if o.Template != "" {
		if o.Image != "" {
			return cmdutil.Usagef("--template and --image exclude each other: a template names its image")
		}
		if _, _, err := template.ParseRef(o.Template); err != nil {
			return &cmdutil.UsageError{Err: err}
		}
	}
	if (o.Cold || o.Restore) && o.Template == "" {
		return cmdutil.Usagef("--cold and --restore choose how a template starts: they need --template NAME")
	}
	if o.Cold && o.Restore {
		return cmdutil.Usagef("--cold and --restore exclude each other")
	}
	if o.Net != "" {
		var err error
		if o.net, err = abi.ParseNet(o.Net); err != nil {
			return cmdutil.Usagef("--net: %v", err)
		}
	}
	req, err := backends.ParseRequest(o.Backend, o.Accel, o.net.Mode)
	if err != nil {
		return cmdutil.Usagef("%v", err)
	}
	o.req = req
	if !slices.Contains(launch.RestartPolicies, o.Restart) {
		return cmdutil.Usagef("--restart %q: expected one of %s", o.Restart, strings.Join(launch.RestartPolicies, ", "))
	}
	if o.Restart != launch.RestartNo && !o.Detach {
		return cmdutil.Usagef("--restart needs -d (a detached guest's monitor restarts it)")
	}
	if o.StopTimeout <= 0 {
		// Zero would give the guest no time to read the stop request at all.
		return cmdutil.Usagef("--stop-timeout must be positive")
	}
	if o.VCPU != 0 {
		if err := project.CheckVCPU(o.VCPU); err != nil {
			return cmdutil.Usagef("--vcpu %v", err)
		}
	}
	if o.MemoryMB != 0 {
		if err := project.CheckMemoryMB(o.MemoryMB); err != nil {
			return cmdutil.Usagef("--memory %v", err)
		}
	}
	if err := project.CheckDataMB(o.DataMB); err != nil {
		return cmdutil.Usagef("--data-mb %v", err)
	}
	for _, p := range o.Publish {
		if _, _, err := project.ParsePublish(p); err != nil {
			return cmdutil.Usagef("--publish %v", err)
		}
	}
	return nil
}

func runRun(ctx context.Context, o *Options) error {
	fail := func(err error) error { return &cmdutil.ExitError{Code: runlog.ExitNoReport, Err: err} }
	var tpl *templateRun
	if o.Template != "" {
		var err error
		if tpl, err = resolveTemplate(ctx, o); err != nil {
			return fail(err)
		}
		// Its revision stays until the guest's record names it (released early below).
		defer tpl.release()
	}
	// Say what an explicit backend lacks before the build, too.
	if err := backends.Precheck(ctx, o.req); err != nil {
		return fail(err)
	}
	env, err := runenv.ParseEnv(o.Env, o.EnvFiles)
	if err != nil {
		return fail(err)
	}
	secrets, err := runenv.ParseSecrets(o.Secrets)
	if err != nil {
		return fail(err)
	}
	// A secret taken from this environment (--secret NAME) leaves it once read: no process run
	// starts (the monitor, the VMM) inherits it where /proc/PID/environ shows it.
	for _, f := range o.Secrets {
		if !strings.Contains(f, "=") {
			os.Unsetenv(f)
		}
	}
	dir, err := o.ProjectDir()
	if err != nil {
		return fail(err)
	}
	if tpl != nil {
		dir = tpl.dir // its logs and data volume live with the template
	}
	logs, err := runlog.Limits(dir)
	if err != nil {
		return fail(err)
	}
	img := cmdutil.ProjectPath(dir, o.Image)
	if tpl != nil {
		img = tpl.res.Image
	}
	if img != "" {
		// A pulled image (or template revision) is booted only while the trust policy still
		// accepts the signatures kept from its pull.
		if err := oci.CheckPulled(img); err != nil {
			return fail(err)
		}
	}
	if img == "" {
		if img, err = pipeline.Image(ctx, pipeline.Options{Dir: dir, Offline: o.Offline, Locked: o.Locked, Progress: o.IO.Progress(), Logger: o.Logger}); err != nil {
			return fail(err)
		}
	}
	opts := launch.Options{
		ProjectDir: dir, Image: img, Name: o.Name, VCPU: o.VCPU, MemoryMB: o.MemoryMB, DataMB: o.DataMB,
		Net: o.net, Publish: o.Publish, Env: env, Secrets: secrets, Accel: o.Accel, Backend: o.Backend, Detached: o.Detach, Restart: o.Restart,
		StopTimeout: o.StopTimeout, Logs: logs, Progress: o.IO.Progress(), Log: o.Logger,
	}
	if tpl != nil {
		tpl.apply(&opts)
	}
	step := o.IO.Progress().Start("Starting VM")
	if o.Detach {
		if o.Executable == "" {
			step.Fail()
			return fail(errors.New("run -d: the path of this ukernel binary is unknown, and the guest's monitor runs it"))
		}
		d, err := launch.StartDetached(ctx, opts, o.Executable)
		tpl.release()
		if err != nil {
			step.Fail()
			return fail(tpl.damaged(err))
		}
		step.Done("")
		if o.JSON {
			return cmdutil.PrintJSON(o.IO, d)
		}
		return nil
	}
	g, err := launch.Start(ctx, opts)
	tpl.release()
	if err != nil {
		step.Fail()
		return fail(tpl.damaged(err))
	}
	step.Done("")
	// On a terminal the guest's control sequences are shown escaped; pipes get its bytes.
	outTerm, errTerm := o.IO.Terminals()
	streams := launch.Streams{Stdout: guestlog.ForTerminal(o.IO.Out, outTerm), Stderr: guestlog.ForTerminal(o.IO.ErrOut, errTerm)}
	if o.Verbose {
		streams.Kernel = guestlog.ForTerminal(o.IO.ErrOut, errTerm)
	}
	out, err := g.AttendStreams(ctx, streams, o.StopTimeout)
	if err != nil {
		return fail(err)
	}
	if out.Code == 0 && out.Reason == "" {
		return nil
	}
	ee := &cmdutil.ExitError{Code: out.Code}
	if out.Reason != "" {
		ee.Err = errors.New(out.Reason)
		if out.Code == 0 {
			ee.Code = runlog.ExitNoReport // an error is never reported with success
		}
	}
	return ee
}

// MonitorOptions are the inputs of the monitor command: its request comes on IO.In.
type MonitorOptions struct {
	IO *iostreams.IOStreams
}

// NewCmdMonitor returns the hidden command a detached guest's monitor runs as (launch.RunMonitor);
// runF, when set, gets the options instead (tests).
func NewCmdMonitor(f *cmdutil.Factory, runF func(*MonitorOptions) error) *cobra.Command {
	opts := &MonitorOptions{IO: f.IO}
	return &cobra.Command{
		Use:    launch.MonitorCommand,
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return launch.RunMonitor(opts.IO.In)
		},
	}
}
