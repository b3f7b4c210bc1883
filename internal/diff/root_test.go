package diff

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/image"
	"github.com/ukernel-dev/ukernel/internal/testenv"
)

// TestRootsOfImageWithDamagedPrimaryGPT: image.Open reads the backup partition table when the
// primary is damaged, and diff extracts the root that table names. diff used to read the primary
// table again itself, trusting its entry count and size: an entry size of 4 GiB in a damaged
// header made it allocate half a terabyte.
func TestRootsOfImageWithDamagedPrimaryGPT(t *testing.T) {
	testenv.RequireTools(t, "mkfs.erofs", "fsck.erofs")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"vmlinuz": "not a kernel", "init": "not an init", "modules/6.1.0-test/.keep": "",
		"root/app/main.py": "print('hello')\n", "root/etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res, err := image.Pack(ctx, image.Input{
		Manifest:   abi.Manifest{Name: "w", Entry: []string{"/app/main.py"}, Kernel: abi.Kernel{Release: "6.1.0-test"}},
		KernelPath: filepath.Join(dir, "vmlinuz"), ModulesDir: filepath.Join(dir, "modules/6.1.0-test"),
		InitPath: filepath.Join(dir, "init"), RootDir: filepath.Join(dir, "root"),
		Output: filepath.Join(dir, "w.img"), SourceDateEpoch: 1700000000,
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(res.Path)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(b[512+84:], 0xFFFFFFF0) // the primary header's entry size
	damagedPath := filepath.Join(dir, "damaged.img")
	if err := os.WriteFile(damagedPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	damaged, err := image.Open(damagedPath)
	if err != nil {
		t.Fatalf("Open with the backup table: %v", err)
	}
	defer damaged.Close()
	good, err := image.Open(res.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	files, err := compareRoots(ctx, damaged, good)
	if err != nil || len(files) != 0 {
		t.Fatalf("roots of one image: %v, differing files %+v", err, files)
	}
}
