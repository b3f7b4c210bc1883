package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/image"
	"github.com/ukernel-dev/ukernel/internal/initbin"
)

// TestRunABIMismatch: an image that speaks another ABI is refused with a clear error before
// anything boots, not a hang.
func TestRunABIMismatch(t *testing.T) {
	skipShort(t)
	dir := newProject(t, "abi-old", "--lang", "python", "--template", "minimal")
	mustUK(t, dir, 15*time.Minute, "pack")
	good, err := image.Open(filepath.Join(dir, "dist", "abi-old.img"))
	if err != nil {
		t.Fatal(err)
	}
	m := good.Manifest()
	good.Close()

	c, err := cache.Open()
	if err != nil {
		t.Fatal(err)
	}
	kernels, _ := filepath.Glob(cache.Kernels.In(c.Dir, "*", "boot", "vmlinuz-"+m.Kernel.Release))
	if len(kernels) == 0 {
		t.Fatalf("no unpacked kernel %s in the cache", m.Kernel.Release)
	}
	kdir := filepath.Dir(filepath.Dir(kernels[0]))
	ib, err := initbin.Build(context.Background(), c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	m.ABI = "0.1.0"
	m.Modules, m.Artefacts = nil, nil
	old := filepath.Join(t.TempDir(), "old.img")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := image.Pack(ctx, image.Input{
		Manifest: m, KernelPath: kernels[0], ModulesDir: filepath.Join(kdir, "lib", "modules", m.Kernel.Release),
		Modules:  []string{"virtio_mmio", "virtio_blk", "virtio_console", "virtio_net", "erofs", "overlay"},
		InitPath: ib.Path, RootDir: filepath.Join(dir, "build", "rootfs"), Output: old,
		SourceDateEpoch: m.Build.SourceDateEpoch,
	}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := uk(t, dir, 2*time.Minute, "run", "--image", old)
	if r.code != 125 || !strings.Contains(r.stderr, "ABI mismatch") || !strings.Contains(r.stderr, "0.1.0") {
		t.Errorf("ABI mismatch: exit %d after %v\n%s", r.code, time.Since(start), r.stderr)
	}
	noQEMULeft(t, dir)
}
