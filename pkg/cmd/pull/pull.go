// Package pull is `ukernel pull REF`: an image from an OCI registry, layout or archive into the
// cache, verified blob by blob and checked under the trust policy.
package pull

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/oci"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/internal/userconfig"
	"github.com/ukernel-dev/ukernel/pkg/cmd/internal/regflags"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Options are the inputs of one pull.
type Options struct {
	IO         *iostreams.IOStreams
	ProjectDir func() (string, error)
	Logger     *slog.Logger
	JSON       bool
	Ctx        context.Context

	Ref      string
	Output   string // -o: also write the image there
	Template string // --template NAME: add the image to this template as its current revision
	Flags    regflags.Flags
}

// Output is what --json prints: the pull, and the copy written with -o.
type Output struct {
	oci.PullResult
	Output   string              `json:"output,omitempty"`
	Template *oci.TemplateResult `json:"template_revision,omitempty"`
}

// NewCmdPull returns `ukernel pull`; runF replaces pullRun in tests.
func NewCmdPull(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	o := &Options{IO: f.IO, ProjectDir: f.ProjectDir}
	cmd := &cobra.Command{
		Use:         "pull REF",
		Annotations: map[string]string{cmdutil.InterruptibleAnnotation: "true"}, // every write is atomic: killed, it leaves nothing half-done
		Short:       "Pull an image from an OCI registry, layout or archive",
		Long: `Pull REF (host[:port]/repository[:tag|@sha256:...], oci-layout:DIR[:tag],
oci-archive:FILE.tar[:tag]) into the cache. Every blob is checked against its digest as
it streams and the image is checked as inspect checks it before it is kept; nothing is
kept when a check fails. Under a [trust] policy that names REF, an image without a valid
signature by a trusted key is refused before its layer is read. Prints the image's path
(boot it with run --image PATH); -o also writes a copy; --template NAME adds it to a
template as its current revision (run --template NAME boots it).`,
		Example: `  ukernel pull registry.example.com/team/worker:v1
  ukernel pull 127.0.0.1:5000/worker@sha256:... --insecure -o worker.img`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return cmdutil.Usagef("pull takes one reference, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Ref, o.JSON, o.Logger, o.Ctx = args[0], f.JSON, f.Logger, cmd.Context()
			if runF != nil {
				return runF(o)
			}
			return pullRun(o)
		},
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "also write the image to this file (relative to the project directory)")
	cmd.Flags().StringVar(&o.Template, "template", "", "add the image to template NAME (created when missing) as its current revision")
	o.Flags.Add(cmd)
	return cmd
}

func pullRun(o *Options) error {
	ctx, cancel := o.Flags.Context(o.Ctx)
	defer cancel()
	cfg, err := userconfig.Load()
	if err != nil {
		return err
	}
	topts, err := o.Flags.Options(o.IO, cfg, o.Logger)
	if err != nil {
		return err
	}
	c, err := cache.Open()
	if err != nil {
		return err
	}
	res, err := oci.Pull(ctx, o.Ref, oci.PullOptions{Options: topts, Cache: c})
	if err != nil {
		return err
	}
	out := Output{PullResult: res}
	if o.Template != "" {
		st, err := template.Open()
		if err != nil {
			return err
		}
		tr, err := oci.IntoTemplate(ctx, st, o.Template, res, "ukernel pull")
		if err != nil {
			return err
		}
		out.Template = &tr
	}
	if o.Output != "" {
		dir, err := o.ProjectDir()
		if err != nil {
			return err
		}
		out.Output = cmdutil.ProjectPath(dir, o.Output)
		if err := copyFile(res.Path, out.Output); err != nil {
			return err
		}
	}
	if o.JSON {
		return cmdutil.PrintJSON(o.IO, out)
	}
	path := res.Path
	if out.Output != "" {
		path = out.Output
	}
	fmt.Fprintln(o.IO.Out, path)
	p := o.IO.Progress()
	p.Printf("Pulled %s (revision sha256:%s)", res.Ref, res.Revision[:12])
	if t := out.Template; t != nil {
		p.Printf("Template %s: revision %s is current (run it with 'ukernel run --template %s')", t.Template, t.Revision[:12], t.Template)
	}
	for _, s := range res.Trust.Signers {
		p.Printf("Signed by %s (key %s)", s.Key, s.KeyID)
	}
	return nil
}

// copyFile publishes a copy of src at dst (atomicfile: whole or not at all).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return atomicfile.Write(dst, 0o644, func(f *os.File) error {
		_, err := io.Copy(f, in)
		return err
	})
}
