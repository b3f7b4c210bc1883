package build

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// stageHostPython stages the host's Debian Python (interpreter, dynamic loader, the libraries
// it links and its standard library) into root as a python3.X package would, and returns X.Y.
func stageHostPython(t *testing.T, root string) string {
	t.Helper()
	name, err := os.Readlink("/usr/bin/python3")
	if err != nil || !strings.HasPrefix(name, "python3.") {
		t.Fatalf("this test stages the host's Debian Python: /usr/bin/python3 -> %q (%v)", name, err)
	}
	version := strings.TrimPrefix(name, "python")
	libDir := filepath.Join(root, "usr/lib/x86_64-linux-gnu")
	os.MkdirAll(libDir, 0o755)
	os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755)
	copyFile := func(src, dst string) {
		src, err := filepath.EvalSymlinks(src)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile("/usr/bin/"+name, filepath.Join(root, "usr/bin", name))
	copyFile("/lib64/ld-linux-x86-64.so.2", filepath.Join(libDir, "ld-linux-x86-64.so.2"))
	out, err := exec.Command("ldd", "/usr/bin/"+name).Output()
	if err != nil {
		t.Fatalf("ldd: %v", err)
	}
	for _, m := range regexp.MustCompile(`=> (/\S+)`).FindAllStringSubmatch(string(out), -1) {
		copyFile(m[1], filepath.Join(libDir, filepath.Base(m[1])))
	}
	if err := copyTree("/usr/lib/"+name, filepath.Join(root, "usr/lib", name)); err != nil {
		t.Fatal(err)
	}
	trim(root, false) // as the build does: no test suites, no host-compiled __pycache__
	return version
}

// TestByteCompileThroughSymlink: a project reached through a symlink (a symlinked home or
// work directory) gets the same bytecode as any other, recording guest paths.
func TestByteCompileThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	version := stageHostPython(t, filepath.Join(dir, "rootfs"))
	via := filepath.Join(t.TempDir(), "project")
	if err := os.Symlink(dir, via); err != nil {
		t.Fatal(err)
	}
	n, err := byteCompile(context.Background(), filepath.Join(via, "rootfs"), version, "")
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("nothing was byte-compiled through the symlinked path")
	}
	tag := "cpython-" + strings.ReplaceAll(version, ".", "")
	pyc, err := os.ReadFile(filepath.Join(dir, "rootfs/usr/lib/python"+version+"/encodings/__pycache__/__init__."+tag+".pyc"))
	if err != nil {
		t.Fatalf("%d modules compiled, not encodings: %v", n, err)
	}
	if !bytes.Contains(pyc, []byte("/usr/lib/python"+version+"/encodings/__init__.py")) || bytes.Contains(pyc, []byte(dir)) || bytes.Contains(pyc, []byte(via)) {
		t.Error("the bytecode does not record the guest path alone")
	}
}

// TestByteCompileAbsoluteLink: Debian's sitecustomize.py is an absolute link into /etc, which
// on the build host points out of the tree. Without its pyc every guest boot ran the compiler
// on it (about a tenth of the interpreter's start under TCG); it is compiled from the tree's
// target, beside the link, and checks its source's hash, as /etc is writable in the guest.
func TestByteCompileAbsoluteLink(t *testing.T) {
	root := filepath.Join(t.TempDir(), "rootfs")
	version := stageHostPython(t, root)
	lib := filepath.Join(root, "usr/lib/python"+version)
	etc := filepath.Join(root, "etc/python"+version)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "sitecustomize.py"), []byte("TREE_MARKER = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(lib, "sitecustomize.py")
	os.Remove(link)
	if err := os.Symlink("/etc/python"+version+"/sitecustomize.py", link); err != nil {
		t.Fatal(err)
	}
	if _, err := byteCompile(context.Background(), root, version, ""); err != nil {
		t.Fatal(err)
	}
	tag := "cpython-" + strings.ReplaceAll(version, ".", "")
	pyc, err := os.ReadFile(filepath.Join(lib, "__pycache__/sitecustomize."+tag+".pyc"))
	if err != nil {
		t.Fatalf("sitecustomize was not byte-compiled: %v", err)
	}
	// The flags word: bit 0 hash-based, bit 1 check the source.
	if len(pyc) < 16 || pyc[4] != 3 {
		t.Errorf("want a checked hash-based pyc, flags %v", pyc[4:8])
	}
	if !bytes.Contains(pyc, []byte("TREE_MARKER")) || !bytes.Contains(pyc, []byte("/usr/lib/python"+version+"/sitecustomize.py")) || bytes.Contains(pyc, []byte(root)) {
		t.Error("the pyc is not the tree's sitecustomize under its guest path")
	}
	// A broken link (no target in the tree) compiles nothing and fails nothing.
	os.Remove(filepath.Join(etc, "sitecustomize.py"))
	os.Remove(filepath.Join(lib, "__pycache__/sitecustomize."+tag+".pyc"))
	if _, err := byteCompile(context.Background(), root, version, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(lib, "__pycache__/sitecustomize."+tag+".pyc")); err == nil {
		t.Error("a pyc was made for a link with no target in the tree")
	}
}

// TestByteCompileWheels: every module of the installed wheels gets an unchecked pyc under its
// guest path, as pip compiles at install (a Flask app compiled Flask and its dependencies from
// source at every boot), and so do the standard-library modules their top-level imports load;
// a wheel's file that does not compile stays source only and fails nothing.
func TestByteCompileWheels(t *testing.T) {
	root := filepath.Join(t.TempDir(), "rootfs")
	version := stageHostPython(t, root)
	site := filepath.Join(root, WheelSite(version))
	for name, src := range map[string]string{
		"pkg/__init__.py":    "import fractions\nfrom . import util\n",
		"pkg/util.py":        "def f():\n    import mailbox\n",
		"pkg/py2/legacy.py":  "print 'python 2'\n",
		"single_module.py":   "X = 1\n",
		"pkg/net.py":         "import socket\n",
		"pkg/data/notpy.txt": "text\n",
	} {
		p := filepath.Join(site, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := byteCompile(context.Background(), root, version, ""); err != nil {
		t.Fatal(err)
	}
	tag := "cpython-" + strings.ReplaceAll(version, ".", "")
	for _, mod := range []string{"pkg/__init__", "pkg/util", "single_module"} {
		dir, base := filepath.Split(mod)
		pyc, err := os.ReadFile(filepath.Join(site, dir, "__pycache__", base+"."+tag+".pyc"))
		if err != nil {
			t.Errorf("%s was not byte-compiled: %v", mod, err)
			continue
		}
		// The flags word: bit 0 hash-based, bit 1 check the source.
		if len(pyc) < 16 || pyc[4] != 1 {
			t.Errorf("%s: want an unchecked hash-based pyc, flags %v", mod, pyc[4:8])
		}
		if !bytes.Contains(pyc, []byte("/"+WheelSite(version)+"/"+mod+".py")) || bytes.Contains(pyc, []byte(root)) {
			t.Errorf("%s: the pyc does not record the guest path alone", mod)
		}
	}
	if _, err := os.Stat(filepath.Join(site, "pkg/py2/__pycache__/legacy."+tag+".pyc")); err == nil {
		t.Error("a pyc was made for a file that does not compile")
	}
	lib := filepath.Join(root, "usr/lib/python"+version)
	if _, err := os.Stat(filepath.Join(lib, "__pycache__/fractions."+tag+".pyc")); err != nil {
		t.Errorf("fractions, a wheel's top-level import, was not byte-compiled: %v", err)
	}
	// socket.getaddrinfo encodes a str host with the idna codec.
	for _, mod := range []string{"encodings/__pycache__/idna", "__pycache__/stringprep"} {
		if _, err := os.Stat(filepath.Join(lib, mod+"."+tag+".pyc")); err != nil {
			t.Errorf("a wheel imports socket, but %s was not byte-compiled: %v", mod, err)
		}
	}
	if _, err := os.Stat(filepath.Join(lib, "__pycache__/mailbox."+tag+".pyc")); err == nil {
		t.Error("mailbox, imported only inside a function, was byte-compiled")
	}
}
