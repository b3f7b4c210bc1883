// Package verify is `ukernel verify REF|IMG`: an image where it is (a registry, layout or
// archive) or an image file, checked byte for byte and under the trust policy.
package verify

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/oci"
	"github.com/ukernel-dev/ukernel/internal/userconfig"
	"github.com/ukernel-dev/ukernel/pkg/cmd/internal/regflags"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Options are the inputs of one verify.
type Options struct {
	IO         *iostreams.IOStreams
	ProjectDir func() (string, error)
	Logger     *slog.Logger
	JSON       bool
	Ctx        context.Context

	Target string
	Flags  regflags.Flags
}

// NewCmdVerify returns `ukernel verify`; runF replaces verifyRun in tests.
func NewCmdVerify(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	o := &Options{IO: f.IO, ProjectDir: f.ProjectDir}
	cmd := &cobra.Command{
		Use:         "verify REF|IMG",
		Annotations: map[string]string{cmdutil.InterruptibleAnnotation: "true"}, // every write is atomic: killed, it leaves nothing half-done
		Short:       "Verify an image in a registry, layout or archive, or an image file, and say who signed it",
		Long: `Verify REF where it is, writing nothing: the manifest, its signatures under the trust
policy, and every byte of its blobs against their digests. Given an image file (IMG, a
path that exists), verify it as inspect does and, when it came from a pull, apply the
trust policy to the signatures kept with it. Says which trusted keys signed; exits 1 on
any damage or a refusal by the policy.`,
		Example: `  ukernel verify registry.example.com/team/worker:v1
  ukernel verify ~/.cache/ukernel/sha256/ab/ab12...`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return cmdutil.Usagef("verify takes one reference or image path, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Target, o.JSON, o.Logger, o.Ctx = args[0], f.JSON, f.Logger, cmd.Context()
			if runF != nil {
				return runF(o)
			}
			return verifyRun(o)
		},
	}
	o.Flags.Add(cmd)
	return cmd
}

func verifyRun(o *Options) error {
	ctx, cancel := o.Flags.Context(o.Ctx)
	defer cancel()
	cfg, err := userconfig.Load()
	if err != nil {
		return err
	}
	dir, err := o.ProjectDir()
	if err != nil {
		return err
	}
	var res oci.VerifyResult
	if p := cmdutil.ProjectPath(dir, o.Target); !strings.HasPrefix(o.Target, "oci-") && fileExists(p) {
		c, cerr := cache.Open()
		if cerr != nil {
			return cerr
		}
		res, err = oci.VerifyLocal(p, c, cfg)
	} else {
		if _, perr := oci.ParseRef(o.Target); perr != nil {
			// A mistyped image path is no reference either: say both.
			return &cmdutil.ExitError{Code: 1, Err: fmt.Errorf("no image file %s, and %w", p, perr)}
		}
		topts, oerr := o.Flags.Options(o.IO, cfg, o.Logger)
		if oerr != nil {
			return oerr
		}
		res, err = oci.VerifyRemote(ctx, o.Target, topts)
	}
	if err != nil {
		if o.JSON {
			_ = cmdutil.PrintJSON(o.IO, res)
		}
		return &cmdutil.ExitError{Code: 1, Err: err}
	}
	if o.JSON {
		return cmdutil.PrintJSON(o.IO, res)
	}
	w := o.IO.Out
	if res.Ref != "" {
		fmt.Fprintf(w, "Reference: %s\n", res.Ref)
	}
	if res.Image != "" {
		fmt.Fprintf(w, "Image: %s\n", res.Image)
	}
	fmt.Fprintf(w, "Revision: sha256:%s\n", res.Revision)
	fmt.Fprintf(w, "Verified: ok\n")
	switch {
	case len(res.Trust.Signers) > 0:
		for _, s := range res.Trust.Signers {
			fmt.Fprintf(w, "Signed by: %s (key %s)\n", s.Key, s.KeyID)
		}
	case res.Image != "" && !res.Pulled:
		fmt.Fprintf(w, "Signed by: unknown (a local image; signatures are kept for pulled images)\n")
	default:
		fmt.Fprintf(w, "Signed by: no trusted key\n")
	}
	for _, id := range res.Trust.Untrusted {
		fmt.Fprintf(w, "Also signed by untrusted key %s\n", id)
	}
	if res.Trust.Required {
		fmt.Fprintf(w, "Policy: signature required ([trust] require %q)\n", res.Trust.Rule)
	}
	return nil
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
