package template

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

// CreateOptions are the inputs of `template create`.
type CreateOptions struct {
	Common
	Name    string
	From    string // the project; "" is the project directory (-C)
	Role    string
	Roles   []string // one template NAME-ROLE per role
	Release bool
	Run     template.Spec // the run settings given
}

// runFlags adds the run-setting flags of create and edit.
func runFlags(fl *pflag.FlagSet, s *template.Spec) {
	fl.IntVar(&s.VCPU, "vcpu", 0, "virtual CPUs, 1-32 (default: the image's [run] vcpu)")
	fl.IntVar(&s.MemoryMB, "memory", 0, "memory in MiB, 64-65536 (default: the image's [run] memory_mb)")
	fl.IntVar(&s.DataMB, "data-mb", 0, "size of the template's own data volume in MiB (default: the image's [data] disk_mb)")
	fl.StringVar(&s.Net, "net", "", "network: user, none or tap:IFACE (default: the image's [run] net)")
	fl.StringArrayVar(&s.Publish, "publish", nil, "publish a guest TCP port as HOST:GUEST (repeatable; default: the image's [run] publish)")
}

// NewCmdCreate returns `template create`.
func NewCmdCreate(f *cmdutil.Factory, runF func(*CreateOptions) error) *cobra.Command {
	opts := &CreateOptions{Common: newCommon(f)}
	cmd := &cobra.Command{
		Use:   "create NAME [--from DIR] [--role R | --roles a,b] [--release] [--vcpu N] [--memory MB] [--data-mb MB] [--net MODE]",
		Short: "Create a template from a project's role",
		Long: `Create registers a template: a name, a source project (--from, default the project
directory), a role of its ukernel.toml ([roles.NAME]; none for a project without roles), a
build setting (--release) and run settings, which apply at run time as run's flags do. Nothing
is built: see ukernel template build. --roles a,b creates one template per role, NAME-a and
NAME-b. The project must be valid and define the roles; nothing is written otherwise.`,
		Example: `  ukernel template create api --role api --vcpu 2 --memory 512
  ukernel template create shop --from ../shop --roles api,worker
  ukernel template create hello --data-mb 64`,
		Args: nameArg("create"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name, opts.JSON = args[0], f.JSON
			if err := template.ValidateName(opts.Name); err != nil {
				return &cmdutil.UsageError{Err: err}
			}
			if opts.Role != "" && len(opts.Roles) > 0 {
				return cmdutil.Usagef("--role and --roles exclude each other: --roles makes one template per role")
			}
			if err := opts.Run.ValidateRun(); err != nil {
				return &cmdutil.UsageError{Err: err}
			}
			if runF != nil {
				return runF(opts)
			}
			return createRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.From, "from", "", "the project directory (default: -C, the current one)")
	fl.StringVar(&opts.Role, "role", "", "the [roles.NAME] of ukernel.toml the image runs")
	fl.StringSliceVar(&opts.Roles, "roles", nil, "create NAME-ROLE for each of these roles (comma-separated)")
	fl.BoolVar(&opts.Release, "release", false, "build a release image (as build --release)")
	runFlags(fl, &opts.Run)
	return cmd
}

// sourceDir is --from (relative to the working directory, as a shell path) or -C, absolute.
func sourceDir(c Common, from string) (string, error) {
	if from == "" {
		return c.ProjectDir()
	}
	return filepath.Abs(from)
}

func createRun(ctx context.Context, opts *CreateOptions) error {
	src, err := sourceDir(opts.Common, opts.From)
	if err != nil {
		return err
	}
	cfg, err := project.Load(src)
	if err != nil {
		return err
	}
	base := opts.Run
	base.Source, base.Release, base.Role = src, opts.Release, opts.Role
	var specs []template.Spec
	if len(opts.Roles) == 0 {
		specs = append(specs, withName(base, opts.Name))
	}
	for _, r := range opts.Roles {
		s := base
		s.Role = r
		specs = append(specs, withName(s, opts.Name+"-"+r))
	}
	store, err := opts.Store()
	if err != nil {
		return err
	}
	// Every check first: nothing is written when one fails.
	for _, s := range specs {
		if _, err := cfg.WithRole(s.Role); err != nil {
			return err
		}
		if err := template.ValidateName(s.Name); err != nil {
			return err
		}
		if _, err := store.Get(s.Name); err == nil {
			return &template.ExistsError{Name: s.Name}
		}
	}
	for i := range specs {
		if err := store.Create(&specs[i]); err != nil {
			return err
		}
		if !opts.JSON {
			fmt.Fprintf(opts.IO.Out, "Created template %s (%s, role %s)\n", specs[i].Name, src, roleName(specs[i].Role))
		}
	}
	if opts.JSON {
		return cmdutil.PrintJSON(opts.IO, specs)
	}
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	opts.IO.Progress().Printf("Build with: ukernel template build %s", strings.Join(names, " "))
	return nil
}

func withName(s template.Spec, name string) template.Spec {
	s.Name = name
	return s
}
