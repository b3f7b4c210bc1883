package build

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestWheelEntryPoints: a wheel's console and GUI entry points become the wrappers pip writes,
// in place of setuptools' own, and the wrapper runs the callable.
func TestWheelEntryPoints(t *testing.T) {
	whl := writeWheel(t, "srv-1.0-py3-none-any.whl", map[string]string{
		"srv/__init__.py": "def main():\n    return 3\n",
		"srv/cli.py":      "class app:\n    @staticmethod\n    def run():\n        print('running')\n",
		"srv-1.0.dist-info/entry_points.txt": "[console_scripts]\nsrv = srv:main\nsrv-admin = srv.cli:app.run [extra]\n\n" +
			"[gui_scripts]\nsrv-gui=srv:main\n\n[srv.plugins]\nplugin = srv:main\n",
		"srv-1.0.data/scripts/srv": "#!python\n# setuptools' wrapper, replaced by pip's\n",
	})
	entries, err := wheelEntries(whl, "usr/local/lib/python3.11/dist-packages", "usr/local/bin", "usr/local", "/usr/bin/python3.11")
	if err != nil {
		t.Fatal(err)
	}
	scripts := map[string]tarEntry{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name, "usr/local/bin/") && e.Type == '0' {
			scripts[strings.TrimPrefix(e.Name, "usr/local/bin/")] = e
		}
	}
	if len(scripts) != 3 {
		t.Fatalf("scripts %v, want srv, srv-admin and srv-gui", scripts)
	}
	want := `#!/usr/bin/python3.11
# -*- coding: utf-8 -*-
import re
import sys
from srv.cli import app
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\.pyw|\.exe)?$', '', sys.argv[0])
    sys.exit(app.run())
`
	if got := string(scripts["srv-admin"].Data); got != want || scripts["srv-admin"].Mode != 0o755 {
		t.Errorf("srv-admin (mode %o):\n%s\nwant:\n%s", scripts["srv-admin"].Mode, got, want)
	}
	if !strings.Contains(string(scripts["srv"].Data), "from srv import main\n") {
		t.Errorf("srv is not the entry point's wrapper:\n%s", scripts["srv"].Data)
	}

	// The wrapper runs: the host's python3 stands in for the guest's.
	lib := t.TempDir()
	bin := filepath.Join(lib, "srv-bin")
	for _, e := range entries {
		if strings.HasPrefix(e.Name, "usr/local/lib/python3.11/dist-packages/srv/") {
			p := filepath.Join(lib, strings.TrimPrefix(e.Name, "usr/local/lib/python3.11/dist-packages/"))
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, e.Data, 0o644)
		}
	}
	os.WriteFile(bin, scripts["srv"].Data, 0o755)
	cmd := exec.Command("python3", bin)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+lib, "PYTHONDONTWRITEBYTECODE=1")
	if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != 3 {
		t.Errorf("srv wrapper: %v, want exit code 3 from srv.main", err)
	}

	for spec, msg := range map[string]string{
		"bad = srv":        "a callable suffix (module:function) is required",
		"../x = srv:main":  `"../x" is not a script name`,
		"x = srv:main()":   "is not module:function",
		"x = os;rm:main":   "is not module:function",
		"x = srv:main\n[":  `"[" is not name = module:function`,
		"sub/x = srv:main": `"sub/x" is not a script name`,
	} {
		whl := writeWheel(t, "bad-1.0-py3-none-any.whl", map[string]string{
			"bad-1.0.dist-info/entry_points.txt": "[console_scripts]\n" + spec + "\n",
		})
		_, err := wheelEntries(whl, "site", "bin", "data", "/usr/bin/python3.11")
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want %q", spec, err, msg)
		}
	}
}
