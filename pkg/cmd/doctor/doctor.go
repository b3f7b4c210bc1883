// Package doctor implements `ukernel doctor`: what this host can run and why, for each VMM
// backend, accelerator and tool, with what to install.
package doctor

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/vmm/backends"
	"github.com/ukernel-dev/ukernel/internal/vmm/hostcheck"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Options are the inputs of `doctor`.
type Options struct {
	IO         *iostreams.IOStreams
	ProjectDir func() (string, error)
	JSON       bool

	Kernel  string
	Net     string
	Backend string
	Accel   string
}

// NewCmdDoctor returns the doctor command; runF, when set, gets the parsed options instead of
// doctorRun (tests).
func NewCmdDoctor(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	o := &Options{IO: f.IO, ProjectDir: f.ProjectDir}
	cmd := &cobra.Command{
		Use:         "doctor",
		Annotations: map[string]string{cmdutil.InterruptibleAnnotation: "true"}, // killed, it leaves nothing half-done
		Short:       "Check which VMM backends and accelerators work on this host, and why",
		Long: `Doctor checks each VMM backend (QEMU, Firecracker) and accelerator (KVM, TCG): whether it is
installed, its version, whether it works here and why not, and what to install. KVM is probed
by booting a kernel under it (cached), since an openable /dev/kvm is not proof that guests run.
It ends with the backend and accelerator ` + "`run`" + ` picks on this host, for the project's network
mode ([run] net in ukernel.toml, else user) or the one given with --net, and run's --backend
and --accel (auto by default): Firecracker has no user-mode network, so a run with --net user
uses QEMU. run makes its choice with the same rule from the same facts; --json reports it as
choice.backend and choice.accel (as ps --json names a guest's).`,
		Example: `  ukernel doctor
  ukernel doctor --net none
  ukernel doctor --backend firecracker --net tap:tap0
  ukernel doctor --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.JSON = f.JSON
			if runF != nil {
				return runF(o)
			}
			return doctorRun(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.Kernel, "kernel", "", "bzImage to probe KVM with (default: the newest cached image kernel)")
	cmd.Flags().StringVar(&o.Net, "net", "", "report the choice for this network: user, none or tap:IFACE (default: the project's, else user)")
	cmd.Flags().StringVar(&o.Backend, "backend", backends.Auto, "report the choice for run's --backend: auto, firecracker or qemu")
	cmd.Flags().StringVar(&o.Accel, "accel", backends.Auto, "report the choice for run's --accel: auto, kvm or tcg")
	return cmd
}

func doctorRun(ctx context.Context, o *Options) error {
	net := o.Net
	if net == "" {
		net = project.DefaultNet
		if dir, err := o.ProjectDir(); err == nil {
			if cfg, err := project.Load(dir); err == nil {
				net = cfg.Run.Net
			}
		}
	}
	setting, err := abi.ParseNet(net)
	if err != nil {
		return cmdutil.Usagef("--net %v", err)
	}
	if _, err := backends.ParseRequest(o.Backend, o.Accel, setting.Mode); err != nil {
		return cmdutil.Usagef("%v", err)
	}
	rep, err := hostcheck.Run(ctx, hostcheck.Options{Kernel: o.Kernel, Net: setting, Backend: o.Backend, Accel: o.Accel})
	if err != nil {
		return err
	}
	if o.JSON {
		return cmdutil.PrintJSON(o.IO, rep)
	}
	flags := "--net " + setting.String()
	if o.Backend != backends.Auto && o.Backend != "" {
		flags += " --backend " + o.Backend
	}
	if o.Accel != backends.Auto && o.Accel != "" {
		flags += " --accel " + o.Accel
	}
	return Print(o.IO.Out, rep, flags)
}

// Print writes the report as a table and the choice of a run with flags.
func Print(w io.Writer, rep hostcheck.Report, flags string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tKIND\tFOUND\tWORKS\tVERSION")
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	for _, c := range rep.Checks {
		v := c.Version
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name, c.Kind, yes(c.Found), yes(c.Works), v)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, c := range rep.Checks {
		if c.Why != "" {
			fmt.Fprintf(w, "%s: %s\n", c.Name, c.Why)
		}
		if c.Install != "" && !c.Works {
			fmt.Fprintf(w, "%s: to fix: %s\n", c.Name, c.Install)
		}
	}
	fmt.Fprintln(w)
	if rep.ChoiceError != "" {
		fmt.Fprintf(w, "run (%s) fails here: %s\n", flags, rep.ChoiceError)
		return nil
	}
	fmt.Fprintf(w, "run (%s) uses: backend %s, accelerator %s\n", flags, rep.Choice.BackendString(), rep.Choice.AccelChoice())
	return nil
}
