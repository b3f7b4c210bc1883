package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/lock"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/testenv"
)

const testRelease = "6.1.0-99-test"

// kernelProject returns a project whose lock pins a small synthetic kernel package, already in
// its (fresh) cache, so kernelTree needs no network. The package keeps its modules under
// modules (lib/modules as in Debian 12, usr/lib/modules as in Debian 13), or has none if "".
func kernelProject(t *testing.T, modules string) *Project {
	t.Helper()
	testenv.RequireTools(t, "dpkg-deb")
	root := t.TempDir()
	files := map[string]string{"boot/vmlinuz-" + testRelease: "bzImage"}
	if modules != "" {
		// Enough files that unpacking takes long enough for concurrent packs to overlap.
		for i := range 300 {
			files[fmt.Sprintf("%s/%s/kernel/m%03d.ko", modules, testRelease, i)] = "module"
		}
		files[modules+"/"+testRelease+"/modules.dep"] = "kernel/m000.ko:\n"
	}
	for p, content := range files {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(content), 0o644)
	}
	os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755)
	os.WriteFile(filepath.Join(root, "DEBIAN", "control"), []byte("Package: linux-image-test\nVersion: 1.0\nArchitecture: amd64\nMaintainer: t <t@example.invalid>\nDescription: test\n"), 0o644)
	deb := filepath.Join(t.TempDir(), "kernel.deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-Zxz", "--build", root, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v: %s", err, out)
	}
	c, err := cache.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sum, err := c.PutFile(deb, "")
	if err != nil {
		t.Fatal(err)
	}
	l := &lock.Lock{Base: "debian-12", Kernel: &lock.Package{Name: "linux-image-test", Version: "1.0", Architecture: "amd64", SHA256: sum}}
	return &Project{Dir: t.TempDir(), Lock: l, Cache: c}
}

func checkKernel(t *testing.T, kt *Kernel) {
	t.Helper()
	if kt.Release != testRelease {
		t.Fatalf("release %q, want %q", kt.Release, testRelease)
	}
	if _, err := os.Stat(filepath.Join(kt.ModulesDir, "modules.dep")); err != nil {
		t.Fatalf("incomplete kernel tree: %v", err)
	}
	mods, _ := filepath.Glob(filepath.Join(kt.ModulesDir, "kernel", "*.ko"))
	if len(mods) != 300 {
		t.Fatalf("kernel tree has %d of 300 modules", len(mods))
	}
}

// Packs on a cold cache unpack the kernel at the same time: each must get a whole tree, and only
// that tree may be left in the cache.
func TestKernelTreeConcurrent(t *testing.T) {
	p := kernelProject(t, "lib/modules")
	o := Options{Offline: true}
	trees := make([]*Kernel, 8)
	errs := make([]error, len(trees))
	var wg sync.WaitGroup
	for i := range trees {
		wg.Go(func() { trees[i], errs[i] = kernelTree(context.Background(), p, o) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("unpack %d: %v", i, err)
		}
		checkKernel(t, trees[i])
	}
	if names := kernelsHeld(p); len(names) != 1 || names[0] != p.Lock.Kernel.SHA256 {
		t.Fatalf("kernels/ holds %q, want only the tree", names)
	}
}

// kernelsHeld lists what the cache's kernels/ directory holds.
func kernelsHeld(p *Project) []string {
	entries, _ := os.ReadDir(cache.Kernels.In(p.Cache.Dir))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// Debian 13's kernel packages keep their modules under usr/lib/modules (merged /usr).
func TestKernelTreeMergedUsr(t *testing.T) {
	p := kernelProject(t, "usr/lib/modules")
	kt, err := kernelTree(context.Background(), p, Options{Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	checkKernel(t, kt)
	if want := filepath.Join("usr", "lib", "modules", testRelease); !strings.HasSuffix(kt.ModulesDir, want) {
		t.Fatalf("modules in %s, want .../%s", kt.ModulesDir, want)
	}
}

// A kernel package that cannot be used leaves nothing in the cache, and every try reports what
// is wrong with the package, never a complaint about the cache.
func TestKernelTreeFailureLeavesNothing(t *testing.T) {
	p := kernelProject(t, "")
	for try := 1; try <= 2; try++ {
		kt, err := kernelTree(context.Background(), p, Options{Offline: true})
		if err == nil || !strings.Contains(err.Error(), "no modules for "+testRelease) || strings.Contains(err.Error(), "cache") {
			t.Fatalf("try %d: kernelTree = %+v, %v; want the package's own error (no modules)", try, kt, err)
		}
		if names := kernelsHeld(p); len(names) != 0 {
			t.Fatalf("try %d: a failed unpack left %q in kernels/", try, names)
		}
	}
}

// A tree marked complete by an older ukernel that did not check it (Debian 13's kernel, whose
// modules it did not find) is replaced by a checked one.
func TestKernelTreeReplacesUnusable(t *testing.T) {
	p := kernelProject(t, "usr/lib/modules")
	dir := cache.Kernels.In(p.Cache.Dir, p.Lock.Kernel.SHA256)
	os.MkdirAll(filepath.Join(dir, "boot"), 0o755)
	os.WriteFile(filepath.Join(dir, "boot", "vmlinuz-"+testRelease), []byte("bzIm"), 0o644)
	os.WriteFile(filepath.Join(dir, kernelComplete), []byte(p.Lock.Kernel.SHA256+"\n"), 0o644)
	kt, err := kernelTree(context.Background(), p, Options{Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	checkKernel(t, kt)
	if names := kernelsHeld(p); len(names) != 1 || names[0] != p.Lock.Kernel.SHA256 {
		t.Fatalf("kernels/ holds %q, want only the tree", names)
	}
}

// A tree left incomplete at the final name (as the old fixed temporary name allowed) has a vmlinuz
// and a modules directory but no completion mark: it must be replaced, not used.
func TestKernelTreeReplacesIncomplete(t *testing.T) {
	p := kernelProject(t, "lib/modules")
	dir := cache.Kernels.In(p.Cache.Dir, p.Lock.Kernel.SHA256)
	os.MkdirAll(filepath.Join(dir, "lib", "modules", testRelease), 0o755)
	os.MkdirAll(filepath.Join(dir, "boot"), 0o755)
	os.WriteFile(filepath.Join(dir, "boot", "vmlinuz-"+testRelease), []byte("bzIm"), 0o644)
	kt, err := kernelTree(context.Background(), p, Options{Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	checkKernel(t, kt)
}

func TestSourceDateEpoch(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want int64
		ok   bool
	}{{"", 0, true}, {"1596963392", 1596963392, true}, {"yesterday", 0, false}, {"-5", 0, false}, {"12s", 0, false}} {
		t.Setenv("SOURCE_DATE_EPOCH", tc.env)
		got, err := sourceDateEpoch()
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("SOURCE_DATE_EPOCH=%q: %d, %v", tc.env, got, err)
		}
		if err != nil && !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
			t.Errorf("error does not name the variable: %v", err)
		}
	}
}

// A kernel tree changed in the cache after it was unpacked (a flipped byte in a module, its
// mtime set back; a module added) is unpacked again, never packed: the image stays the one the
// lock describes.
func TestKernelTreeChangedIsUnpackedAgain(t *testing.T) {
	p := kernelProject(t, "lib/modules")
	kt, err := kernelTree(context.Background(), p, Options{Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	mod := filepath.Join(kt.ModulesDir, "kernel", "m007.ko")
	for name, change := range map[string]func(){
		"flipped byte": func() {
			fi, _ := os.Stat(mod)
			os.WriteFile(mod, []byte("modulf"), 0o644)
			os.Chtimes(mod, fi.ModTime(), fi.ModTime())
		},
		"added module": func() { os.WriteFile(filepath.Join(kt.ModulesDir, "kernel", "evil.ko"), []byte("x"), 0o644) },
		"removed file": func() { os.Remove(filepath.Join(kt.ModulesDir, "kernel", "m100.ko")) },
	} {
		change()
		kt2, err := kernelTree(context.Background(), p, Options{Offline: true})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		checkKernel(t, kt2)
		if got, _ := os.ReadFile(mod); string(got) != "module" {
			t.Fatalf("%s: the changed tree was used (m007.ko holds %q)", name, got)
		}
		if _, err := os.Stat(filepath.Join(kt2.ModulesDir, "kernel", "evil.ko")); err == nil {
			t.Fatalf("%s: the changed tree was used (evil.ko kept)", name)
		}
		if names := kernelsHeld(p); len(names) != 1 {
			t.Fatalf("%s: kernels/ holds %q, want only the tree", name, names)
		}
	}
	// A copied cache (new identities, same content) is kept without unpacking again.
	dir := cache.Kernels.In(p.Cache.Dir, p.Lock.Kernel.SHA256)
	data, _ := os.ReadFile(mod)
	os.Remove(mod)
	os.WriteFile(mod, data, 0o644)
	copied, _ := os.Stat(mod)
	mark, _ := os.Stat(filepath.Join(dir, kernelComplete))
	if _, err := kernelTree(context.Background(), p, Options{Offline: true}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(mod); err != nil || !os.SameFile(fi, copied) {
		t.Fatal("a tree with the same content was unpacked again")
	}
	if mark2, _ := os.Stat(filepath.Join(dir, kernelComplete)); os.SameFile(mark, mark2) {
		t.Fatal("the copied file's new identity was not recorded")
	}
}

// A partial tree that a killed ukernel left in kernels/ is removed by the next unpack; one of a
// running process is kept.
func TestKernelTreeRemovesKilledUnpack(t *testing.T) {
	p := kernelProject(t, "lib/modules")
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	kernels := cache.Kernels.In(p.Cache.Dir)
	left := filepath.Join(kernels, fmt.Sprintf("%s%d.1-x", unpackPrefix, dead.Process.Pid))
	running := filepath.Join(kernels, fmt.Sprintf("%s%d.0-y", unpackPrefix, os.Getpid()))
	for _, d := range []string{left, running} {
		os.MkdirAll(filepath.Join(d, "lib", "modules"), 0o755)
		os.WriteFile(filepath.Join(d, "lib", "modules", "part.ko"), make([]byte, 1<<20), 0o644)
	}
	if _, err := kernelTree(context.Background(), p, Options{Offline: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Errorf("the killed unpack's tree is still there: %v", err)
	}
	if _, err := os.Stat(running); err != nil {
		t.Errorf("a running process's unpack was removed: %v", err)
	}
}

// TestPackProjectTakesTheProjectLock: every command that packs the project's image (pack,
// cache push, perf, template build) waits for the project's lock through Open; perf used to load
// and pack without it, beside a running `ukernel env add`.
func TestPackProjectTakesTheProjectLock(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, project.ConfigFile), []byte("[project]\nname = \"x\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	release, err := project.LockProject(ctx, dir, "ukernel env add", time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	t.Setenv(project.LockWaitEnv, "200ms")
	var locked *project.LockedError
	if _, _, err := PackProject(ctx, Options{Dir: dir, Command: "ukernel perf"}); !errors.As(err, &locked) || !strings.Contains(err.Error(), "(ukernel env add)") {
		t.Fatalf("PackProject beside a held project lock: %v", err)
	}
}
