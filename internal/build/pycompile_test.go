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
