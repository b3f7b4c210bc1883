package template

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/oci"
	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/internal/template"
	initcmd "github.com/ukernel-dev/ukernel/pkg/cmd/init"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

func openRunstate() (*runstate.Store, error) { return runstate.Open() }

// RollbackOptions are the inputs of `template rollback`.
type RollbackOptions struct {
	Common
	Name string
	Rev  string // "" for the revision before the current one
}

// Rolled is what rollback reports.
type Rolled struct {
	Name     string `json:"name"`
	Current  string `json:"current"`
	Previous string `json:"previous"`
}

// NewCmdRollback returns `template rollback`.
func NewCmdRollback(f *cmdutil.Factory, runF func(*RollbackOptions) error) *cobra.Command {
	opts := &RollbackOptions{Common: newCommon(f)}
	return &cobra.Command{
		Use:   "rollback NAME [REV]",
		Short: "Make the previous (or the given) revision current",
		Long: `Rollback makes the revision added before the current one current, or REV (an id or its
first 4 or more hex digits; see template revisions). The next run boots it; a build with
unchanged inputs makes the revision of those inputs current again.`,
		Example: "  ukernel template rollback api\n  ukernel template rollback api 3f2a9c01",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return cmdutil.Usagef("template rollback takes a template name and optionally a revision, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name, opts.JSON = args[0], f.JSON
			if len(args) == 2 {
				opts.Rev = args[1]
			}
			if _, _, err := template.ParseRef(opts.Name + "@" + opts.Rev); err != nil && opts.Rev != "" {
				return &cmdutil.UsageError{Err: err}
			}
			if runF != nil {
				return runF(opts)
			}
			return rollbackRun(cmd.Context(), opts)
		},
	}
}

func rollbackRun(ctx context.Context, opts *RollbackOptions) error {
	s, err := opts.Store()
	if err != nil {
		return err
	}
	release, err := s.Lock(ctx, opts.Name, "ukernel template rollback", nil)
	if err != nil {
		return err
	}
	defer release()
	cur, err := s.Current(opts.Name)
	if err != nil {
		return err
	}
	var target *template.Revision
	if opts.Rev == "" {
		target, err = s.Previous(opts.Name)
	} else {
		target, err = s.Revision(opts.Name, opts.Rev)
	}
	if err != nil {
		return err
	}
	if err := s.SetCurrent(opts.Name, target.ID); err != nil {
		return err
	}
	out := Rolled{Name: opts.Name, Current: target.ID, Previous: cur}
	if opts.JSON {
		return cmdutil.PrintJSON(opts.IO, out)
	}
	fmt.Fprintf(opts.IO.Out, "%s: revision %s is current (was %s)\n", opts.Name, target.Short(), template.ShortID(cur))
	return nil
}

// VerifyOptions are the inputs of `template verify`.
type VerifyOptions struct {
	Common
	Name     string
	Revision string // --revision: only this one
}

// Verified is one revision's check.
type Verified struct {
	ID      string `json:"id"`
	Current bool   `json:"current"`
	OK      bool   `json:"ok"`
	Error   string `json:"error,omitempty"`
}

// NewCmdVerify returns `template verify`.
func NewCmdVerify(f *cmdutil.Factory, runF func(*VerifyOptions) error) *cobra.Command {
	opts := &VerifyOptions{Common: newCommon(f)}
	cmd := &cobra.Command{
		Use:         "verify NAME",
		Annotations: map[string]string{cmdutil.InterruptibleAnnotation: "true"},
		Short:       "Check every stored revision's image against its digest",
		Long: `Verify reads each revision's image in full: its SHA-256 must be the revision id, and every
part must pass inspect's checks (partition tables, partition digests, manifest, kernel,
initramfs). A revision that came from a pull must also still satisfy the trust policy with the
signatures kept from that pull (docs/DISTRIBUTION.md). It exits 1 naming each damaged or refused
revision.`,
		Example: "  ukernel template verify api\n  ukernel template verify api --revision 2494a2a7",
		Args:    nameArg("verify"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name, opts.JSON = args[0], f.JSON
			if runF != nil {
				return runF(opts)
			}
			return verifyRun(opts)
		},
	}
	cmd.Flags().StringVar(&opts.Revision, "revision", "", "verify only this revision (an id or its first 4+ hex digits)")
	return cmd
}

func verifyRun(opts *VerifyOptions) error {
	s, err := opts.Store()
	if err != nil {
		return err
	}
	revs, err := s.Revisions(opts.Name)
	if err != nil {
		return err
	}
	if opts.Revision != "" {
		r, err := s.Revision(opts.Name, opts.Revision)
		if err != nil {
			return err
		}
		revs = []template.Revision{*r}
	}
	if len(revs) == 0 {
		return &template.NoRevisionError{Name: opts.Name}
	}
	cur, err := s.Current(opts.Name)
	if err != nil {
		return err
	}
	rows := []Verified{}
	var errs []error
	for _, r := range revs {
		v := Verified{ID: r.ID, Current: r.ID == cur, OK: true}
		err := s.Verify(opts.Name, r.ID)
		if err == nil {
			err = oci.CheckPulled(s.ImagePath(opts.Name, r.ID))
		}
		if err != nil {
			v.OK, v.Error = false, err.Error()
			errs = append(errs, err)
		}
		rows = append(rows, v)
		if !opts.JSON {
			state := "ok"
			if !v.OK {
				state = "DAMAGED"
			}
			fmt.Fprintf(opts.IO.Out, "%s  %s\n", r.Short(), state)
		}
	}
	if opts.JSON {
		if err := cmdutil.PrintJSON(opts.IO, rows); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// InitOptions are the inputs of `template init`.
type InitOptions struct {
	Common
	Name string
	Init *initcmd.Options
	// Scaffold writes the project (initcmd.Run outside tests).
	Scaffold func(context.Context, *initcmd.Options) error
}

// NewCmdInit returns `template init`.
func NewCmdInit(f *cmdutil.Factory, runF func(*InitOptions) error) *cobra.Command {
	opts := &InitOptions{Common: newCommon(f), Scaffold: initcmd.Run}
	io := initcmd.NewOptions(f)
	opts.Init = io
	cmd := &cobra.Command{
		Use:   "init NAME [--template PRESET | --prompt TEXT] [--lang L]",
		Short: "Scaffold a project in ./NAME as ukernel init does, and register it as a template",
		Long: `Init writes a new project into ./NAME (under -C DIR when given) exactly as
ukernel init --name NAME would, then creates the template NAME from it. Build it with
ukernel template build NAME.`,
		Example: `  ukernel template init api --template http --lang python
  ukernel template init jobs --prompt "a worker that prints a tick"`,
		Args: nameArg("init"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name, opts.JSON = args[0], f.JSON
			if err := template.ValidateName(opts.Name); err != nil {
				return &cmdutil.UsageError{Err: err}
			}
			io.Name, io.JSON = opts.Name, false
			io.PromptGiven = cmd.Flags().Changed("prompt")
			if err := io.Check(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return initRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&io.Lang, "lang", "", "language (as ukernel init --lang)")
	fl.StringVar(&io.Template, "template", "", "preset (as ukernel init --template)")
	fl.StringVar(&io.Prompt, "prompt", "", "describe the project (as ukernel init --prompt)")
	fl.BoolVar(&io.Force, "force", false, "overwrite existing files in ./NAME")
	return cmd
}

func initRun(ctx context.Context, opts *InitOptions) error {
	s, err := opts.Store()
	if err != nil {
		return err
	}
	if _, err := s.Get(opts.Name); err == nil {
		return &template.ExistsError{Name: opts.Name}
	}
	parent, err := opts.ProjectDir()
	if err != nil {
		return err
	}
	dir := filepath.Join(parent, opts.Name)
	opts.Init.ProjectDir = func() (string, error) { return dir, nil }
	if opts.JSON {
		// One document on stdout, the template's: init's lines of the files it wrote go to
		// stderr.
		out := opts.Init.IO.Out
		opts.Init.IO.Out = opts.Init.IO.ErrOut
		err = opts.Scaffold(ctx, opts.Init)
		opts.Init.IO.Out = out
	} else {
		err = opts.Scaffold(ctx, opts.Init)
	}
	if err != nil {
		return err
	}
	spec := template.Spec{Name: opts.Name, Source: dir}
	if err := s.Create(&spec); err != nil {
		return err
	}
	if opts.JSON {
		return cmdutil.PrintJSON(opts.IO, spec)
	}
	fmt.Fprintf(opts.IO.Out, "Created template %s (%s); build it with: ukernel template build %s\n", opts.Name, dir, opts.Name)
	return nil
}
