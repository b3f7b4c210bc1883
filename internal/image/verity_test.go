package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/testenv"
)

// veritysetup runs the reference tool (Debian's cryptsetup-bin) with a deadline.
func veritysetup(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "veritysetup", args...).CombinedOutput()
	return string(out), err
}

var rootHashLine = regexp.MustCompile(`(?m)^Root hash:\s+([0-9a-f]+)$`)

// TestVerityMatchesVeritysetup: for sizes with zero, one, two and three tree levels, the hash
// area and root hash equal what `veritysetup format` computes with the same salt, and
// `veritysetup verify` accepts the tree placed after the data in one file, and rejects it
// after a flipped data byte.
func TestVerityMatchesVeritysetup(t *testing.T) {
	testenv.RequireTools(t, "veritysetup")
	for _, blocks := range []int64{1, 2, 128, 129, 300, 128*128 + 1} {
		t.Run(strconv.FormatInt(blocks, 10), func(t *testing.T) {
			dir := t.TempDir()
			data := make([]byte, blocks*VerityBlockSize)
			copy(data, pseudo(uint64(blocks), min(len(data), 1<<20))) // rest zero: cheap but varied
			sum := sha256.Sum256(data)
			tree, err := computeVerity(context.Background(), bytes.NewReader(data), int64(len(data)), sum[:], int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := int64(len(tree.area)), verityAreaSize(blocks); got != want {
				t.Fatalf("hash area %d bytes, verityAreaSize says %d", got, want)
			}
			dataPath, hashPath := filepath.Join(dir, "data"), filepath.Join(dir, "hash")
			os.WriteFile(dataPath, data, 0o644)
			os.WriteFile(hashPath, nil, 0o644)
			out, err := veritysetup(t, "format", dataPath, hashPath, "--no-superblock", "--format=1",
				"--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096", "--salt="+tree.params.Salt)
			if err != nil {
				t.Fatalf("veritysetup format: %v\n%s", err, out)
			}
			m := rootHashLine.FindStringSubmatch(out)
			if m == nil || m[1] != tree.params.RootHash {
				t.Fatalf("root hash %s, veritysetup format says:\n%s", tree.params.RootHash, out)
			}
			ref, _ := os.ReadFile(hashPath)
			if !bytes.Equal(ref, tree.area) {
				t.Fatalf("hash area (%d bytes) differs from veritysetup's (%d bytes)", len(tree.area), len(ref))
			}

			// Data and tree in one file, as in the root partition.
			combined := filepath.Join(dir, "combined")
			os.WriteFile(combined, append(bytes.Clone(data), tree.area...), 0o644)
			verify := func() (string, error) {
				return veritysetup(t, "verify", combined, combined, tree.params.RootHash, "--no-superblock",
					"--format=1", "--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096",
					"--data-blocks="+strconv.FormatInt(blocks, 10), "--hash-offset="+strconv.FormatInt(tree.params.HashOffset, 10),
					"--salt="+tree.params.Salt)
			}
			if out, err := verify(); err != nil {
				t.Fatalf("veritysetup verify: %v\n%s", err, out)
			}
			bad := append(bytes.Clone(data), tree.area...)
			bad[len(data)-1] ^= 1
			os.WriteFile(combined, bad, 0o644)
			if out, err := verify(); err == nil {
				t.Fatalf("veritysetup verify accepted a flipped data byte:\n%s", out)
			}
		})
	}
}

func TestVerityDeterministicAndSalted(t *testing.T) {
	data := pseudo(7, 40*VerityBlockSize)
	sum := sha256.Sum256(data)
	a, err := computeVerity(context.Background(), bytes.NewReader(data), int64(len(data)), sum[:], int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := computeVerity(context.Background(), bytes.NewReader(data), int64(len(data)), sum[:], int64(len(data)))
	if a.params != b.params || !bytes.Equal(a.area, b.area) {
		t.Fatal("same data, different trees")
	}
	other := sha256.Sum256([]byte("other"))
	c, _ := computeVerity(context.Background(), bytes.NewReader(data), int64(len(data)), other[:], int64(len(data)))
	if c.params.Salt == a.params.Salt || c.params.RootHash == a.params.RootHash {
		t.Fatal("the salt does not follow the content digest")
	}
	if _, err := computeVerity(context.Background(), bytes.NewReader(data), 1000, sum[:], 4096); err == nil || !strings.Contains(err.Error(), "multiple of 4096") {
		t.Fatalf("unaligned size: %v", err)
	}
	want := "0 320 verity 1 /dev/vda2 /dev/vda2 4096 4096 40 40 sha256 " + a.params.RootHash + " " + a.params.Salt
	if got := a.params.Table("/dev/vda2"); got != want {
		t.Fatalf("table %q, want %q", got, want)
	}
}

// TestPackReadonly packs a read-only image with the real kernel's modules: the dm-verity modules
// and their dependencies are in the initramfs, the root hash is in the manifest and on the
// command line, veritysetup accepts the root partition, and Verify names damage to the
// filesystem and to the hash area.
func TestPackReadonly(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the Debian cloud kernel package (apt download); run without -short")
	}
	testenv.RequireTools(t, "mkfs.erofs", "fsck.erofs", "sgdisk", "veritysetup")
	k := testenv.DebianKernel(t)
	in := fixture(t, t.TempDir(), time.Unix(testEpoch, 0))
	in.KernelPath, in.ModulesDir, in.Modules, in.Readonly = k.Vmlinuz, k.ModulesDir, guestModules, true
	in.Manifest.Kernel.Release = k.Release
	res := pack(t, in)
	v := res.Manifest.Root.Verity
	if v == nil {
		t.Fatal("no verity in the manifest")
	}
	if v.HashOffset != res.Manifest.Root.Size || v.DataBlocks*4096 != res.Manifest.Root.Size || v.HashAlgorithm != "sha256" {
		t.Errorf("verity parameters %+v for a %d-byte root", *v, res.Manifest.Root.Size)
	}
	if !strings.HasSuffix(res.Manifest.Kernel.Cmdline, " ukernel.verity="+v.RootHash) {
		t.Errorf("cmdline %q lacks the root hash", res.Manifest.Kernel.Cmdline)
	}
	var names []string
	for _, m := range res.Manifest.Modules {
		names = append(names, moduleName(path.Base(m)))
	}
	joined := " " + strings.Join(names, " ") + " "
	for _, want := range []string{"dm_mod", "dm_bufio", "reed_solomon", "dm_verity"} {
		if !strings.Contains(joined, " "+want+" ") {
			t.Errorf("modules %v lack %s", names, want)
		}
	}
	if strings.Index(joined, " dm_mod ") > strings.Index(joined, " dm_verity ") {
		t.Errorf("dm_verity loads before dm_mod: %v", names)
	}

	im, err := Open(res.Path)
	if err != nil {
		t.Fatal(err)
	}
	rep := im.Verify()
	root := im.root
	im.Close()
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range rep.Checks {
		found = found || c.Part == PartVerity
	}
	if !found {
		t.Errorf("Verify made no %q check: %+v", PartVerity, rep.Checks)
	}
	part := extract(t, res.Path, root.offset(), root.size())
	run(t, "fsck.erofs", part)
	out, err := veritysetup(t, "verify", part, part, v.RootHash, "--no-superblock", "--format=1",
		"--data-blocks="+strconv.FormatInt(v.DataBlocks, 10), "--hash-offset="+strconv.FormatInt(v.HashOffset, 10), "--salt="+v.Salt)
	if err != nil {
		t.Fatalf("veritysetup verify of the root partition: %v\n%s", err, out)
	}

	areaEnd := v.HashOffset + verityAreaSize(v.DataBlocks)
	for _, c := range []struct {
		part string
		off  int64
	}{
		{PartRoot, root.offset() + 1024 + 8},                      // erofs superblock
		{PartRoot, root.offset() + res.Manifest.Root.Size - 4096}, // last data block
		{PartVerity, root.offset() + v.HashOffset + 100},          // top hash level
		{PartVerity, root.offset() + areaEnd - 1},                 // last hash block
		{PartRoot, root.offset() + areaEnd},                       // padding after the hash area
	} {
		img := filepath.Join(t.TempDir(), "x.img")
		b, _ := os.ReadFile(res.Path)
		b[c.off] ^= 0x10
		os.WriteFile(img, b, 0o644)
		im, err := Open(img)
		if err != nil {
			t.Fatalf("flip at %d: Open: %v", c.off, err)
		}
		e := im.Verify().Err()
		im.Close()
		if e == nil || !strings.Contains(e.Error(), c.part+": ") {
			t.Errorf("flip at %d: want %s named, got %v", c.off, c.part, e)
		}
	}
}
