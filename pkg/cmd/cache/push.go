package cache

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	icache "github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/pipeline"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/remotecache"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/internal/userconfig"
	"github.com/ukernel-dev/ukernel/pkg/cmd/push"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// PushOptions are the inputs of `cache push`.
type PushOptions struct {
	IO         *iostreams.IOStreams
	ProjectDir func() (string, error)
	JSON       bool
	Logger     *slog.Logger
	Command    string

	Remote            string // --remote, over UKERNEL_CACHE_REMOTE and the config files
	Template          string // --template NAME: its current revision
	Sign              string // --sign NAME; push.DefaultKey for the default key
	Release, Readonly bool
}

// NewCmdPush returns `ukernel cache push`; runF, when set, gets the parsed options instead of
// pushRun (tests).
func NewCmdPush(f *cmdutil.Factory, runF func(*PushOptions) error) *cobra.Command {
	opts := &PushOptions{IO: f.IO, ProjectDir: f.ProjectDir}
	cmd := &cobra.Command{
		Use:         "push",
		Annotations: map[string]string{cmdutil.InterruptibleAnnotation: "true"}, // every write is atomic
		Short:       "Publish the project's image (or a template's) to the shared build cache under its input key",
		Long: `Push packs the project when its image is out of date (as pack would, with the same
--release and --readonly) and publishes it to the shared build cache ([cache] remote, or
UKERNEL_CACHE_REMOTE, or --remote) under the tag ukernel-cache-<input key>, where pack, run
and template build on other machines look it up. Only a writer pushes: [cache] push = true in
config.toml, or UKERNEL_CACHE_PUSH=1 (a CI job); the cache is read-only otherwise.
See docs/DISTRIBUTION.md.`,
		Example: `  UKERNEL_CACHE_PUSH=1 ukernel cache push --remote registry.example.com/team/cache --sign=ci
  ukernel cache push --template api --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON, opts.Logger, opts.Command = f.JSON, f.Logger, cmd.CommandPath()
			if runF != nil {
				return runF(opts)
			}
			return pushRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Remote, "remote", "", "the cache, host[:port]/repository (default: UKERNEL_CACHE_REMOTE, ukernel.toml, config.toml)")
	cmd.Flags().StringVar(&opts.Template, "template", "", "push template NAME's current revision instead of the project's image")
	cmd.Flags().StringVar(&opts.Sign, "sign", "", "sign with key NAME from the keys directory (alone: $"+push.SignEnv+", else config.toml's [sign] key)")
	cmd.Flags().Lookup("sign").NoOptDefVal = push.DefaultKey
	cmd.Flags().BoolVar(&opts.Release, "release", false, "the image pack --release makes")
	cmd.Flags().BoolVar(&opts.Readonly, "readonly", false, "the image pack --readonly makes")
	cmd.MarkFlagsMutuallyExclusive("template", "release")
	cmd.MarkFlagsMutuallyExclusive("template", "readonly")
	return cmd
}

func pushRun(ctx context.Context, opts *PushOptions) error {
	user, err := userconfig.Load()
	if err != nil {
		return err
	}
	// A reader learns it before anything is packed.
	if s, err := remotecache.Resolve(opts.Remote, nil, user); err != nil || !s.Push {
		if err == nil {
			err = remotecache.ErrReadOnly
		}
		return err
	}
	key, err := push.SigningKey(user, opts.Sign)
	if err != nil {
		return err
	}
	c, err := icache.Open()
	if err != nil {
		return err
	}
	var proj *project.Config
	var img, inputKey string
	if opts.Template != "" {
		if img, inputKey, err = templateImage(opts.Template); err != nil {
			return err
		}
	} else {
		dir, err := opts.ProjectDir()
		if err != nil {
			return err
		}
		po := pipeline.Options{Dir: dir, Release: opts.Release, Readonly: opts.Readonly, Progress: opts.IO.Progress(), Logger: opts.Logger, Command: opts.Command}
		p, r, err := pipeline.PackProject(ctx, po)
		if err != nil {
			return err
		}
		proj, img, inputKey = p.Config, r.Image, r.InputKey
	}
	settings, err := remotecache.Resolve(opts.Remote, proj, user)
	if err != nil {
		return err
	}
	if settings.Remote == "" {
		return cmdutil.Usagef("no remote cache: set [cache] remote in config.toml or %s, set %s, or pass --remote", project.ConfigFile, remotecache.Env)
	}
	res, err := remotecache.Open(settings, user, c, opts.IO.Progress(), opts.Logger).Push(ctx, inputKey, img, key)
	if err != nil {
		return err
	}
	if opts.JSON {
		return cmdutil.PrintJSON(opts.IO, res)
	}
	fmt.Fprintf(opts.IO.Out, "%s\n", res.Ref)
	opts.IO.Progress().Printf("Published revision sha256:%s under input key %s (%d of %d blobs sent)", res.Revision[:12], inputKey[:12], res.Sent(), len(res.Blobs))
	return nil
}

// templateImage is a template's current revision and its input key, from the inputs the
// revision recorded (a template builds with a data volume's modules: pipeline.Options).
func templateImage(name string) (string, string, error) {
	st, err := template.Open()
	if err != nil {
		return "", "", err
	}
	r, err := st.Resolve(name)
	if err != nil {
		return "", "", err
	}
	if r.Revision.Inputs == nil {
		return "", "", fmt.Errorf("template %s: revision %s records no inputs (it was pulled, not built): only a build's revision has an input key", name, r.Revision.ID[:12])
	}
	return r.Image, pipeline.ImageKey(*r.Revision.Inputs, pipeline.Options{DataVolume: true}), nil
}
