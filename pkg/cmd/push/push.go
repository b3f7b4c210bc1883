// Package push is `ukernel push REF`: an image (the project's, a file, or a template's
// revision) into an OCI registry, layout or archive, signed on request.
package push

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/oci"
	"github.com/ukernel-dev/ukernel/internal/pipeline"
	"github.com/ukernel-dev/ukernel/internal/sign"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/internal/userconfig"
	"github.com/ukernel-dev/ukernel/pkg/cmd/internal/regflags"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Options are the inputs of one push.
type Options struct {
	IO         *iostreams.IOStreams
	ProjectDir func() (string, error)
	Logger     *slog.Logger
	JSON       bool
	Ctx        context.Context

	Ref      string
	Image    string // --image; empty: the project's image, built when out of date
	Template string // --template NAME[@REV]: a template's (current or given) revision
	Sign     string // --sign NAME; "-" for the default key
	Flags    regflags.Flags
}

// SignEnv names the signing key when --sign is given no name (before config.toml's [sign] key).
const SignEnv = "UKERNEL_SIGN_KEY"

// DefaultKey is --sign given alone.
const DefaultKey = "-"

// NewCmdPush returns `ukernel push`; runF replaces pushRun in tests.
func NewCmdPush(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	o := &Options{IO: f.IO, ProjectDir: f.ProjectDir}
	cmd := &cobra.Command{
		Use:         "push REF",
		Annotations: map[string]string{cmdutil.InterruptibleAnnotation: "true"}, // every write is atomic: killed, it leaves nothing half-done
		Short:       "Push an image to an OCI registry, layout or archive",
		Long: `Push the project's image (built first when out of date), --image IMG, or a template's
revision (--template NAME[@REV]; the manifest records the template's name) to REF:
host[:port]/repository[:tag] (default tag latest), oci-layout:DIR[:tag] or
oci-archive:FILE.tar[:tag]. The image is checked as inspect checks it; blobs the
destination already has are not sent again. --sign attaches a minisign signature of the
manifest as a referrer (docs/DISTRIBUTION.md).`,
		Example: `  ukernel push registry.example.com/team/worker:v1 --sign
  ukernel push 127.0.0.1:5000/worker:v1 --insecure --image dist/example-worker.img
  ukernel push oci-archive:worker.tar --json
  ukernel push registry.example.com/team/api:v3 --template api --sign`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return cmdutil.Usagef("push takes one reference, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Ref, o.JSON, o.Logger, o.Ctx = args[0], f.JSON, f.Logger, cmd.Context()
			if runF != nil {
				return runF(o)
			}
			return pushRun(o)
		},
	}
	cmd.Flags().StringVar(&o.Image, "image", "", "push this image file (relative to the project directory) instead of the project's")
	cmd.Flags().StringVar(&o.Template, "template", "", "push template NAME's current revision, or NAME@REV's")
	cmd.MarkFlagsMutuallyExclusive("image", "template")
	cmd.Flags().StringVar(&o.Sign, "sign", "", "sign with key NAME from the keys directory (alone: $"+SignEnv+", else config.toml's [sign] key)")
	cmd.Flags().Lookup("sign").NoOptDefVal = DefaultKey
	o.Flags.Add(cmd)
	return cmd
}

func pushRun(o *Options) error {
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
	key, err := SigningKey(cfg, o.Sign)
	if err != nil {
		return err
	}
	dir, err := o.ProjectDir()
	if err != nil {
		return err
	}
	img := cmdutil.ProjectPath(dir, o.Image)
	var tmpl string
	if o.Template != "" {
		st, err := template.Open()
		if err != nil {
			return err
		}
		r, err := st.Resolve(o.Template)
		if err != nil {
			return err
		}
		img, tmpl = r.Image, r.Spec.Name
	}
	if img == "" {
		img, err = pipeline.Image(ctx, pipeline.Options{Dir: dir, Progress: o.IO.Progress(), Logger: o.Logger, Command: "ukernel push"})
		if err != nil {
			return err
		}
	}
	c, err := cache.Open()
	if err != nil {
		return err
	}
	res, err := oci.Push(ctx, img, o.Ref, oci.PushOptions{Options: topts, Cache: c, Key: key, Template: tmpl})
	if err != nil {
		return err
	}
	if o.JSON {
		return cmdutil.PrintJSON(o.IO, res)
	}
	fmt.Fprintf(o.IO.Out, "%s\n", res.Ref)
	p := o.IO.Progress()
	switch {
	case res.Sent() == 0 && !res.Tagged:
		p.Printf("Up to date: %s already names revision sha256:%s (no blob sent)", o.Ref, res.Revision[:12])
	default:
		p.Printf("Pushed revision sha256:%s (%d of %d blobs sent)", res.Revision[:12], res.Sent(), len(res.Blobs))
	}
	if res.Signature != nil {
		p.Printf("Signed with key %s (%s)", res.KeyID, res.Signature.Digest)
	}
	return nil
}

// SigningKey resolves --sign: a name given with the flag, else $UKERNEL_SIGN_KEY, else
// config.toml's [sign] key.
func SigningKey(cfg *userconfig.Config, flag string) (*sign.PrivateKey, error) {
	if flag == "" {
		return nil, nil
	}
	name := flag
	if name == DefaultKey {
		name = os.Getenv(SignEnv)
		if name == "" {
			name = cfg.File.Sign.Key
		}
		if name == "" {
			return nil, cmdutil.Usagef("--sign: no key named; give one (--sign=NAME), set %s, or set [sign] key in %s/config.toml", SignEnv, cfg.Dir)
		}
	}
	k, err := cfg.SigningKey(name)
	if err != nil {
		return nil, err
	}
	return &k, nil
}
