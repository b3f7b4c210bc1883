// Package pack is the `ukernel pack` command.
package pack

import (
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/pipeline"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

// NewCmdPack returns `ukernel pack`.
func NewCmdPack(f *cmdutil.Factory) *cobra.Command {
	var o pipeline.Options
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
			dir, err := f.ProjectDir()
			if err != nil {
				return err
			}
			o.Dir, o.Progress, o.Logger = dir, f.IO.Progress(), f.Logger
			if o.ImagePath != "" && !filepath.IsAbs(o.ImagePath) {
				o.ImagePath = filepath.Join(dir, o.ImagePath)
			}
			release, err := f.LockProject(cmd.Context(), dir, cmd.CommandPath())
			if err != nil {
				return err
			}
			defer release()
			p, err := pipeline.Load(cmd.Context(), o)
			if err != nil {
				return err
			}
			r, err := pipeline.Pack(cmd.Context(), p, o)
			if err != nil {
				return err
			}
			img := r.Image
			if rel, err := filepath.Rel(dir, img); err == nil {
				img = rel
			}
			if f.JSON {
				return f.PrintJSON(map[string]any{"image": img, "sha256": r.SHA256, "size": r.Size, "cached": r.Cached, "sizes": r.Sizes})
			}
			if r.Cached {
				// One line: the steps that had nothing to do printed none.
				f.Progress("Image created: %s (up to date: no input changed)", img)
				return nil
			}
			f.Progress("Image created: %s", img)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.ImagePath, "image", "", "output path (default dist/<name>.img)")
	cmd.Flags().BoolVar(&o.Readonly, "readonly", false, "add a dm-verity hash tree: the guest verifies the root and refuses a modified one")
	cmd.Flags().BoolVar(&o.Release, "release", false, "optimised build for production")
	cmd.Flags().BoolVar(&o.Offline, "offline", false, "use only the local cache; fail if anything must be fetched")
	cmd.Flags().BoolVar(&o.Locked, "locked", false, "fail if "+project.LockFile+" is missing or would change")
	return cmd
}
