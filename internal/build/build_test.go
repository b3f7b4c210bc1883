package build

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/lock"
	"github.com/ukernel-dev/ukernel/internal/project"
)

// makeDeb builds a real .deb with dpkg-deb from a tree of files.
func makeDeb(t *testing.T, name string, files map[string]string) string {
	t.Helper()
	return makeDebLinks(t, name, files, nil)
}

// makeDebLinks is makeDeb with symlinks as well: path -> link target.
func makeDebLinks(t *testing.T, name string, files, links map[string]string) string {
	t.Helper()
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Fatal("dpkg-deb not found (Debian's dpkg package)")
	}
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		mode := os.FileMode(0o644)
		if strings.Contains(p, "bin/") {
			mode = 0o755
		}
		if err := os.WriteFile(full, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	for p, target := range links {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755)
	control := "Package: " + name + "\nVersion: 1.0\nArchitecture: amd64\nMaintainer: t <t@example.invalid>\nDescription: test\n"
	os.WriteFile(filepath.Join(root, "DEBIAN", "control"), []byte(control), 0o644)
	deb := filepath.Join(t.TempDir(), name+".deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-Zxz", "--build", root, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v: %s", err, out)
	}
	return deb
}

func makeWheel(t *testing.T) string {
	t.Helper()
	return writeWheel(t, "demo-1.0-py3-none-any.whl", map[string]string{
		"demo/__init__.py":                   "VALUE = 42\n",
		"demo/__pycache__/x.cpython.pyc":     "junk",
		"demo-1.0.dist-info/RECORD":          "demo/__init__.py,,\n",
		"demo-1.0.dist-info/METADATA":        "Name: demo\nVersion: 1.0\n",
		"demo-1.0.data/scripts/demo-cli":     "#!python\nimport demo\n",
		"demo-1.0.dist-info/direct_url.json": "{\"url\": \"file:///home/someone\"}",
	})
}

// writeWheel zips files into a wheel named name (NAME-VERSION-TAGS.whl), with the RECORD every
// wheel has unless files holds one; files under scripts/ are executable.
func writeWheel(t *testing.T, name string, files map[string]string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	f, _ := os.Create(p)
	zw := zip.NewWriter(f)
	parts := strings.SplitN(name, "-", 3)
	if len(parts) < 3 {
		t.Fatalf("wheel name %q is not NAME-VERSION-TAGS.whl", name)
	}
	files = maps.Clone(files)
	if record := parts[0] + "-" + parts[1] + ".dist-info/RECORD"; files[record] == "" {
		files[record] = record + ",,\n"
	}
	for name, content := range files {
		h := &zip.FileHeader{Name: name, Method: zip.Deflate}
		if strings.Contains(name, "scripts/") {
			h.SetMode(0o755)
		}
		w, _ := zw.CreateHeader(h)
		w.Write([]byte(content))
	}
	zw.Close()
	f.Close()
	return p
}

func writeProject(t *testing.T, dir string) *project.Config {
	t.Helper()
	os.MkdirAll(filepath.Join(dir, "src", "pkg"), 0o755)
	os.WriteFile(filepath.Join(dir, "src", "main.py"), []byte("print('hi')\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "src", "pkg", "run.sh"), []byte("#!/bin/sh\n"), 0o755)
	cfg, err := project.Parse("ukernel.toml", []byte(`[project]
name = "demo"
language = "python"
entry = "src/main.py"
[env]
base = "python-3.11"
`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func sha(t *testing.T, p string) string {
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func TestBuildDeterministicAndCached(t *testing.T) {
	deb := makeDeb(t, "python3.11", map[string]string{
		"bin/python3.11":                  "#!fake\n",
		"usr/lib/python3.11/os.py":        "# os\n",
		"usr/lib/python3.11/test/t.py":    "# test suite\n",
		"usr/share/doc/python3.11/README": "docs\n",
		"usr/share/man/man1/python.1":     "man\n",
	})
	wheel := makeWheel(t)
	base, _ := project.LookupBase("python-3.11")
	var sums []string
	for i, umask := range []int{0o022, 0o077} {
		dir := filepath.Join(t.TempDir(), "p", string(rune('a'+i)))
		cfg := writeProject(t, dir)
		old := syscall.Umask(umask)
		res, err := Run(context.Background(), Input{
			Dir: dir, Config: cfg, Base: base, LockDigest: "abc",
			Debs:   []Deb{{Name: "python3.11", Version: "1.0", Architecture: "amd64", Path: deb, SHA256: "x"}},
			Wheels: []Wheel{{Name: "demo", Path: wheel, SHA256: "y"}},
		})
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, sha(t, res.Bundle))
		root := res.RootDir
		for _, want := range []string{"usr/bin/python3.11", "usr/bin/python3", "usr/lib/python3.11/os.py", "app/main.py", "app/pkg/run.sh", "etc/passwd",
			"usr/local/lib/python3.11/dist-packages/demo/__init__.py", "usr/local/lib/python3.11/dist-packages/demo-1.0.dist-info/INSTALLER"} {
			if _, err := os.Stat(filepath.Join(root, want)); err != nil {
				t.Errorf("rootfs lacks %s: %v", want, err)
			}
		}
		for _, gone := range []string{"usr/share/doc", "usr/share/man", "usr/lib/python3.11/test",
			"usr/local/lib/python3.11/dist-packages/demo/__pycache__", "usr/local/lib/python3.11/dist-packages/demo-1.0.dist-info/direct_url.json"} {
			if _, err := os.Stat(filepath.Join(root, gone)); err == nil {
				t.Errorf("rootfs still has %s", gone)
			}
		}
		if l, _ := os.Readlink(filepath.Join(root, "bin")); l != "usr/bin" {
			t.Errorf("/bin is not the merged-/usr link: %q", l)
		}
		script, _ := os.ReadFile(filepath.Join(root, "usr/local/bin/demo-cli"))
		if !strings.HasPrefix(string(script), "#!/usr/bin/python3.11\n") {
			t.Errorf("wheel script shebang not rewritten: %q", script)
		}
		fi, _ := os.Stat(filepath.Join(root, "app/main.py"))
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("mode depends on umask: %v", fi.Mode())
		}
		passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
		if !strings.Contains(string(passwd), "app:x:1000:1000:") {
			t.Errorf("no app user: %s", passwd)
		}
		// A second build with nothing changed is a cache hit.
		again, err := Run(context.Background(), Input{
			Dir: dir, Config: cfg, Base: base, LockDigest: "abc",
			Debs:   []Deb{{Name: "python3.11", Version: "1.0", Architecture: "amd64", Path: deb, SHA256: "x"}},
			Wheels: []Wheel{{Name: "demo", Path: wheel, SHA256: "y"}},
		})
		if err != nil || !again.Cached {
			t.Errorf("rebuild: cached=%v err=%v", again != nil && again.Cached, err)
		}
	}
	if sums[0] != sums[1] {
		t.Errorf("bundle differs between directories/umasks: %s vs %s", sums[0], sums[1])
	}
}

func TestBundleListsWithTar(t *testing.T) {
	dir := t.TempDir()
	cfg := writeProject(t, dir)
	base, _ := project.LookupBase("python-3.11")
	deb := makeDeb(t, "python3.11", map[string]string{"usr/bin/python3.11": "x"})
	res, err := Run(context.Background(), Input{Dir: dir, Config: cfg, Base: base, LockDigest: "d",
		Debs: []Deb{{Name: "python3.11", Version: "1.0", Architecture: "amd64", Path: deb, SHA256: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("tar", "--numeric-owner", "-tvzf", res.Bundle).CombinedOutput()
	if err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.Contains(line, " 0/0 ") {
			t.Errorf("entry not owned by 0/0: %s", line)
		}
	}
	if !strings.Contains(string(out), "app/main.py") {
		t.Errorf("bundle lacks app/main.py:\n%s", out)
	}
}

func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := writeProject(t, dir)
	base, _ := project.LookupBase("python-3.11")
	os.Remove(filepath.Join(dir, "src", "main.py"))
	_, err := Run(context.Background(), Input{Dir: dir, Config: cfg, Base: base, LockDigest: "d"})
	// At the line of entry in ukernel.toml.
	if err == nil || !strings.HasPrefix(err.Error(), "ukernel.toml:4: project.entry: src/main.py does not exist") {
		t.Errorf("missing entry: %v", err)
	}
	if entries, _ := filepath.Glob(filepath.Join(dir, ".build-tmp-*")); len(entries) != 0 {
		t.Errorf("left temporary directories: %v", entries)
	}
	shell, _ := project.LookupBase("debian-12")
	if _, err := Run(context.Background(), Input{Dir: dir, Config: cfg, Base: shell}); err == nil || !strings.Contains(err.Error(), "does not fit base") {
		t.Errorf("adapter/base mismatch: %v", err)
	}
}

// TestSourceDisappearsMidBuild: a file listed from src/ and gone when it is archived is a clear
// error, and the previous outputs stay as they were.
func TestSourceDisappearsMidBuild(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.py"), []byte("a\n"), 0o644)
	os.WriteFile(filepath.Join(src, "b.py"), []byte("b\n"), 0o644)
	entries, err := dirEntries(src, "app")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(src, "b.py")) // gone between listing and archiving
	out := filepath.Join(t.TempDir(), "bundle.tgz")
	err = writeBundle(out, entries, 1)
	if err == nil || !strings.Contains(err.Error(), "b.py disappeared during the build") {
		t.Fatalf("got %v", err)
	}

	// Through Run: a failing build leaves the last good bundle in build/ untouched.
	dir := t.TempDir()
	cfg := writeProject(t, dir)
	base, _ := project.LookupBase("python-3.11")
	deb := makeDeb(t, "python3.11", map[string]string{"usr/bin/python3.11": "x"})
	in := Input{Dir: dir, Config: cfg, Base: base, LockDigest: "d", Debs: []Deb{{Name: "python3.11", Version: "1.0", Architecture: "amd64", Path: deb, SHA256: "x"}}}
	res, err := Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	good := sha(t, res.Bundle)
	os.WriteFile(filepath.Join(dir, "src", "main.py"), []byte("print('changed')\n"), 0o644)
	in.Debs[0].Path = filepath.Join(t.TempDir(), "missing.deb") // the next build fails
	if _, err := Run(context.Background(), in); err == nil {
		t.Fatal("a build with a missing package succeeded")
	}
	if sha(t, res.Bundle) != good {
		t.Error("a failed build changed build/bundle.tgz")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".build-tmp-*")); len(left) != 0 {
		t.Errorf("a failed build left %v", left)
	}
}

// listTree returns every path below dir, to show that a build left a host directory alone.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	if err := walkSorted(dir, func(rel string, _ fs.FileInfo) error {
		out = append(out, rel)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMergeStaysInsideRoot: a directory link that one package ships is followed when a later
// package installs below it as the guest would follow it (an absolute target is inside the
// image, ".." stops at its root), never to the host's directory of that name.
func TestMergeStaysInsideRoot(t *testing.T) {
	host := t.TempDir() // a host directory that packages' links name
	links := makeDebLinks(t, "a-links", map[string]string{"usr/lib/real/keep": ""}, map[string]string{
		"usr/lib/abs":    host,                                 // the reviewer's case
		"usr/lib/rel":    strings.Repeat("../", 10) + host[1:], // climbs past the root
		"usr/lib/inside": "real",                               // an ordinary link in the tree
		"usr/lib/loop":   "/usr/lib/loop",                      // resolves to itself
	})
	files := makeDeb(t, "b-files", map[string]string{
		"usr/lib/abs/a":    "a\n",
		"usr/lib/rel/r":    "r\n",
		"usr/lib/inside/i": "i\n",
	})
	root := filepath.Join(t.TempDir(), "root")
	debs := []Deb{{Name: "a-links", Version: "1.0", Architecture: "amd64", Path: links}, {Name: "b-files", Version: "1.0", Architecture: "amd64", Path: files}}
	_, err := assembleDebs(context.Background(), debs, root, t.TempDir())
	if left := listTree(t, host); len(left) != 0 {
		t.Errorf("merging wrote to the host directory %s: %v", host, left)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(host, "a"), filepath.Join(host, "r"), "usr/lib/real/i"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
			t.Errorf("%s is not where the guest will look for it: %v", p, err)
		}
	}
	if l, _ := os.Readlink(filepath.Join(root, "usr/lib/abs")); l != host {
		t.Errorf("the package's link was replaced: %q", l)
	}

	loop := makeDeb(t, "c-loop", map[string]string{"usr/lib/loop/x": "x\n"})
	debs = append(debs, Deb{Name: "c-loop", Version: "1.0", Architecture: "amd64", Path: loop})
	_, err = assembleDebs(context.Background(), debs, filepath.Join(t.TempDir(), "root"), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "install c-loop 1.0: usr/lib/loop: too many levels of symbolic links") {
		t.Errorf("a link loop: %v", err)
	}
}

// TestBuildStaysInsideRoot: the steps after the merge (bundle, trimming, accounts, links) also
// resolve packages' links inside the staged tree.
func TestBuildStaysInsideRoot(t *testing.T) {
	host := t.TempDir()
	os.MkdirAll(filepath.Join(host, "etc"), 0o755)
	os.MkdirAll(filepath.Join(host, "local"), 0o755)
	os.MkdirAll(filepath.Join(host, "share", "doc"), 0o755)
	os.WriteFile(filepath.Join(host, "share", "doc", "keep"), []byte("host file\n"), 0o644)
	deb := makeDebLinks(t, "python3.11", map[string]string{"usr/bin/python3.11": "x"}, map[string]string{
		"etc":       host + "/etc",
		"usr/local": host + "/local",
		"usr/share": host + "/share",
	})
	dir := t.TempDir()
	cfg := writeProject(t, dir)
	base, _ := project.LookupBase("python-3.11")
	res, err := Run(context.Background(), Input{Dir: dir, Config: cfg, Base: base, LockDigest: "d",
		Debs:   []Deb{{Name: "python3.11", Version: "1.0", Architecture: "amd64", Path: deb, SHA256: "x"}},
		Wheels: []Wheel{{Name: "demo", Path: makeWheel(t), SHA256: "y"}}})
	if got := strings.Join(listTree(t, host), " "); got != "etc local share share/doc share/doc/keep" {
		t.Errorf("the build changed the host directory %s: %s", host, got)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"etc/passwd", "local/bin/demo-cli", "local/lib/python3.11/dist-packages/demo/__init__.py"} {
		if _, err := os.Lstat(filepath.Join(res.RootDir, host, p)); err != nil {
			t.Errorf("%s is not inside the image: %v", p, err)
		}
	}
}

// TestDebMustBeWhatTheLockPins: with real Debian packages, a file whose own control fields name
// another package, version or architecture than the lock pins is refused; the honest closure of
// a Debian 12 lock assembles.
func TestDebMustBeWhatTheLockPins(t *testing.T) {
	if testing.Short() {
		t.Skip("network: fetches Debian packages (run without -short)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, project.ConfigFile), []byte("[project]\nname = \"demo\"\nlanguage = \"shell\"\nentry = \"src/main.sh\"\n[env]\nbase = \"debian-12\"\n"), 0o644))
	must(os.MkdirAll(filepath.Join(dir, "env"), 0o755))
	must(os.WriteFile(filepath.Join(dir, project.EnvFile), []byte("system = []\n"), 0o644))
	c, err := cache.Open()
	must(err)
	l, _, err := lock.Resolve(ctx, lock.Options{Dir: dir, Cache: c})
	must(err)
	paths, err := lock.FetchDebs(ctx, l, c, lock.Options{Dir: dir})
	must(err)
	var debs []Deb
	byName := map[string]Deb{}
	for _, p := range l.Packages {
		d := Deb{Name: p.Name, Version: p.Version, Architecture: p.Architecture, Path: paths[p.Name], SHA256: p.SHA256}
		debs = append(debs, d)
		byName[p.Name] = d
	}
	coreutils, dash := byName["coreutils"], byName["dash"]
	for name, tc := range map[string]struct {
		deb  Deb
		want string
	}{
		"dash as coreutils": {Deb{Name: "coreutils", Version: coreutils.Version, Architecture: "amd64", Path: dash.Path}, `Package: "dash", the lock pins "coreutils"`},
		"another version":   {Deb{Name: "dash", Version: "0.5.11-1", Architecture: "amd64", Path: dash.Path}, `Version: "` + dash.Version + `", the lock pins "0.5.11-1"`},
		"another arch":      {Deb{Name: "dash", Version: dash.Version, Architecture: "arm64", Path: dash.Path}, `Architecture: "amd64", the lock pins "arm64"`},
	} {
		_, err := assembleDebs(ctx, []Deb{tc.deb}, filepath.Join(t.TempDir(), "root"), t.TempDir())
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "locked package "+tc.deb.Name) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, tc.want)
		}
	}
	names, err := assembleDebs(ctx, debs, filepath.Join(t.TempDir(), "root"), t.TempDir())
	if err != nil || len(names) != len(debs) {
		t.Fatalf("the honest closure: %d of %d packages, %v", len(names), len(debs), err)
	}
}
