package build

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
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

	// RECORD lists what is installed, as pip's does: each file with its hash and size, the
	// wrappers pip writes (not setuptools' one it replaced), INSTALLER, and itself.
	files := map[string]tarEntry{}
	for _, e := range entries {
		files[e.Name] = e
	}
	const site = "usr/local/lib/python3.11/dist-packages/"
	rec, ok := files[site+"srv-1.0.dist-info/RECORD"]
	if !ok {
		t.Fatal("no installed RECORD")
	}
	rows, err := csv.NewReader(bytes.NewReader(rec.Data)).ReadAll()
	if err != nil {
		t.Fatalf("RECORD is not CSV: %v\n%s", err, rec.Data)
	}
	var listed []string
	for _, r := range rows {
		listed = append(listed, r[0])
		if r[0] == "srv-1.0.dist-info/RECORD" {
			if r[1] != "" || r[2] != "" {
				t.Errorf("RECORD's own row %q, want no hash and size", r)
			}
			continue
		}
		e, ok := files[path.Join(site, r[0])]
		if !ok {
			t.Errorf("RECORD lists %s, which is not installed", r[0])
			continue
		}
		sum := sha256.Sum256(e.Data)
		if want := []string{r[0], "sha256=" + base64.RawURLEncoding.EncodeToString(sum[:]), strconv.Itoa(len(e.Data))}; !slices.Equal(r, want) {
			t.Errorf("RECORD row %q, want %q", r, want)
		}
	}
	wantRows := []string{"../../../bin/srv", "../../../bin/srv-admin", "../../../bin/srv-gui",
		"srv-1.0.dist-info/INSTALLER", "srv-1.0.dist-info/RECORD", "srv-1.0.dist-info/entry_points.txt",
		"srv/__init__.py", "srv/cli.py"}
	if !slices.Equal(listed, wantRows) {
		t.Errorf("RECORD lists %q\nwant %q", listed, wantRows)
	}
	if n := bytes.Count(rec.Data, []byte("\r\n")); n != len(rows) || bytes.Count(rec.Data, []byte("\n")) != n {
		t.Errorf("RECORD's lines do not all end in CRLF as pip's do: %q", rec.Data)
	}

	// Quoting as Python's csv module does it: only a field with a comma, a quote or a line break.
	got := string(installedRecord([]tarEntry{{Name: "site/a,b.py", Type: '0'}, {Name: "site/ c\\.py", Type: '0'}, {Name: "site/q\"\n.py", Type: '0'}}, "site", "site/x.dist-info/RECORD"))
	const empty = "sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0"
	if want := " c\\.py," + empty + "\r\n\"a,b.py\"," + empty + "\r\n\"q\"\"\n.py\"," + empty + "\r\nx.dist-info/RECORD,,\r\n"; got != want {
		t.Errorf("RECORD quoting:\n got %q\nwant %q", got, want)
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

	// A wheel with two RECORDs, or none, is broken (pip refuses both).
	two := writeWheel(t, "two-1.0-py3-none-any.whl", map[string]string{"other-1.0.dist-info/RECORD": "x,,\n"})
	if _, err := wheelEntries(two, "site", "bin", "data", "/usr/bin/python3.11"); err == nil || !strings.Contains(err.Error(), "two .dist-info") {
		t.Errorf("a wheel with two RECORDs: %v", err)
	}
	p := filepath.Join(t.TempDir(), "norec-1.0-py3-none-any.whl")
	f, _ := os.Create(p)
	zw := zip.NewWriter(f)
	w, _ := zw.Create("norec/__init__.py")
	w.Write([]byte("\n"))
	zw.Close()
	f.Close()
	if _, err := wheelEntries(p, "site", "bin", "data", "/usr/bin/python3.11"); err == nil || !strings.Contains(err.Error(), "no .dist-info/RECORD") {
		t.Errorf("a wheel without RECORD: %v", err)
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
