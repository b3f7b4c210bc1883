package bootfiles

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/image"
	"github.com/ukernel-dev/ukernel/internal/testenv"
)

// packTestImage packs a real image (the Debian cloud kernel, a stand-in init, a one-file root)
// whose entry runs as user.
func packTestImage(t *testing.T, user string) string {
	t.Helper()
	testenv.RequireTools(t, "mkfs.erofs", "sgdisk")
	k := testenv.DebianKernel(t)
	dir := t.TempDir()
	for p, content := range map[string]string{"init": "#!/bin/sh\n", "root/app/main.py": "print('hi')\n", "modules/.keep": ""} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := image.Pack(ctx, image.Input{
		Manifest: abi.Manifest{
			Name: "sealed", Adapter: abi.Adapter{Name: "python", Runtime: "python-3.11"},
			Entry: []string{"/usr/bin/python3", "/app/main.py"}, User: user,
			Run:    abi.RunDefaults{VCPU: 1, MemoryMB: 256, Net: "none"},
			Kernel: abi.Kernel{Package: "linux-image-cloud-amd64", Version: "1", Release: k.Release},
			Build:  abi.BuildInfo{Ukernel: "0.1.0-test", Go: "go1.26.8"},
		},
		KernelPath: k.Vmlinuz, ModulesDir: filepath.Join(dir, "modules"), InitPath: filepath.Join(dir, "init"),
		RootDir: filepath.Join(dir, "root"), Output: filepath.Join(dir, "dist", "sealed.img"), SourceDateEpoch: 1700000000,
	})
	if err != nil {
		t.Fatalf("pack: %v", err)
	}
	return res.Path
}

// An edit to any boot file in the cache (the initramfs's manifest segment turning the entry's
// user into root, a byte of the kernel or of the decompressed vmlinux) must not reach a VM: the
// next Prepare gives the files made from the verified image again.
func TestPrepareBootRefusesEditedCache(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the Debian cloud kernel package; run without -short")
	}
	img := packTestImage(t, "app")
	cacheDir := t.TempDir()
	b, err := Prepare(img, cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for _, p := range []string{b.Kernel, b.Initrd, b.Vmlinux} {
		if want[p], err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Contains(want[b.Initrd], []byte(`"user": "app"`)) {
		t.Fatalf("the boot initramfs carries no %s manifest field", `"user": "app"`)
	}
	// A second run uses the cache as it is.
	fi, _ := os.Stat(b.Initrd)
	if b2, err := Prepare(img, cacheDir); err != nil || b2.Initrd != b.Initrd {
		t.Fatalf("second Prepare: %v", err)
	}
	if fi2, _ := os.Stat(b.Initrd); !fi2.ModTime().Equal(fi.ModTime()) {
		t.Fatal("an untouched boot cache was made again")
	}

	edits := map[string]func([]byte) []byte{
		b.Initrd: func(d []byte) []byte {
			return bytes.Replace(d, []byte(`"user": "app"`), []byte(`"user": "root"`), 1)
		},
		b.Kernel:  func(d []byte) []byte { d[len(d)/2] ^= 1; return d },
		b.Vmlinux: func(d []byte) []byte { d[len(d)/2] ^= 1; return d },
	}
	for p, edit := range edits {
		t.Run(filepath.Base(p), func(t *testing.T) {
			data := edit(bytes.Clone(want[p]))
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			b2, err := Prepare(img, cacheDir)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{b2.Kernel, b2.Initrd, b2.Vmlinux} {
				got, err := os.ReadFile(q)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want[q]) {
					t.Fatalf("after editing %s, Prepare gives an edited %s", p, q)
				}
			}
		})
	}
}

// A record in verified/ changed to name another image's digest must not make a run boot that
// image's boot files: they start with the manifest, which must be this image's.
func TestPrepareBootBootsOnlyThisImagesFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the Debian cloud kernel package; run without -short")
	}
	app, root := packTestImage(t, "app"), packTestImage(t, "root")
	cacheDir := t.TempDir()
	b1, err := Prepare(app, cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := Prepare(root, cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	records, _ := filepath.Glob(cache.Verified.In(cacheDir, "*.json"))
	var changed int
	for _, r := range records {
		data, _ := os.ReadFile(r)
		if bytes.Contains(data, []byte(b1.ImageDigest)) {
			os.WriteFile(r, bytes.ReplaceAll(data, []byte(b1.ImageDigest), []byte(b2.ImageDigest)), 0o644)
			changed++
		}
	}
	if changed != 1 {
		t.Fatalf("%d verified records name the app image", changed)
	}
	b, err := Prepare(app, cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	initrd, err := os.ReadFile(b.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(initrd, []byte(`"user": "app"`)) || bytes.Contains(initrd, []byte(`"user": "root"`)) {
		t.Fatal("the app image boots the root image's initramfs")
	}
}
