// Package deploy implements `ukernel deploy`: the image on the user's own Linux hosts over SSH
// (internal/deploy does the work).
package deploy

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/deploy"
	"github.com/ukernel-dev/ukernel/internal/oci"
	"github.com/ukernel-dev/ukernel/internal/pipeline"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/runenv"
	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/internal/userconfig"
	"github.com/ukernel-dev/ukernel/pkg/cmd/internal/regflags"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// SSHFlags are the flags every deploy command shares: which hosts, and how to reach them.
type SSHFlags struct {
	Hosts          []string
	SSHConfig      string
	Identity       string
	KnownHosts     string
	AcceptNew      bool
	ConnectTimeout time.Duration
	RemoteBin      string
}

func (s *SSHFlags) targets() ([]deploy.Target, deploy.SSHOptions, error) {
	if len(s.Hosts) == 0 {
		return nil, deploy.SSHOptions{}, cmdutil.Usagef("--host is required: where to deploy, as [USER@]HOST[:PORT] (repeatable)")
	}
	var ts []deploy.Target
	for _, h := range s.Hosts {
		t, err := deploy.ParseTarget(h)
		if err != nil {
			return nil, deploy.SSHOptions{}, cmdutil.Usagef("%v", err)
		}
		ts = append(ts, t)
	}
	if s.ConnectTimeout <= 0 {
		return nil, deploy.SSHOptions{}, cmdutil.Usagef("--connect-timeout must be positive")
	}
	for flag, p := range map[string]string{"--ssh-config": s.SSHConfig, "--identity": s.Identity} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return nil, deploy.SSHOptions{}, cmdutil.Usagef("%s: %v", flag, err)
		}
	}
	return ts, deploy.SSHOptions{Config: s.SSHConfig, Identity: s.Identity, KnownHosts: s.KnownHosts,
		AcceptNew: s.AcceptNew, ConnectTimeout: s.ConnectTimeout}, nil
}

// Options are the flags of `deploy`.
type Options struct {
	IO            *iostreams.IOStreams
	Factory       *cmdutil.Factory
	SSH           *SSHFlags
	Ref           string // REF: an image in an OCI registry, layout or archive
	Reg           regflags.Flags
	Image         string
	Template      string
	Name          string
	Publish       []string
	Env           []string
	EnvFiles      []string
	Secrets       []string
	HealthTimeout time.Duration
	NoRollback    bool
	Offline       bool
	Locked        bool

	// Set by check from the flags.
	hosts   []deploy.Target
	sshOpts deploy.SSHOptions
}

// check reads the flags that need no project and no host (before runF or deployRun).
func (o *Options) check() error {
	var err error
	if o.hosts, o.sshOpts, err = o.SSH.targets(); err != nil {
		return err
	}
	for _, p := range o.Publish {
		if _, _, err := project.ParsePublish(p); err != nil {
			return cmdutil.Usagef("--publish %v", err)
		}
	}
	if o.Name != "" {
		if err := runstate.ValidateName(o.Name); err != nil {
			return cmdutil.Usagef("--name: %v", err)
		}
	}
	if o.HealthTimeout <= 0 {
		return cmdutil.Usagef("--health-timeout must be positive")
	}
	sources := 0
	for _, s := range []string{o.Ref, o.Image, o.Template} {
		if s != "" {
			sources++
		}
	}
	if sources > 1 {
		return cmdutil.Usagef("REF, --image and --template each name the image: give one")
	}
	if o.Template != "" {
		if _, _, err := template.ParseRef(o.Template); err != nil {
			return cmdutil.Usagef("--template: %v", err)
		}
	}
	return nil
}

// NewCmdDeploy returns the deploy command; runF replaces its body in tests.
func NewCmdDeploy(f *cmdutil.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	o := &Options{IO: f.IO, Factory: f, SSH: &SSHFlags{}}
	cmd := &cobra.Command{
		Use:   "deploy --host [USER@]HOST[:PORT] [--image IMG | --template NAME[@REV] | REF] [flags]",
		Short: "Run the image on your own Linux hosts over SSH, supervised, with rollback",
		Long: `Deploy runs the project's image (or --image IMG, a template's revision with --template
NAME[@REV], or REF pulled from an OCI registry, layout or archive as pull does) on each
--host, one after the other, and stops at the first that fails. The image is checked here as
verify checks it, under your [trust] policy, before it goes anywhere. It reaches a host with the system's OpenSSH client, so your
~/.ssh/config (users, ports, jump hosts), agent and keys apply; --ssh-config, --identity and
--known-hosts name other files (ssh finds ~ in the user database, not in $HOME). Host keys are
always checked: an unknown or changed key is refused with its fingerprint
(--accept-new-host-key records the key of a host never seen before, and nothing else).

On the host, ukernel itself runs the guest: deploy copies this ukernel binary there (to
~/.local/bin/ukernel or --remote-bin) when the host has none or a different one. The image
travels by digest: nothing is sent when the host has it, and the host checks the digest, the image
and, for a pulled image, its signatures under the host's own [trust] policy, before anything
starts. -e, --env-file and --secret travel over the SSH connection only; on the host
they live on tmpfs (0600 files), never on its disk.

With systemd as the host's init the guest runs as the unit ukernel-NAME.service (a user unit
when you are not root); without it, under ukernel's monitor (run -d --restart on-failure).
Deploy waits until the guest is healthy (its [health] checks, or running for 5s without any),
and puts the previous revision back when it is not (--no-rollback keeps the failed one running
for debugging). See also: deploy status, logs, stop, rollback.`,
		Example: `  ukernel deploy --host 10.0.0.5
  ukernel deploy --host deploy@web1 --host deploy@web2 --image dist/api.img --publish 8080:8080
  ukernel deploy --host deploy@web1 --template api@3f1c0a9e27b4
  ukernel deploy --host deploy@web1 registry.example.com/team/api:v3
  ukernel deploy --host ci@10.0.0.5:2222 --identity ci_key --known-hosts ci_known_hosts --secret db_password=@pw.txt`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.Ref = args[0]
			}
			if err := o.check(); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return deployRun(cmd.Context(), o)
		},
	}
	sshFlags(cmd, o.SSH)
	fl := cmd.Flags()
	fl.StringVar(&o.Image, "image", "", "deploy this image instead of building the project's (relative to the project directory)")
	fl.StringVar(&o.Template, "template", "", "deploy a template's revision, NAME[@REV] (default: its current one), with its run settings")
	fl.StringVar(&o.Name, "name", "", "the deployment's name on the host (default: the image's name, or the template's)")
	fl.StringArrayVar(&o.Publish, "publish", nil, "publish a guest TCP port on the host's 127.0.0.1 as HOST:GUEST (repeatable)")
	fl.StringArrayVarP(&o.Env, "env", "e", nil, "set K=V in the workload's environment (repeatable; -e K takes K from here)")
	fl.StringArrayVar(&o.EnvFiles, "env-file", nil, "read K=V lines from a file into the workload's environment (repeatable)")
	fl.StringArrayVar(&o.Secrets, "secret", nil, "give the guest a secret as NAME=@FILE, or NAME from the environment variable NAME (repeatable)")
	fl.DurationVar(&o.HealthTimeout, "health-timeout", deploy.DefaultHealthTimeout, "how long the new revision gets to become healthy")
	fl.BoolVar(&o.NoRollback, "no-rollback", false, "keep a revision that fails its health check running (for debugging) instead of putting the previous one back")
	fl.BoolVar(&o.Offline, "offline", false, "build without network access when a build is needed")
	fl.BoolVar(&o.Locked, "locked", false, "fail if env/ukernel.lock is missing or would change (CI)")
	o.Reg.Add(cmd) // for REF

	cmd.AddCommand(newCmdStatus(f), newCmdLogs(f), newCmdStop(f), newCmdRollback(f))
	return cmd
}

// sshFlags adds the flags that choose and reach the hosts.
func sshFlags(cmd *cobra.Command, s *SSHFlags) {
	fl := cmd.Flags()
	fl.StringArrayVar(&s.Hosts, "host", nil, "a host as [USER@]HOST[:PORT] or an ssh_config alias (repeatable: one after the other)")
	fl.StringVar(&s.SSHConfig, "ssh-config", "", "ssh_config file to use instead of ~/.ssh/config")
	fl.StringVar(&s.Identity, "identity", "", "private key to log in with (only this one)")
	fl.StringVar(&s.KnownHosts, "known-hosts", "", "known_hosts file to check host keys against (instead of ~/.ssh/known_hosts)")
	fl.BoolVar(&s.AcceptNew, "accept-new-host-key", false, "record the key of a host never contacted before (a changed key is still refused)")
	fl.DurationVar(&s.ConnectTimeout, "connect-timeout", deploy.DefaultConnectTimeout, "how long a host gets to answer and complete the SSH handshake")
	fl.StringVar(&s.RemoteBin, "remote-bin", "", "where ukernel lives on the host (default ~/.local/bin/ukernel)")
}

func deployRun(ctx context.Context, o *Options) error {
	f := o.Factory
	env, err := runenv.ParseEnv(o.Env, o.EnvFiles)
	if err != nil {
		return err
	}
	secrets, err := runenv.ParseSecrets(o.Secrets)
	if err != nil {
		return err
	}
	for _, s := range o.Secrets {
		if !strings.Contains(s, "=") {
			os.Unsetenv(s) // read once; ssh and its children do not inherit it
		}
	}
	dir, err := f.ProjectDir()
	if err != nil {
		return err
	}
	do := deploy.Options{
		Hosts: o.hosts, SSH: o.sshOpts, Name: o.Name, Publish: o.Publish, Env: env, Secrets: secrets,
		RemoteBin: o.SSH.RemoteBin, Exe: f.Executable, HealthTimeout: o.HealthTimeout, NoRollback: o.NoRollback,
		Progress: o.IO.Progress(),
	}
	img := o.Image
	if img != "" && !filepath.IsAbs(img) {
		img = filepath.Join(dir, img)
	}
	if o.Template != "" {
		store, err := template.Open()
		if err != nil {
			return err
		}
		res, err := store.Resolve(o.Template)
		if err != nil {
			return err
		}
		img, do.Digest = res.Image, res.Revision.ID
		do.VCPU, do.MemoryMB, do.DataMB, do.Net = res.Spec.VCPU, res.Spec.MemoryMB, res.Spec.DataMB, res.Spec.Net
		if do.Name == "" {
			do.Name = res.Spec.Name
		}
		if len(do.Publish) == 0 {
			do.Publish = res.Spec.Publish
		}
	}
	cfg, err := userconfig.Load()
	if err != nil {
		return err
	}
	c, err := cache.Open()
	if err != nil {
		return err
	}
	if o.Ref != "" {
		topts, err := o.Reg.Options(o.IO, cfg, f.Logger)
		if err != nil {
			return err
		}
		pctx, cancel := o.Reg.Context(ctx)
		res, err := oci.Pull(pctx, o.Ref, oci.PullOptions{Options: topts, Cache: c})
		cancel()
		if err != nil {
			return err
		}
		img = res.Path
	}
	if img == "" {
		if img, err = pipeline.Image(ctx, pipeline.Options{Dir: dir, Offline: o.Offline, Locked: o.Locked, Progress: o.IO.Progress(), Logger: f.Logger}); err != nil {
			return err
		}
	}
	// Verified here under this user's trust policy before any host sees it; a pulled image's
	// signatures go along for each host's own policy.
	vr, err := oci.VerifyLocal(img, c, cfg)
	if err != nil {
		return err
	}
	if vr.Pulled {
		if do.Pulled, err = oci.PullRecord(c, vr.Revision); err != nil {
			return err
		}
	}
	do.Image = img
	results, err := deploy.Deploy(ctx, do)
	if f.JSON && results != nil {
		if perr := f.PrintJSON(results); perr != nil && err == nil {
			err = perr
		}
	} else {
		for _, r := range results {
			fmt.Fprintf(o.IO.Out, "%s\t%s\t%s\t%s\n", r.Host, r.Name, r.Digest, r.Status)
		}
	}
	return err
}

// nameOf is a deployment's name: the argument, else the project's name.
func nameOf(f *cmdutil.Factory, args []string) (string, error) {
	if len(args) == 1 {
		return args[0], runstate.ValidateName(args[0])
	}
	dir, err := f.ProjectDir()
	if err != nil {
		return "", err
	}
	c, err := project.Load(dir)
	if err != nil {
		return "", fmt.Errorf("no NAME given and no project here to take it from: %w", err)
	}
	return c.Project.Name, nil
}

// RemoteOptions are the flags of deploy's subcommands.
type RemoteOptions struct {
	IO            *iostreams.IOStreams
	Factory       *cmdutil.Factory
	SSH           *SSHFlags
	Name          string
	HealthTimeout time.Duration
	Follow        bool
	Tail          int
}

func (o *RemoteOptions) remote(args []string) (deploy.Remote, error) {
	hosts, sshOpts, err := o.SSH.targets()
	if err != nil {
		return deploy.Remote{}, err
	}
	name, err := nameOf(o.Factory, args)
	if err != nil {
		return deploy.Remote{}, err
	}
	return deploy.Remote{Hosts: hosts, SSH: sshOpts, RemoteBin: o.SSH.RemoteBin, Exe: o.Factory.Executable, Name: name,
		HealthTimeout: o.HealthTimeout, Progress: o.IO.Progress()}, nil
}

func newRemoteCmd(f *cmdutil.Factory, use, short, long string, run func(context.Context, *RemoteOptions, deploy.Remote) error) (*cobra.Command, *RemoteOptions) {
	o := &RemoteOptions{IO: f.IO, Factory: f, SSH: &SSHFlags{}}
	cmd := &cobra.Command{
		Use: use, Short: short, Long: long,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := o.remote(args)
			if err != nil {
				return err
			}
			return run(cmd.Context(), o, r)
		},
	}
	sshFlags(cmd, o.SSH)
	return cmd, o
}

func printStatus(o *RemoteOptions, rows []deploy.HostStatus, err error) error {
	if o.Factory.JSON {
		if rows == nil {
			rows = []deploy.HostStatus{}
		}
		if perr := o.Factory.PrintJSON(rows); perr != nil && err == nil {
			err = perr
		}
		return err
	}
	tw := tabwriter.NewWriter(o.IO.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tNAME\tREVISION\tDIGEST\tSUPERVISOR\tSTATUS\tHEALTH\tPREVIOUS")
	for _, s := range rows {
		if s.App == nil || s.App.Current == nil {
			continue
		}
		status, health := "stopped", "-"
		if s.Guest != nil && !s.App.Stopped {
			status = s.Guest.Status
			if len(s.Guest.Health) > 0 {
				health = healthText(s.Guest.Health)
			}
		}
		prev := "-"
		if s.App.Previous != nil {
			prev = s.App.Previous.Digest[:12]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Host, s.App.Name, s.App.Current.ID, s.App.Current.Digest[:12],
			s.App.Supervisor, status, health, prev)
	}
	if ferr := tw.Flush(); err == nil {
		err = ferr
	}
	return err
}

// healthText is each check's status by name, as ps's HEALTH column.
func healthText(h map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(h)) {
		parts = append(parts, k+"="+h[k])
	}
	return strings.Join(parts, ",")
}

func newCmdStatus(f *cmdutil.Factory) *cobra.Command {
	cmd, _ := newRemoteCmd(f, "status --host HOST [NAME]", "Show a deployment on hosts",
		`Status shows the deployment NAME (default: the project's name) on each --host: its current and
previous revisions, its supervisor, and its guest as the host's ukernel ps sees it.`,
		func(ctx context.Context, o *RemoteOptions, r deploy.Remote) error {
			rows, err := deploy.Status(ctx, r)
			return printStatus(o, rows, err)
		})
	cmd.Annotations = map[string]string{cmdutil.InterruptibleAnnotation: "true"}
	return cmd
}

func newCmdStop(f *cmdutil.Factory) *cobra.Command {
	cmd, _ := newRemoteCmd(f, "stop --host HOST [NAME]", "Stop a deployment on hosts",
		`Stop stops the deployment NAME on each --host (its unit, or its monitor's guest). Its images and
revisions stay there: deploy or deploy rollback starts it again.`,
		func(ctx context.Context, o *RemoteOptions, r deploy.Remote) error {
			rows, err := deploy.Stop(ctx, r)
			return printStatus(o, rows, err)
		})
	return cmd
}

func newCmdRollback(f *cmdutil.Factory) *cobra.Command {
	cmd, o := newRemoteCmd(f, "rollback --host HOST [NAME]", "Put a deployment's previous revision back on hosts",
		`Rollback stops the current revision of NAME on each --host and starts the previous one (a second
rollback returns to the first), then waits for its health.`,
		func(ctx context.Context, o *RemoteOptions, r deploy.Remote) error {
			rows, err := deploy.Rollback(ctx, r)
			return printStatus(o, rows, err)
		})
	cmd.Flags().DurationVar(&o.HealthTimeout, "health-timeout", deploy.DefaultHealthTimeout, "how long the previous revision gets to become healthy")
	return cmd
}

func newCmdLogs(f *cmdutil.Factory) *cobra.Command {
	cmd, o := newRemoteCmd(f, "logs --host HOST [NAME]", "Print a deployment's output from hosts",
		`Logs prints what the deployment NAME's workload wrote on each --host (ukernel logs there):
stdout lines to stdout, the others to stderr.`,
		func(ctx context.Context, o *RemoteOptions, r deploy.Remote) error {
			var args []string
			if o.Follow {
				args = append(args, "--follow")
			}
			if o.Tail >= 0 {
				args = append(args, "--tail", fmt.Sprint(o.Tail))
			}
			if o.Factory.JSON {
				args = append(args, "--json")
			}
			return deploy.Logs(ctx, r, args, o.Follow, o.IO.Out, o.IO.ErrOut)
		})
	cmd.Annotations = map[string]string{cmdutil.InterruptibleAnnotation: "true"}
	cmd.Flags().BoolVarP(&o.Follow, "follow", "f", false, "keep printing while the guest runs")
	cmd.Flags().IntVarP(&o.Tail, "tail", "n", -1, "print only the last `N` lines")
	return cmd
}

// NewCmdAgent returns the hidden command deploy runs on the host (deploy.RunAgent).
func NewCmdAgent(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use:    deploy.AgentCommand + " OP [ARG]",
		Hidden: true,
		Args:   cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return deploy.RunAgent(cmd.Context(), f.Executable, args[0], args[1:], f.IO.In, f.IO.Out)
		},
	}
}
