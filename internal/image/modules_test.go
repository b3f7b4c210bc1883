package image

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/testenv"
)

// guestModules is what a guest on QEMU microvm needs (FACTS.md), virtio_mmio being the transport.
var guestModules = []string{"virtio_mmio", "virtio_blk", "virtio_net", "virtio_console", "erofs", "overlay"}

func TestResolveModulesDebianKernel(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the Debian cloud kernel package (apt download); run without -short")
	}
	k := testenv.DebianKernel(t)
	got, err := ResolveModules(k.ModulesDir, guestModules)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(got))
	for i, rel := range got {
		names[i] = moduleName(rel)
		if !strings.HasPrefix(rel, "kernel/") {
			t.Errorf("module path %q is not relative to the modules directory", rel)
		}
	}
	want := []string{"virtio_ring", "virtio", "virtio_mmio", "virtio_blk", "failover", "net_failover", "virtio_net", "virtio_console", "libcrc32c", "erofs", "overlay"}
	if !slices.Equal(names, want) {
		t.Fatalf("load order %v, want %v", names, want)
	}
	again, _ := ResolveModules(k.ModulesDir, guestModules)
	if !slices.Equal(got, again) {
		t.Fatal("resolution is not deterministic")
	}
	if _, err := ResolveModules(k.ModulesDir, []string{"no_such_module"}); err == nil || !strings.Contains(err.Error(), "no_such_module not found") {
		t.Fatalf("unknown module: %v", err)
	}
	// Built-in modules are left out rather than failing.
	if got, err := ResolveModules(k.ModulesDir, []string{"ext4", "virtio_blk"}); err != nil || len(got) != 3 {
		t.Fatalf("ext4 (built in) and virtio_blk: %v %v", got, err)
	}
}

func TestResolveModuleGroupsDebianKernel(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the Debian cloud kernel package (apt download); run without -short")
	}
	k := testenv.DebianKernel(t)
	order, groups, err := resolveModuleGroups(k.ModulesDir, []string{"virtio_mmio", "virtio_blk", "erofs", "overlay"},
		map[string][]string{"net": {"virtio_net"}, "serial": {"virtio_console"}, "vsock": {"vmw_vsock_virtio_transport"}})
	if err != nil {
		t.Fatal(err)
	}
	names := func(paths []string) []string {
		out := make([]string, len(paths))
		for i, p := range paths {
			out[i] = moduleName(p)
		}
		return out
	}
	want := []string{"virtio_ring", "virtio", "virtio_mmio", "virtio_blk", "libcrc32c", "erofs", "overlay",
		"failover", "net_failover", "virtio_net", "virtio_console", "vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport"}
	if got := names(order); !slices.Equal(got, want) {
		t.Errorf("load order %v, want %v", got, want)
	}
	// virtio and virtio_ring are shared with the boot set: no group repeats them.
	for g, want := range map[string][]string{
		"net":    {"failover", "net_failover", "virtio_net"},
		"serial": {"virtio_console"},
		"vsock":  {"vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport"},
	} {
		if got := names(groups[g]); !slices.Equal(got, want) {
			t.Errorf("group %s: %v, want %v", g, got, want)
		}
	}
}

func TestPackDebianKernel(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the Debian cloud kernel package (apt download); run without -short")
	}
	testenv.RequireTools(t, "mkfs.erofs", "cpio", "sgdisk")
	k := testenv.DebianKernel(t)
	in := fixture(t, t.TempDir(), time.Unix(testEpoch, 0))
	in.KernelPath, in.ModulesDir, in.Modules = k.Vmlinuz, k.ModulesDir, guestModules
	in.Manifest.Kernel.Release = k.Release
	res := pack(t, in)
	if len(res.Manifest.Modules) != 11 {
		t.Fatalf("manifest modules %v", res.Manifest.Modules)
	}
	im, err := Open(res.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if err := im.Verify().Err(); err != nil {
		t.Fatal(err)
	}
	_, initrd, err := im.ExtractBoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ib, err := os.ReadFile(initrd)
	if err != nil {
		t.Fatal(err)
	}
	var baseSize int64
	for _, a := range res.Manifest.Artefacts {
		if a.Name == ArtefactInitramfs {
			baseSize = a.Size
		}
	}
	lz := exec.CommandContext(ctx, "lz4", "-d", "-c")
	lz.Stdin = bytes.NewReader(ib[int64(len(ib))-baseSize:])
	base, err := lz.Output()
	if err != nil {
		t.Fatalf("lz4 -d of the base initramfs: %v", err)
	}
	list := exec.CommandContext(ctx, "cpio", "-t", "--quiet")
	list.Stdin = bytes.NewReader(base)
	out, err := list.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v %s", err, out)
	}
	names := string(out)
	for _, rel := range res.Manifest.Modules {
		if !strings.Contains(names, path.Join("lib/modules", k.Release, rel)+"\n") {
			t.Errorf("initramfs lacks module %s:\n%s", rel, names)
		}
	}
	t.Logf("sizes: %+v", res.Sizes)
}

// TestBootDebianKernel boots a packed image's kernel and initramfs under QEMU (microvm, TCG) with
// a stand-in init that loads the modules in the manifest's order: the initramfs layout, the
// console device, the module order and the default command line all work on a real kernel.
func TestBootDebianKernel(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM; run without -short")
	}
	testenv.RequireTools(t, "mkfs.erofs", "qemu-system-x86_64")
	k := testenv.DebianKernel(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	initBin := filepath.Join(dir, "bootinit")
	build := exec.CommandContext(ctx, "go", "build", "-o", initBin, "./testdata/bootinit")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the test init: %v\n%s", err, out)
	}
	in := fixture(t, dir, time.Unix(testEpoch, 0))
	in.KernelPath, in.ModulesDir, in.Modules, in.InitPath = k.Vmlinuz, k.ModulesDir, guestModules, initBin
	in.Manifest.Kernel.Release = k.Release
	res := pack(t, in)
	im, err := Open(res.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	kernel, initrd, err := im.ExtractBoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	qctx, qcancel := context.WithTimeout(ctx, 90*time.Second)
	defer qcancel()
	out, err := exec.CommandContext(qctx, "qemu-system-x86_64", "-M", "microvm", "-m", "256",
		"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd, "-append", im.Manifest().Kernel.Cmdline).CombinedOutput()
	want := "BOOTINIT OK example-worker 11 modules"
	if !strings.Contains(string(out), want) {
		t.Fatalf("qemu (%v): no %q in the console:\n%s", err, want, out)
	}
}
