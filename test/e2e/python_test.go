package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPythonWorkloadView: what a Python workload sees of its interpreter stays as Debian's
// Python gives it while the build makes the start cheaper: sys.path, the flags, a wheel's
// module, a package a .pth file imports at startup (setuptools' distutils-precedence.pth), and
// Debian's sitecustomize, loaded from the pyc the build made for it.
func TestPythonWorkloadView(t *testing.T) {
	skipShort(t)
	dir := newProject(t, "py-view", "--template", "minimal")
	mustUK(t, dir, 5*time.Minute, "env", "add", "six==1.16.0", "setuptools==68.2.2")
	writeFile(t, filepath.Join(dir, "src/main.py"), `import json, os, sys
import six
sc = sys.modules.get("sitecustomize")
print("VIEW " + json.dumps({
    "path": sys.path,
    "flags": {k: int(getattr(sys.flags, k)) for k in ("no_site", "no_user_site", "isolated", "ignore_environment", "safe_path", "dont_write_bytecode", "utf8_mode")},
    "six": six.__file__,
    "pth": "_distutils_hack" in sys.modules,
    "sitecustomize": sc.__file__ if sc else None,
    "sitecustomize_pyc": os.path.isfile(sc.__cached__) if sc else False,
}), flush=True)
`)
	r := mustUK(t, dir, 15*time.Minute, "run")
	line := ""
	for _, l := range strings.Split(r.stdout, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "VIEW "); ok {
			line = v
		}
	}
	var got struct {
		Path          []string       `json:"path"`
		Flags         map[string]int `json:"flags"`
		Six           string         `json:"six"`
		Pth           bool           `json:"pth"`
		Sitecustomize string         `json:"sitecustomize"`
		SitecustPyc   bool           `json:"sitecustomize_pyc"`
	}
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("the workload's view: %v\nstdout:\n%s\nstderr:\n%s", err, r.stdout, r.stderr)
	}
	wantPath := []string{"/app", "/usr/lib/python311.zip", "/usr/lib/python3.11", "/usr/lib/python3.11/lib-dynload",
		"/usr/local/lib/python3.11/dist-packages", "/usr/lib/python3/dist-packages"}
	if strings.Join(got.Path, ":") != strings.Join(wantPath, ":") {
		t.Errorf("sys.path = %q, want %q", got.Path, wantPath)
	}
	wantFlags := map[string]int{"no_site": 0, "no_user_site": 0, "isolated": 0, "ignore_environment": 0,
		"safe_path": 0, "dont_write_bytecode": 1, "utf8_mode": 1}
	for k, v := range wantFlags {
		if got.Flags[k] != v {
			t.Errorf("sys.flags.%s = %d, want %d", k, got.Flags[k], v)
		}
	}
	if got.Six != "/usr/local/lib/python3.11/dist-packages/six.py" {
		t.Errorf("six imported from %q", got.Six)
	}
	if !got.Pth {
		t.Error("setuptools' .pth file did not run at startup")
	}
	if got.Sitecustomize != "/usr/lib/python3.11/sitecustomize.py" || !got.SitecustPyc {
		t.Errorf("sitecustomize %q, its pyc in the image: %v", got.Sitecustomize, got.SitecustPyc)
	}
}
