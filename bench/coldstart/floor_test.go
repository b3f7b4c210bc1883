package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

func TestFloorCmdline(t *testing.T) {
	m := abi.Manifest{
		Entry: []string{"/usr/bin/python3.11", "/app/main.py"},
		Env:   map[string]string{"PYTHONUNBUFFERED": "1"},
		User:  "app",
		Users: []abi.User{{Name: "root", Home: "/root"}, {Name: "app", Home: "/app"}},
	}
	got, err := floorCmdline("console=ttyS0 quiet rdinit=/init", m)
	if err != nil {
		t.Fatal(err)
	}
	want := "console=ttyS0 quiet rdinit=/usr/bin/python3.11 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/app LANG=C.UTF-8 LOGNAME=app USER=app PYTHONUNBUFFERED=1 -- /app/main.py"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	m.Env["MSG"] = "two words"
	if _, err := floorCmdline("quiet", m); err == nil {
		t.Error("a value with a space was put on the kernel command line")
	}
}

// floorFiles keeps the entry's ELF closure (through the merged-/usr symlinks an image has), the
// pycs with their sources and the workload's files, and nothing else.
func TestFloorFiles(t *testing.T) {
	root := t.TempDir()
	write := func(p string, b []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	link := func(p, target string) {
		t.Helper()
		os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755)
		if err := os.Symlink(target, filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	read := func(p string) []byte {
		t.Helper()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Skipf("the host's %s: %v", p, err)
		}
		return b
	}
	// The host's /bin/true needs libc.so.6 and the dynamic loader, as the image's python does.
	write("usr/bin/true", read("/bin/true"))
	link("usr/bin/entry", "true")
	write("usr/lib/x86_64-linux-gnu/libc.so.6", read("/lib/x86_64-linux-gnu/libc.so.6"))
	write("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", read("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"))
	link("lib", "usr/lib")
	link("lib64", "usr/lib64")
	link("usr/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
	write("usr/lib/x86_64-linux-gnu/libunused.so.1", []byte("x"))
	write("usr/lib/python3.11/os.py", []byte("x"))
	write("usr/lib/python3.11/json/__init__.py", []byte("x"))
	write("usr/lib/python3.11/encodings/utf_8.py", []byte("x"))
	write("usr/lib/python3.11/encodings/__pycache__/utf_8.cpython-311.pyc", []byte("x"))
	write("etc/python3.11/sitecustomize.py", []byte("x"))
	write("etc/passwd", []byte("x"))
	write("app/main.py", []byte("x"))

	keep, err := floorFiles(root, abi.Manifest{Entry: []string{"/usr/bin/entry", "/app/main.py"}, Workdir: "/app"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for p := range keep {
		got = append(got, p)
	}
	slices.Sort(got)
	want := []string{
		"/app/main.py",
		"/etc/python3.11/sitecustomize.py",
		"/usr/bin/true",
		"/usr/lib/python3.11/encodings/__pycache__/utf_8.cpython-311.pyc",
		"/usr/lib/python3.11/encodings/utf_8.py",
		"/usr/lib/python3.11/os.py",
		"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"/usr/lib/x86_64-linux-gnu/libc.so.6",
	}
	if !slices.Equal(got, want) {
		t.Errorf("kept:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
