// Package pack is the `ukernel pack` command.
package pack

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/pipeline"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/remotecache"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Options are the inputs of `pack`.
type Options struct {
	IO         *iostreams.IOStreams
	ProjectDir func() (string, error)
	JSON       bool
	Logger     *slog.Logger
	Command    string // named by the project lock to a command waiting for it

	Image                              string // --image as given (relative to the project directory)
	Readonly, Release, Offline, Locked bool
}

// NewCmdPack returns `ukernel pack`; runF, when set, gets the parsed options instead of packRun
// (tests).
func NewCmdPack(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, ProjectDir: f.ProjectDir}
	cmd := &cobra.Command{
		Use:   "pack",
		Short: "Produce the bootable guest image",
		Long: `Pack writes one raw GPT disk image (dist/<name>.img by default): a boot partition with
the kernel, an initramfs holding ukernel-init, and manifest.json, and a compressed read-only
erofs root with the adapter runtime, the bundle and the system packages. It builds first when
needed. The same lock and source give a bit-for-bit identical image. With --readonly the root
also gets a dm-verity hash tree: the guest checks every block against the root hash recorded in
the manifest and on the kernel command line, and refuses to boot a modified image (exit 125).
See docs/IMAGE.md.`,
		Example: `  ukernel pack
  ukernel pack --image dist/example-worker.img
  ukernel pack --readonly --image dist/example-worker-ro.img`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON, opts.Logger, opts.Command = f.JSON, f.Logger, cmd.CommandPath()
			if runF != nil {
				return runF(opts)
			}
			return packRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Image, "image", "", "output path (default dist/<name>.img)")
	cmd.Flags().BoolVar(&opts.Readonly, "readonly", false, "add a dm-verity hash tree: the guest verifies the root and refuses a modified one")
	cmd.Flags().BoolVar(&opts.Release, "release", false, "optimised build for production")
	cmd.Flags().BoolVar(&opts.Offline, "offline", false, "use only the local cache; fail if anything must be fetched")
	cmd.Flags().BoolVar(&opts.Locked, "locked", false, "fail if "+project.LockFile+" is missing or would change")
	return cmd
}

func packRun(ctx context.Context, opts *Options) error {
	dir, err := opts.ProjectDir()
	if err != nil {
		return err
	}
	progress := opts.IO.Progress()
	po := pipeline.Options{Dir: dir, ImagePath: cmdutil.ProjectPath(dir, opts.Image), Readonly: opts.Readonly,
		Release: opts.Release, Offline: opts.Offline, Locked: opts.Locked, Progress: progress, Logger: opts.Logger, Command: opts.Command}
	_, r, err := pipeline.PackProject(ctx, po)
	if err != nil {
		return err
	}
	img := r.Image
	if rel, err := filepath.Rel(dir, img); err == nil {
		img = rel
	}
	if opts.JSON {
		return cmdutil.PrintJSON(opts.IO, map[string]any{"image": img, "sha256": r.SHA256, "size": r.Size, "cached": r.Cached, "sizes": r.Sizes,
			"input_key": r.InputKey, "remote": r.Remote})
	}
	if r.Remote != nil && r.Remote.Outcome == remotecache.Hit {
		progress.Printf("Image created: %s (from the remote cache)", img)
		return nil
	}
	if r.Cached {
		// One line: the steps that had nothing to do printed none.
		progress.Printf("Image created: %s (up to date: no input changed)", img)
		return nil
	}
	progress.Printf("Image created: %s", img)
	return nil
}
