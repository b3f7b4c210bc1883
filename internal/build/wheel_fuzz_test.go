package build

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzWheelEntries installs wheels made of any file names (one a line) and any entry_points.txt:
// the install fails or gives clean paths strictly inside the install roots, each once, their
// parent directories, a wrapper with the guest's shebang per script, and a RECORD (read back as
// CSV) listing every installed file with its hash and size.
func FuzzWheelEntries(f *testing.F) {
	f.Add("w/__init__.py\nw-1.0.dist-info/RECORD\nw-1.0.data/scripts/tool\nw-1.0.data/data/share/x\nw-1.0.data/purelib/p.py", "[console_scripts]\nw = w:main\nw-admin = w.cli:app.run [x]\n[gui_scripts]\nw=w:main\n", []byte("#!python\nprint(1)\n"))
	f.Add("w-1.0.dist-info/RECORD\nw-1.0.data/headers/h.h\nw/a,b\"c.py\nw/__pycache__/a.pyc", "[console_scripts]\nbad name = w:main\n", []byte(""))
	f.Add("w-1.0.dist-info/RECORD\n..\nw-1.0.data/scripts", "", []byte("x"))
	const site, bin, data = "site", "bin", "data"
	f.Fuzz(func(t *testing.T, names, entryPoints string, content []byte) {
		p := filepath.Join(t.TempDir(), "w-1.0-py3-none-any.whl")
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		for i, name := range strings.Split(names, "\n") {
			h := &zip.FileHeader{Name: name, Method: zip.Store}
			if strings.Contains(name, "scripts/") {
				h.SetMode(0o755)
			}
			w, err := zw.CreateHeader(h)
			if err != nil {
				return
			}
			w.Write(append(content, strconv.Itoa(i)...))
		}
		if w, err := zw.Create("w-1.0.dist-info/entry_points.txt"); err == nil {
			w.Write([]byte(entryPoints))
		}
		if zw.Close() != nil {
			return
		}
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		entries, err := wheelEntries(p, site, bin, data, "/usr/bin/python3.11")
		if err != nil {
			return
		}
		seen, dirs, files := map[string]bool{}, map[string]bool{}, map[string]tarEntry{}
		var record []byte
		for _, e := range entries {
			if seen[e.Name] {
				t.Fatalf("%q installed twice", e.Name)
			}
			seen[e.Name] = true
			if e.Name == "" || path.Clean(e.Name) != e.Name || path.IsAbs(e.Name) {
				t.Fatalf("entry name %q", e.Name)
			}
			if e.Type == '5' {
				dirs[e.Name] = true
				continue
			}
			files[e.Name] = e
			root, _, _ := strings.Cut(e.Name, "/")
			if (root != site && root != bin && root != data) || !strings.Contains(e.Name, "/") {
				t.Fatalf("%q is not inside an install root", e.Name)
			}
			if strings.HasSuffix(e.Name, ".dist-info/RECORD") {
				record = e.Data
			}
			if root == bin && !bytes.HasPrefix(e.Data, []byte("#!/usr/bin/python3.11\n")) && bytes.HasPrefix(e.Data, []byte("#!python")) {
				t.Fatalf("script %s keeps its #!python line", e.Name)
			}
		}
		for name := range files {
			for d := path.Dir(name); d != "."; d = path.Dir(d) {
				if !dirs[d] {
					t.Fatalf("%s: no entry for its directory %s", name, d)
				}
			}
		}
		if strings.Contains(names, "\r") {
			return // encoding/csv reads CR LF inside a quoted field as LF, Python's csv does not
		}
		rows, err := csv.NewReader(bytes.NewReader(record)).ReadAll()
		if err != nil {
			t.Fatalf("RECORD is not CSV: %v\n%q", err, record)
		}
		if len(rows) != len(files) {
			t.Fatalf("RECORD has %d rows for %d files:\n%s", len(rows), len(files), record)
		}
		for _, r := range rows {
			e, ok := files[path.Join(site, r[0])]
			if !ok {
				t.Fatalf("RECORD lists %q, not installed", r[0])
			}
			if r[1] == "" && strings.HasSuffix(e.Name, ".dist-info/RECORD") {
				continue
			}
			sum := sha256.Sum256(e.Data)
			if r[1] != "sha256="+base64.RawURLEncoding.EncodeToString(sum[:]) || r[2] != strconv.Itoa(len(e.Data)) {
				t.Fatalf("RECORD row %q does not match %s", r, e.Name)
			}
		}
	})
}

// TestWheelRefusesRootPaths: a member named ".." or a bare .data directory name (found by
// FuzzWheelEntries) would be installed as a file in place of the directory above site-packages
// or of the scripts, purelib or data root: refused.
func TestWheelRefusesRootPaths(t *testing.T) {
	for _, name := range []string{"..", "w-1.0.data/scripts", "w-1.0.data/purelib", "w-1.0.data/data"} {
		whl := writeWheel(t, "w-1.0-py3-none-any.whl", map[string]string{name: "x", "w/__init__.py": ""})
		_, err := wheelEntries(whl, "site", "bin", "data", "/usr/bin/python3.11")
		if err == nil || !strings.Contains(err.Error(), "unsafe path") {
			t.Errorf("member %q: %v, want an unsafe path error", name, err)
		}
	}
}

// TestWheelRefusesCollisions: two members installed to one path, or a file where a directory
// goes (found by FuzzWheelEntries), are an error; the image held whichever sorted last.
func TestWheelRefusesCollisions(t *testing.T) {
	for _, c := range []struct {
		files map[string]string
		want  string
	}{
		{map[string]string{"w/a.py": "1", "w-1.0.data/purelib/w/a.py": "2"}, "installs site/w/a.py twice"},
		{map[string]string{"w": "file", "w/a.py": ""}, "installs site/w as a file and as a directory"},
		{map[string]string{"w-1.0.data/purelib/w-1.0.dist-info/RECORD": ""}, "installs site/w-1.0.dist-info/RECORD twice"},
	} {
		whl := writeWheel(t, "w-1.0-py3-none-any.whl", c.files)
		_, err := wheelEntries(whl, "site", "bin", "data", "/usr/bin/python3.11")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.files, err, c.want)
		}
	}
}
