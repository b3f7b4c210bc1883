package push

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/internal/userconfig"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

// NewCmdTemplatePush returns `ukernel template push NAME [REF]`: push REF --template NAME[@REV].
// Without REF it pushes to the templates repository (config.toml [templates] repository, or
// $UKERNEL_TEMPLATE_REPOSITORY) as REPOSITORY/NAME:REV (12 hex digits), and also as :latest
// when the revision is the template's current one.
func NewCmdTemplatePush(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	o := &Options{IO: f.IO, ProjectDir: f.ProjectDir}
	var rev string
	cmd := &cobra.Command{
		Use:   "push NAME [REF]",
		Short: "Push a template's revision to an OCI registry, layout or archive",
		Example: `  ukernel template push api registry.example.com/team/api:v3 --sign
  ukernel template push api --revision 2494a2a74409   # to [templates] repository/api:2494a2a74409`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return cmdutil.Usagef("template push takes a template name and an optional reference, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.JSON, o.Logger, o.Ctx = f.JSON, f.Logger, cmd.Context()
			o.Template = args[0]
			if rev != "" {
				o.Template += "@" + rev
			}
			var refs []string
			if len(args) == 2 {
				refs = []string{args[1]}
			} else {
				var err error
				if refs, err = defaultTemplateRefs(o.Template); err != nil {
					return err
				}
			}
			for _, r := range refs {
				o.Ref = r
				run := pushRun
				if runF != nil {
					run = runF
				}
				if err := run(o); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&rev, "revision", "", "push this revision (an id or its first 4+ hex digits) instead of the current one")
	cmd.Flags().StringVar(&o.Sign, "sign", "", "sign with key NAME from the keys directory (alone: $"+SignEnv+", else config.toml's [sign] key)")
	cmd.Flags().Lookup("sign").NoOptDefVal = DefaultKey
	o.Flags.Add(cmd)
	return cmd
}

// defaultTemplateRefs names a template's revision in the templates repository.
func defaultTemplateRefs(ref string) ([]string, error) {
	cfg, err := userconfig.Load()
	if err != nil {
		return nil, err
	}
	repo := cfg.TemplateRepository()
	if repo == "" {
		return nil, cmdutil.Usagef("template push: give a REF, or set [templates] repository in %s/config.toml (or $%s)", cfg.Dir, userconfig.TemplateRepositoryEnv)
	}
	st, err := template.Open()
	if err != nil {
		return nil, err
	}
	r, err := st.Resolve(ref)
	if err != nil {
		return nil, err
	}
	base := fmt.Sprintf("%s/%s", repo, r.Spec.Name)
	refs := []string{base + ":" + r.Revision.Short()}
	if cur, err := st.Current(r.Spec.Name); err == nil && cur == r.Revision.ID {
		refs = append(refs, base+":latest")
	}
	return refs, nil
}
