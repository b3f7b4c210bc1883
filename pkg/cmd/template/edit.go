package template

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/internal/vmm/launch"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

// EditOptions are the inputs of `template edit`.
type EditOptions struct {
	Common
	Name    string
	From    *string
	Role    *string
	Release *bool
	Run     template.Spec
	Changed func(flag string) bool // which run flags were given
}

// Edited is what edit reports.
type Edited struct {
	Name    string        `json:"name"`
	Changes []string      `json:"changes"` // "vcpu: 1 -> 2"
	Rebuild bool          `json:"rebuild"` // the image changes: build again
	Spec    template.Spec `json:"spec"`
}

// NewCmdEdit returns `template edit`.
func NewCmdEdit(f *cmdutil.Factory, runF func(*EditOptions) error) *cobra.Command {
	opts := &EditOptions{Common: newCommon(f)}
	var from, role string
	var release bool
	cmd := &cobra.Command{
		Use:   "edit NAME [--vcpu N] [--memory MB] [--data-mb MB] [--net MODE] [--publish H:G] [--from DIR] [--role R] [--release=BOOL]",
		Short: "Change a template's settings, and say whether a rebuild is needed",
		Long: `Edit changes the settings given and leaves the others. Run settings (--vcpu, --memory,
--data-mb, --net, --publish) apply at the next run with no rebuild; --from, --role and
--release change the image, so edit says to build again. A template with a running guest is
not edited (stop it first). 0 (or "" for --net) gives a run setting back to the image.`,
		Example: `  ukernel template edit api --vcpu 2 --memory 1024
  ukernel template edit api --role worker
  ukernel template edit api --from ~/src/api`,
		Args: nameArg("edit"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name, opts.JSON = args[0], f.JSON
			fl := cmd.Flags()
			opts.Changed = fl.Changed
			if fl.Changed("from") {
				opts.From = &from
			}
			if fl.Changed("role") {
				opts.Role = &role
			}
			if fl.Changed("release") {
				opts.Release = &release
			}
			if err := opts.Run.ValidateRun(); err != nil {
				return &cmdutil.UsageError{Err: err}
			}
			if fl.NFlag() == 0 {
				return cmdutil.Usagef("template edit %s: nothing to change; give a setting such as --vcpu 2 (see --help)", opts.Name)
			}
			if runF != nil {
				return runF(opts)
			}
			return editRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&from, "from", "", "the project directory")
	fl.StringVar(&role, "role", "", "the [roles.NAME] the image runs (\"\": the project's own settings)")
	fl.BoolVar(&release, "release", false, "build release images")
	runFlags(fl, &opts.Run)
	return cmd
}

func editRun(ctx context.Context, opts *EditOptions) error {
	s, err := opts.Store()
	if err != nil {
		return err
	}
	release, err := s.Lock(ctx, opts.Name, "ukernel template edit", nil)
	if err != nil {
		return err
	}
	defer release()
	guests, err := opts.Running(opts.Name)
	if err != nil {
		return err
	}
	if len(guests) > 0 {
		return runningError(opts.Name, "its settings are not changed under it", guests)
	}
	spec, err := s.Get(opts.Name)
	if err != nil {
		return err
	}
	next := *spec
	if opts.From != nil {
		if next.Source, err = sourceDir(opts.Common, *opts.From); err != nil {
			return err
		}
	}
	if opts.Role != nil {
		next.Role = *opts.Role
	}
	if opts.Release != nil {
		next.Release = *opts.Release
	}
	if opts.From != nil || opts.Role != nil {
		// The new source must be a project defining the role; the pulled template's nil
		// source stays nil unless --from is given.
		if next.Source == "" {
			return fmt.Errorf("template %s has no source project (it was pulled): give --from DIR to build it from one", opts.Name)
		}
		cfg, err := project.Load(next.Source)
		if err != nil {
			return err
		}
		if _, err := cfg.WithRole(next.Role); err != nil {
			return err
		}
	}
	for flag, set := range map[string]func(){
		"vcpu":    func() { next.VCPU = opts.Run.VCPU },
		"memory":  func() { next.MemoryMB = opts.Run.MemoryMB },
		"data-mb": func() { next.DataMB = opts.Run.DataMB },
		"net":     func() { next.Net = opts.Run.Net },
		"publish": func() { next.Publish = opts.Run.Publish },
	} {
		if opts.Changed(flag) {
			set()
		}
	}
	out := Edited{Name: opts.Name, Changes: changes(*spec, next), Rebuild: spec.BuildSettings() != next.BuildSettings()}
	if len(out.Changes) > 0 {
		if err := s.Save(&next); err != nil {
			return err
		}
	}
	out.Spec = next
	if opts.JSON {
		return cmdutil.PrintJSON(opts.IO, out)
	}
	switch {
	case len(out.Changes) == 0:
		fmt.Fprintf(opts.IO.Out, "%s: nothing changed\n", opts.Name)
	case out.Rebuild:
		fmt.Fprintf(opts.IO.Out, "%s: %s; the image changes: rebuild with 'ukernel template build %s'\n", opts.Name, strings.Join(out.Changes, ", "), opts.Name)
	default:
		fmt.Fprintf(opts.IO.Out, "%s: %s; no rebuild needed (run settings apply at the next run)\n", opts.Name, strings.Join(out.Changes, ", "))
	}
	return nil
}

// changes lists the settings that differ, in ukernel.toml's names.
func changes(a, b template.Spec) []string {
	var out []string
	add := func(key string, x, y any) {
		if fmt.Sprint(x) != fmt.Sprint(y) {
			out = append(out, fmt.Sprintf("%s: %v -> %v", key, x, y))
		}
	}
	add("source", a.Source, b.Source)
	add("role", roleName(a.Role), roleName(b.Role))
	add("release", a.Release, b.Release)
	add("vcpu", setting(a.VCPU), setting(b.VCPU))
	add("memory_mb", setting(a.MemoryMB), setting(b.MemoryMB))
	add("data_mb", setting(a.DataMB), setting(b.DataMB))
	add("net", setting(a.Net), setting(b.Net))
	if !slices.Equal(a.Publish, b.Publish) {
		out = append(out, fmt.Sprintf("publish: %s -> %s", publishList(a.Publish), publishList(b.Publish)))
	}
	return out
}

// DeleteOptions are the inputs of `template delete`.
type DeleteOptions struct {
	Common
	Name  string
	Force bool
	Stop  func(ctx context.Context, guest string) error
}

// NewCmdDelete returns `template delete`.
func NewCmdDelete(f *cmdutil.Factory, runF func(*DeleteOptions) error) *cobra.Command {
	opts := &DeleteOptions{Common: newCommon(f), Stop: func(ctx context.Context, guest string) error {
		st, err := openRunstate()
		if err != nil {
			return err
		}
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), launch.DefaultStopTimeout+15*time.Second)
		defer cancel()
		_, err = launch.StopGuest(stopCtx, st, guest, launch.DefaultStopTimeout, f.Logger)
		return err
	}}
	cmd := &cobra.Command{
		Use:   "delete NAME [--force]",
		Short: "Delete a template: its revisions, logs and data volume",
		Long: `Delete removes the template's whole tree: revisions (an image another template shares stays
there), run logs and data volume. It refuses while a guest of the template runs; --force
stops the guest first (gracefully, then forced).`,
		Example: "  ukernel template delete api\n  ukernel template delete api --force",
		Args:    nameArg("delete"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name, opts.JSON = args[0], f.JSON
			if runF != nil {
				return runF(opts)
			}
			return deleteRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Force, "force", false, "stop the template's running guests first")
	return cmd
}

func deleteRun(ctx context.Context, opts *DeleteOptions) error {
	s, err := opts.Store()
	if err != nil {
		return err
	}
	release, err := s.Lock(ctx, opts.Name, "ukernel template delete", nil)
	if err != nil {
		return err
	}
	defer release()
	guests, err := opts.Running(opts.Name)
	if err != nil {
		return err
	}
	if len(guests) > 0 && !opts.Force {
		return runningError(opts.Name, "it is not deleted (--force stops it)", guests)
	}
	for _, g := range guests {
		opts.IO.Progress().Printf("Stopping %s", g.Name)
		if err := opts.Stop(ctx, g.Name); err != nil {
			return fmt.Errorf("stop %s: %w", g.Name, err)
		}
	}
	// Their records would point at logs that are gone, and writing their outcome there
	// would make the directory again.
	if err := opts.Forget(opts.Name); err != nil {
		return err
	}
	if err := s.Delete(opts.Name); err != nil {
		return err
	}
	if opts.JSON {
		return cmdutil.PrintJSON(opts.IO, map[string]string{"name": opts.Name, "result": "deleted"})
	}
	fmt.Fprintf(opts.IO.Out, "Deleted template %s\n", opts.Name)
	return nil
}

// publishList shows published ports as the flags take them, imageDefault for none.
func publishList(p []string) string {
	if len(p) == 0 {
		return imageDefault
	}
	return strings.Join(p, " ")
}
