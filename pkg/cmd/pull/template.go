package pull

import (
	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/internal/userconfig"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

// NewCmdTemplatePull returns `ukernel template pull NAME [REF]`: pull REF --template NAME.
// Without REF it pulls REPOSITORY/NAME:latest (or :REV with --revision) from the templates
// repository (config.toml [templates] repository, or $UKERNEL_TEMPLATE_REPOSITORY).
func NewCmdTemplatePull(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	o := &Options{IO: f.IO, ProjectDir: f.ProjectDir}
	var rev string
	cmd := &cobra.Command{
		Use:   "pull NAME [REF]",
		Short: "Pull a template's revision from an OCI registry, layout or archive",
		Long: `Pull REF into template NAME (created when missing, with no source: it runs, it does not
build) and make it the current revision. Checked as pull checks any image: every blob
against its digest, the image as inspect does, the trust policy.`,
		Example: `  ukernel template pull api registry.example.com/team/api:v3
  ukernel template pull api            # [templates] repository/api:latest
  ukernel run --template api`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return cmdutil.Usagef("template pull takes a template name and an optional reference, got %d arguments", len(args))
			}
			return template.ValidateName(args[0])
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.JSON, o.Logger, o.Ctx = f.JSON, f.Logger, cmd.Context()
			o.Template = args[0]
			if len(args) == 2 {
				o.Ref = args[1]
			} else {
				cfg, err := userconfig.Load()
				if err != nil {
					return err
				}
				repo := cfg.TemplateRepository()
				if repo == "" {
					return cmdutil.Usagef("template pull: give a REF, or set [templates] repository in %s/config.toml (or $%s)", cfg.Dir, userconfig.TemplateRepositoryEnv)
				}
				tag := "latest"
				if rev != "" {
					tag = rev
				}
				o.Ref = repo + "/" + o.Template + ":" + tag
			}
			if runF != nil {
				return runF(o)
			}
			return pullRun(o)
		},
	}
	cmd.Flags().StringVar(&rev, "revision", "", "without REF: pull the tag of this revision (its first 12 hex digits, as template push names it)")
	o.Flags.Add(cmd)
	return cmd
}
