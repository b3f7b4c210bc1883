package diff

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/crashpoint"
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
	res := packRootTestImage(ctx, t, dir)
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

// TestKilledDiffLeavesNothing: a diff killed with a root extracted (SIGKILL at crashpoint
// diff-root: a second Ctrl-C, diff being interruptible) leaves its work directory in the
// system's temporary directory; the next diff removes it. Before, extracted roots stayed
// there for good. The killed diff is this test binary, re-executed.
func TestKilledDiffLeavesNothing(t *testing.T) {
	if img := os.Getenv("UKT_DIFF_HELPER"); img != "" {
		im, err := image.Open(img)
		if err == nil {
			_, err = compareRoots(context.Background(), im, im)
		}
		t.Fatalf("not killed at diff-root: %v", err)
	}
	testenv.RequireTools(t, "mkfs.erofs", "fsck.erofs")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res := packRootTestImage(ctx, t, t.TempDir())
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestKilledDiffLeavesNothing$")
	cmd.Env = append(os.Environ(), "UKT_DIFF_HELPER="+res.Path, crashpoint.Env+"=diff-root")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the diff did not die at diff-root: %v\n%s", err, out)
	}
	if left, _ := os.ReadDir(tmp); len(left) == 0 {
		t.Fatal("the killed diff left nothing to remove: the test does not test")
	}
	im, err := image.Open(res.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if files, err := compareRoots(ctx, im, im); err != nil || len(files) != 0 {
		t.Fatalf("the next diff: %v, %+v", err, files)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("the system's temporary directory holds %v after a killed diff and the next one", left)
	}
}

// packRootTestImage packs a small image (its kernel and init are not real: only its root is
// read) in dir.
func packRootTestImage(ctx context.Context, t *testing.T, dir string) *image.Result {
	t.Helper()
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
	return res
}
