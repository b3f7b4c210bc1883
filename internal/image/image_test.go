package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/testenv"
)

const testEpoch = 1700000000

// pseudo returns n deterministic pseudo-random bytes (incompressible, like a kernel).
func pseudo(seed uint64, n int) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed)}))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// writeTree writes the files under dir with fixed modes; mtime sets every file's time.
func writeTree(t *testing.T, dir string, files map[string]string, mtime time.Time) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "symlink:"); ok {
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		mode := os.FileMode(0o644)
		if strings.Contains(name, "bin/") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	// Fix directory modes (the umask shaped them) and times.
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if info.IsDir() {
			os.Chmod(p, 0o755)
		}
		if info.Mode()&os.ModeSymlink == 0 {
			os.Chtimes(p, mtime, mtime)
		}
		return nil
	})
}

// fixture lays out a small, fake set of inputs under dir: a random "kernel", a fake init, a
// root tree. Module resolution is tested with the real kernel elsewhere.
func fixture(t *testing.T, dir string, mtime time.Time) Input {
	t.Helper()
	writeTree(t, dir, map[string]string{
		"in/vmlinuz":                  string(pseudo(1, 300<<10)),
		"in/init":                     string(pseudo(2, 100<<10)),
		"root/app/main.py":            "print('hello')\n",
		"root/usr/bin/python3":        string(pseudo(3, 200<<10)),
		"root/usr/lib/x/data.txt":     strings.Repeat("compressible ", 10000),
		"root/etc/passwd":             "root:x:0:0:root:/root:/bin/sh\n",
		"root/bin":                    "symlink:usr/bin",
		"root/usr/bin/python":         "symlink:python3",
		"modules/6.1.0-test/.keep":    "",
		"root/usr/share/empty/.empty": "",
	}, mtime)
	return Input{
		Manifest: abi.Manifest{
			Name:      "example-worker",
			Adapter:   abi.Adapter{Name: "python", Runtime: "python-3.11"},
			Entry:     []string{"/usr/bin/python3", "/app/main.py"},
			Env:       map[string]string{"B": "2", "A": "1"},
			Run:       abi.RunDefaults{VCPU: 1, MemoryMB: 256, Net: "user"},
			Kernel:    abi.Kernel{Package: "linux-image-test", Version: "1.0", Release: "6.1.0-test"},
			Lock:      abi.LockRef{Digest: "sha256:" + strings.Repeat("ab", 32), Packages: 42},
			Artefacts: []abi.Artefact{{Name: "bundle", Path: "build/bundle.tgz", Size: 10, SHA256: strings.Repeat("cd", 32)}},
			Build:     abi.BuildInfo{Ukernel: "0.1.0-test", Go: "go1.26.8"},
		},
		KernelPath:      filepath.Join(dir, "in/vmlinuz"),
		ModulesDir:      filepath.Join(dir, "modules/6.1.0-test"),
		InitPath:        filepath.Join(dir, "in/init"),
		RootDir:         filepath.Join(dir, "root"),
		Output:          filepath.Join(dir, "dist/example-worker.img"),
		SourceDateEpoch: testEpoch,
	}
}

func pack(t *testing.T, in Input) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Pack(ctx, in)
	if err != nil {
		t.Fatalf("Pack: %v", err)
	}
	return res
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// extract copies n bytes at off of the image into a file.
func extract(t *testing.T, img string, off, n int64) string {
	t.Helper()
	b := make([]byte, n)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "part")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPackValidWithReferenceTools(t *testing.T) {
	testenv.RequireTools(t, "mkfs.erofs", "fsck.erofs", "sgdisk", "cpio")
	dir := t.TempDir()
	in := fixture(t, dir, time.Unix(testEpoch, 0))
	res := pack(t, in)

	st, err := os.Stat(res.Path)
	if err != nil || st.Size() != res.Size || res.Size%align != 0 {
		t.Fatalf("image %s: stat %v, size %d, result says %d", res.Path, err, st.Size(), res.Size)
	}
	if entries, _ := os.ReadDir(filepath.Dir(res.Path)); len(entries) != 1 {
		t.Fatalf("dist holds %d entries, want only the image", len(entries))
	}
	out := run(t, "sgdisk", "-v", res.Path)
	if !strings.Contains(out, "No problems found") {
		t.Fatalf("sgdisk -v: %s", out)
	}
	out = run(t, "sgdisk", "-p", res.Path)
	for _, want := range []string{abi.BootLabel, abi.RootLabel, "8300"} {
		if !strings.Contains(out, want) {
			t.Errorf("sgdisk -p lacks %q:\n%s", want, out)
		}
	}

	im, err := Open(res.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if rep := im.Verify(); !rep.OK() {
		t.Fatalf("Verify of a fresh image: %v", rep.Err())
	}
	m := im.Manifest()
	if m.ABI != abi.Version || m.Kernel.Cmdline != DefaultCmdline || m.Root.FSType != "erofs" || m.Build.SourceDateEpoch != testEpoch {
		t.Errorf("manifest defaults: %+v", m)
	}
	names := []string{}
	for _, a := range m.Artefacts {
		names = append(names, a.Name)
	}
	if got := strings.Join(names, ","); got != "bundle,init,initramfs,kernel,root" {
		t.Errorf("artefacts %s", got)
	}

	// Each partition passes the filesystem's own checker.
	boot := extract(t, res.Path, im.boot.offset(), im.boot.size())
	root := extract(t, res.Path, im.root.offset(), im.root.size())
	run(t, "fsck.erofs", boot)
	run(t, "fsck.erofs", root)
	if out := run(t, "dump.erofs", "-S", root); !regexp.MustCompile(`compressed files:\s+[1-9]`).MatchString(out) {
		t.Errorf("root has no compressed file:\n%s", out)
	}

	// Boot files: kernel as given, manifest identical in the boot fs and the initramfs.
	kb, err := im.ReadBootFile(KernelFile)
	if err != nil || !bytes.Equal(kb, pseudo(1, 300<<10)) {
		t.Fatalf("vmlinuz from the boot partition differs from the input (%v)", err)
	}
	manifest, err := im.ReadBootFile(ManifestFile)
	if err != nil {
		t.Fatal(err)
	}
	kernel, initrd, err := im.ExtractBoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(kernel); !bytes.Equal(b, kb) {
		t.Fatal("extracted kernel differs")
	}
	ib, _ := os.ReadFile(initrd)
	var baseSize int64
	for _, a := range m.Artefacts {
		if a.Name == ArtefactInitramfs {
			baseSize = a.Size
		}
	}
	cpioList := func(b []byte, extra ...string) string {
		p := filepath.Join(t.TempDir(), "a.cpio")
		os.WriteFile(p, b, 0o644)
		cmd := exec.Command("cpio", append([]string{"-t", "--quiet", "-F", p}, extra...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("cpio -t: %v: %s", err, out)
		}
		return string(out)
	}
	// The manifest segment comes first, then the base archive compressed with LZ4 (legacy
	// format, as the kernel reads it): the reference lz4 tool unpacks it for cpio.
	segment, compressed := ib[:int64(len(ib))-baseSize], ib[int64(len(ib))-baseSize:]
	lz := exec.Command("lz4", "-d", "-c")
	lz.Stdin = bytes.NewReader(compressed)
	base, err := lz.Output()
	if err != nil {
		t.Fatalf("lz4 -d of the base initramfs: %v", err)
	}
	if got, want := cpioList(base), "dev\ndev/console\ninit\nmnt\nproc\nrun\nsys\ntmp\nukernel\n"; got != want {
		t.Errorf("cpio -t of the base initramfs:\n%s\nwant:\n%s", got, want)
	}
	if got := cpioList(base, "-v"); !strings.Contains(got, "crw-------") || !strings.Contains(got, "-rwxr-xr-x   1 root     root       102400") {
		t.Errorf("cpio -tv: console device or init mode wrong:\n%s", got)
	}
	// The backends boot the same archives with the base decompressed.
	booted, err := BootInitrd(ib, m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(booted, append(append([]byte(nil), segment...), base...)) {
		t.Error("BootInitrd is not the manifest segment followed by the decompressed base")
	}
	if _, err := BootInitrd(ib[:len(ib)-10], m); err == nil {
		t.Error("BootInitrd of a truncated initramfs: no error")
	}
	if again, err := BootInitrd(booted, withArtefactSize(m, ArtefactInitramfs, int64(len(base)))); err != nil || !bytes.Equal(again, booted) {
		t.Errorf("BootInitrd of an uncompressed initramfs changed it (%v)", err)
	}
	if got := cpioList(segment); got != "ukernel\nukernel/manifest.json\n" {
		t.Errorf("cpio -t of the manifest segment: %q", got)
	}
	// Unpack the segment with cpio and compare the manifest bytes.
	xdir := t.TempDir()
	cmd := exec.Command("cpio", "-i", "-d", "--quiet")
	cmd.Dir, cmd.Stdin = xdir, bytes.NewReader(segment)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v %s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(xdir, "ukernel/manifest.json")); !bytes.Equal(b, manifest) {
		t.Error("the initramfs manifest differs from the boot partition's")
	}
	// Disk GUID and partition GUIDs are content digests.
	ms := sha256.Sum256(manifest)
	if !bytes.Equal(im.diskGUID[:], ms[:16]) {
		t.Error("disk GUID is not the manifest's digest")
	}
	if !strings.HasPrefix(m.Root.SHA256, hex.EncodeToString(im.root.GUID[:])) {
		t.Error("root GUID is not the root's digest")
	}
	if res.Sizes.Disk != res.Size || res.Sizes.Kernel != 300<<10 || res.Sizes.RootFS != m.Root.Size {
		t.Errorf("sizes %+v", res.Sizes)
	}
}

func TestPackDeterministic(t *testing.T) {
	testenv.RequireTools(t, "mkfs.erofs")
	a := fixture(t, t.TempDir(), time.Unix(testEpoch, 0))
	old := syscall.Umask(0o077)
	b := fixture(t, filepath.Join(t.TempDir(), "elsewhere", "deeper"), time.Now())
	syscall.Umask(old)
	ra, rb := pack(t, a), pack(t, b)
	if ra.SHA256 != rb.SHA256 {
		if _, err := exec.LookPath("diffoscope"); err == nil {
			out, _ := exec.Command("diffoscope", "--max-report-size", "20000", ra.Path, rb.Path).CombinedOutput()
			t.Logf("diffoscope:\n%s", out)
		}
		t.Fatalf("same inputs, different images: %s vs %s", ra.SHA256, rb.SHA256)
	}
	sum, _, _ := fileDigest(ra.Path)
	if hex.EncodeToString(sum) != ra.SHA256 {
		t.Fatal("Result.SHA256 is not the file's digest")
	}
	if testing.Short() {
		return
	}
	if _, err := exec.LookPath("diffoscope"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "diffoscope", ra.Path, rb.Path).CombinedOutput(); err != nil {
			t.Fatalf("diffoscope found differences: %v\n%s", err, out)
		}
	}
}

func TestVerifyFindsDamage(t *testing.T) {
	testenv.RequireTools(t, "mkfs.erofs")
	in := fixture(t, t.TempDir(), time.Unix(testEpoch, 0))
	res := pack(t, in)
	im, err := Open(res.Path)
	if err != nil {
		t.Fatal(err)
	}
	boot, root, sectors := im.boot, im.root, int64(im.sectors)
	im.Close()
	last := (sectors - 1) * sectorSize
	cases := []struct {
		part string
		off  int64
	}{
		{PartMBR, 450},
		{PartPrimary, sectorSize + 60},      // disk GUID in the header
		{PartPrimary, 2*sectorSize + 200},   // second entry
		{PartPrimary, 2*sectorSize + 10000}, // an unused entry
		{PartBackup, last + 30},
		{PartBackup, last - 16*sectorSize},
		{PartGaps, align - 100},
		{PartGaps, last - entrySectors*sectorSize - 1},
		{PartBoot, boot.offset() + 200<<10},
		{PartBoot, boot.offset() + boot.size() - 1}, // padding after the boot fs
		{PartRoot, root.offset() + 5000},
		{PartRoot, root.offset() + root.size() - 1},
	}
	for _, c := range cases {
		img := filepath.Join(t.TempDir(), "x.img")
		b, _ := os.ReadFile(res.Path)
		b[c.off] ^= 0x40
		os.WriteFile(img, b, 0o644)
		im, err := Open(img)
		if err != nil {
			t.Errorf("flip at %d (%s): Open: %v", c.off, c.part, err)
			continue
		}
		rep := im.Verify()
		im.Close()
		if rep.OK() {
			t.Errorf("flip at %d (%s): Verify passed", c.off, c.part)
			continue
		}
		if !strings.Contains(rep.Err().Error(), c.part+": ") {
			t.Errorf("flip at %d: want %s named, got %v", c.off, c.part, rep.Err())
		}
	}

	// Truncation: the backup GPT (and then the root) go missing, and the error says so.
	for _, keep := range []int64{res.Size - sectorSize, root.offset() + 4096} {
		img := filepath.Join(t.TempDir(), "t.img")
		b, _ := os.ReadFile(res.Path)
		os.WriteFile(img, b[:keep], 0o644)
		im, err := Open(img)
		if err != nil {
			t.Fatalf("truncated to %d: Open: %v", keep, err)
		}
		e := im.Verify().Err()
		im.Close()
		if e == nil || !strings.Contains(e.Error(), "backup GPT: missing: the image is truncated") {
			t.Errorf("truncated to %d: %v", keep, e)
		}
		if keep < root.offset()+root.size() && !strings.Contains(e.Error(), "root partition: missing") {
			t.Errorf("truncated to %d: root not named: %v", keep, e)
		}
	}
	// A file cut inside the boot partition cannot be opened, with a clear error.
	img := filepath.Join(t.TempDir(), "short.img")
	b, _ := os.ReadFile(res.Path)
	os.WriteFile(img, b[:boot.offset()+4096], 0o644)
	if _, err := Open(img); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("Open of an image cut in the boot partition: %v", err)
	}
}

func TestPackCancelLeavesNothing(t *testing.T) {
	testenv.RequireTools(t, "mkfs.erofs")
	dir := t.TempDir()
	in := fixture(t, dir, time.Unix(testEpoch, 0))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Pack(ctx, in); err == nil {
		t.Fatal("Pack with a cancelled context succeeded")
	}
	in.InitPath = filepath.Join(dir, "missing-init")
	if _, err := Pack(context.Background(), in); err == nil || !strings.Contains(err.Error(), "missing-init") {
		t.Fatalf("missing init: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(in.Output)); len(entries) != 0 {
		t.Fatalf("failed packs left %d entries in %s", len(entries), filepath.Dir(in.Output))
	}
}

func TestMkfsErofsMissing(t *testing.T) {
	in := fixture(t, t.TempDir(), time.Unix(testEpoch, 0))
	t.Setenv("PATH", t.TempDir())
	_, err := Pack(context.Background(), in)
	if err == nil || err.Error() != "mkfs.erofs not found: install erofs-utils" {
		t.Fatalf("got %v", err)
	}
}

// withArtefactSize returns a copy of m whose artefact name records size.
func withArtefactSize(m abi.Manifest, name string, size int64) abi.Manifest {
	m.Artefacts = append([]abi.Artefact(nil), m.Artefacts...)
	for i := range m.Artefacts {
		if m.Artefacts[i].Name == name {
			m.Artefacts[i].Size = size
		}
	}
	return m
}
