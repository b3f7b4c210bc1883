package build

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/project"
)

// TestSourceLeavesOutHostByproducts: the bytecode caches that running the code on the host
// leaves in src/ reach neither the bundle nor the build's cache key.
func TestSourceLeavesOutHostByproducts(t *testing.T) {
	dir := t.TempDir()
	cfg := writeProject(t, dir)
	base, _ := project.LookupBase("python-3.11")
	deb := makeDeb(t, "python3.11", map[string]string{"usr/bin/python3.11": "x"})
	in := Input{Dir: dir, Config: cfg, Base: base, LockDigest: "d", Debs: []Deb{{Name: "python3.11", Version: "1.0", Architecture: "amd64", Path: deb, SHA256: "x"}}}
	clean, err := Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	bundle := sha(t, clean.Bundle)

	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "__pycache__"), 0o755)
	os.WriteFile(filepath.Join(src, "__pycache__", "main.cpython-311.pyc"), []byte("host bytecode"), 0o644)
	os.WriteFile(filepath.Join(src, "pkg", "legacy.pyc"), []byte("host bytecode"), 0o644)
	again, err := Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest != clean.Digest || !again.Cached {
		t.Errorf("host bytecode changed the build: digest %s -> %s, cached %v", clean.Digest, again.Digest, again.Cached)
	}
	os.RemoveAll(filepath.Join(dir, project.BuildDir)) // build again for real
	again, err = Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if got := sha(t, again.Bundle); got != bundle {
		out, _ := exec.Command("tar", "-tzf", again.Bundle).CombinedOutput()
		t.Errorf("host bytecode changed the bundle:\n%s", out)
	}

	cfg.Project.Entry = "src/__pycache__/main.cpython-311.pyc"
	if _, err := Run(context.Background(), in); err == nil || !strings.Contains(err.Error(), "is a Python bytecode cache") {
		t.Errorf("an entry the bundle leaves out: %v", err)
	}
}
