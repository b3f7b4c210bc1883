package build

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// wheelEntries installs a wheel the way pip would for the guest, as archive entries: the
// package files under sitePackages, .data/scripts under binDir with their "#!python" line
// pointing at the guest's interpreter, and a wrapper in binDir for each console and GUI entry
// point. Written here rather than running the host's pip so that nothing records host paths
// (direct_url.json, absolute shebangs) and no .pyc is compiled by a host Python of another
// version.
func wheelEntries(wheelPath, sitePackages, binDir, dataDir, python string) ([]tarEntry, error) {
	zr, err := zip.OpenReader(wheelPath)
	if err != nil {
		return nil, fmt.Errorf("open wheel %s: %w", wheelPath, err)
	}
	defer zr.Close()
	scripts, err := entryPointScripts(&zr.Reader)
	if err != nil {
		return nil, fmt.Errorf("wheel %s: %w", wheelPath, err)
	}
	var out []tarEntry
	var record string // the installed RECORD's path
	dirs := map[string]bool{}
	addDirs := func(p string) {
		for d := path.Dir(p); d != "." && d != "/" && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for _, f := range zr.File {
		name := path.Clean(f.Name)
		if strings.HasSuffix(f.Name, "/") {
			continue
		}
		if name == "." || strings.HasPrefix(name, "../") || path.IsAbs(name) {
			return nil, fmt.Errorf("wheel %s: unsafe path %q", wheelPath, f.Name)
		}
		if strings.HasSuffix(name, ".pyc") || strings.Contains(name, "/__pycache__/") || strings.HasSuffix(name, "/direct_url.json") {
			continue
		}
		dest, root := path.Join(sitePackages, name), sitePackages
		mode := int64(0o644)
		top, rest, _ := strings.Cut(name, "/")
		if strings.HasSuffix(top, ".data") {
			kind, sub, _ := strings.Cut(rest, "/")
			switch kind {
			case "purelib", "platlib":
				dest = path.Join(sitePackages, sub)
			case "scripts":
				if _, ok := scripts[sub]; ok {
					continue // a wrapper setuptools made for an entry point: pip writes its own
				}
				dest, root = path.Join(binDir, sub), binDir
				mode = 0o755
			case "data":
				dest, root = path.Join(dataDir, sub), dataDir
			case "headers":
				continue
			default:
				return nil, fmt.Errorf("wheel %s: unknown data directory %q", wheelPath, kind)
			}
		}
		// ".." or "x.data/scripts" would install a file in place of a directory above or at
		// the root it belongs in.
		if !strings.HasPrefix(dest, root+"/") {
			return nil, fmt.Errorf("wheel %s: unsafe path %q (outside %s)", wheelPath, f.Name, root)
		}
		if f.Mode()&0o111 != 0 {
			mode = 0o755
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("wheel %s: %s: %w", wheelPath, f.Name, err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("wheel %s: %s: %w", wheelPath, f.Name, err)
		}
		if mode == 0o755 && bytes.HasPrefix(data, []byte("#!python")) {
			if i := bytes.IndexByte(data, '\n'); i > 0 {
				data = append([]byte("#!"+python), data[i:]...)
			}
		}
		if strings.HasSuffix(top, ".dist-info") && (rest == "INSTALLER" || rest == "RECORD") {
			if rest == "RECORD" {
				if record != "" {
					return nil, fmt.Errorf("wheel %s has two .dist-info directories with a RECORD", wheelPath)
				}
				record = path.Join(sitePackages, name)
			}
			continue // both are written below, for what is installed
		}
		out = append(out, tarEntry{Name: dest, Mode: mode, Type: '0', Data: data})
		addDirs(dest)
	}
	for _, name := range slices.Sorted(maps.Keys(scripts)) {
		dest := path.Join(binDir, name)
		data := "#!" + python + "\n" + scripts[name]
		out = append(out, tarEntry{Name: dest, Mode: 0o755, Type: '0', Data: []byte(data)})
		addDirs(dest)
	}
	if record == "" {
		return nil, fmt.Errorf("wheel %s has no .dist-info/RECORD", wheelPath)
	}
	out = append(out, tarEntry{Name: path.Join(path.Dir(record), "INSTALLER"), Mode: 0o644, Type: '0', Data: []byte("ukernel\n")})
	out = append(out, tarEntry{Name: record, Mode: 0o644, Type: '0', Data: installedRecord(out, sitePackages, record)})
	addDirs(record) // a .dist-info holding only its RECORD has no other file to add it
	// Two members installed to one path (a purelib file beside the same top-level file, a
	// data/bin file and an entry point) would leave the image to whichever the sort put last.
	files := map[string]bool{}
	for _, e := range out {
		if files[e.Name] {
			return nil, fmt.Errorf("wheel %s installs %s twice", wheelPath, e.Name)
		}
		files[e.Name] = true
	}
	for d := range dirs {
		if files[d] {
			return nil, fmt.Errorf("wheel %s installs %s as a file and as a directory", wheelPath, d)
		}
		out = append(out, tarEntry{Name: d, Mode: 0o755, Type: '5'})
	}
	return out, nil
}

// installedRecord writes the RECORD pip writes for an installed wheel: every installed file
// (entries, all under the root) as its path relative to sitePackages, its SHA-256 (URL-safe
// base64 without padding) and size, sorted by path, and the RECORD itself (record) without
// either. The wheel's own RECORD describes the archive, not the install: its .data paths, the
// setuptools wrappers replaced by pip's, and no INSTALLER.
func installedRecord(entries []tarEntry, sitePackages, record string) []byte {
	rows := [][]string{{relPath(sitePackages, record), "", ""}}
	for _, e := range entries {
		if e.Type != '0' {
			continue
		}
		sum := sha256.Sum256(e.Data)
		rows = append(rows, []string{relPath(sitePackages, e.Name),
			"sha256=" + base64.RawURLEncoding.EncodeToString(sum[:]), strconv.Itoa(len(e.Data))})
	}
	slices.SortFunc(rows, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	// Written as Python's csv module writes it for pip (quoting only a field with a comma, a
	// quote or a line break; lines end in CRLF): Go's encoding/csv quotes other fields too
	// and turns a line break inside a quoted field into CRLF, which would record another path.
	var buf bytes.Buffer
	for _, row := range rows {
		for i, f := range row {
			if i > 0 {
				buf.WriteByte(',')
			}
			if strings.ContainsAny(f, ",\"\r\n") {
				f = `"` + strings.ReplaceAll(f, `"`, `""`) + `"`
			}
			buf.WriteString(f)
		}
		buf.WriteString("\r\n")
	}
	return buf.Bytes()
}

// relPath returns the slash path to target from the directory base (both relative to the same
// root and clean), going up with ".." where target is outside base.
func relPath(base, target string) string {
	b, t := strings.Split(base, "/"), strings.Split(target, "/")
	i := 0
	for i < len(b) && i < len(t)-1 && b[i] == t[i] {
		i++
	}
	up := slices.Repeat([]string{".."}, len(b)-i)
	return path.Join(append(up, t[i:]...)...)
}

// scriptTemplate is the body of the wrapper pip writes for an entry point (distlib's
// ScriptMaker template, filled with the module, the name it imports and the callable).
const scriptTemplate = `# -*- coding: utf-8 -*-
import re
import sys
from %s import %s
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\.pyw|\.exe)?$', '', sys.argv[0])
    sys.exit(%s())
`

// dottedName is what pip accepts on either side of an entry point's ":": dotted names of word
// characters (Python's \w, which matches Unicode letters and digits). It also keeps anything
// but an import out of the wrapper's code.
var dottedName = regexp.MustCompile(`^[\pL\pN_]+(\.[\pL\pN_]+)*$`)

// entryPointScripts reads the wheel's .dist-info/entry_points.txt and returns, for each console
// and GUI script, the wrapper body (without its shebang) keyed by the script's name. As pip
// does, a GUI script overrides a console script of the same name, extras ("[extra]") are
// ignored, and an entry point without a callable is an error.
func entryPointScripts(zr *zip.Reader) (map[string]string, error) {
	var file string
	var data []byte
	for _, f := range zr.File {
		top, rest, _ := strings.Cut(f.Name, "/")
		if strings.HasSuffix(top, ".dist-info") && rest == "entry_points.txt" {
			file = f.Name
			rc, err := f.Open()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.Name, err)
			}
			data, err = io.ReadAll(rc)
			rc.Close()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.Name, err)
			}
			break
		}
	}
	groups := map[string]map[string]string{"console_scripts": {}, "gui_scripts": {}}
	var group map[string]string
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			group = groups[strings.TrimSpace(line[1:len(line)-1])]
		case group != nil:
			name, value, ok := strings.Cut(line, "=")
			if !ok {
				return nil, fmt.Errorf("%s:%d: %q is not name = module:function", file, i+1, line)
			}
			name, value = strings.TrimSpace(name), strings.TrimSpace(value)
			value, _, _ = strings.Cut(value, "[") // extras select dependencies, not the script
			module, callable, ok := strings.Cut(strings.TrimSpace(value), ":")
			switch {
			case name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/ \t"):
				return nil, fmt.Errorf("%s:%d: %q is not a script name", file, i+1, name)
			case !ok:
				return nil, fmt.Errorf("%s:%d: %s = %s: a callable suffix (module:function) is required", file, i+1, name, value)
			case !dottedName.MatchString(module) || !dottedName.MatchString(callable):
				return nil, fmt.Errorf("%s:%d: %s = %s is not module:function", file, i+1, name, value)
			}
			importName, _, _ := strings.Cut(callable, ".")
			group[name] = fmt.Sprintf(scriptTemplate, module, importName, callable)
		}
	}
	scripts := groups["console_scripts"]
	maps.Copy(scripts, groups["gui_scripts"])
	return scripts, nil
}
