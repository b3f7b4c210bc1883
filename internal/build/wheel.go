package build

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"path"
	"strings"
)

// wheelEntries installs a wheel the way pip would for the guest, as archive entries: the
// package files under sitePackages, .data/scripts under binDir with their "#!python" line
// pointing at the guest's interpreter. Written here rather than running the host's pip so that
// nothing records host paths (direct_url.json, absolute shebangs) and no .pyc is compiled by
// a host Python of another version.
func wheelEntries(wheelPath, sitePackages, binDir, dataDir, python string) ([]tarEntry, error) {
	zr, err := zip.OpenReader(wheelPath)
	if err != nil {
		return nil, fmt.Errorf("open wheel %s: %w", wheelPath, err)
	}
	defer zr.Close()
	var out []tarEntry
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
		dest := path.Join(sitePackages, name)
		mode := int64(0o644)
		top, rest, _ := strings.Cut(name, "/")
		if strings.HasSuffix(top, ".data") {
			kind, sub, _ := strings.Cut(rest, "/")
			switch kind {
			case "purelib", "platlib":
				dest = path.Join(sitePackages, sub)
			case "scripts":
				dest = path.Join(binDir, sub)
				mode = 0o755
			case "data":
				dest = path.Join(dataDir, sub)
			case "headers":
				continue
			default:
				return nil, fmt.Errorf("wheel %s: unknown data directory %q", wheelPath, kind)
			}
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
		if strings.HasSuffix(top, ".dist-info") && path.Base(name) == "INSTALLER" {
			continue
		}
		out = append(out, tarEntry{Name: dest, Mode: mode, Type: '0', Data: data})
		addDirs(dest)
		if strings.HasSuffix(top, ".dist-info") && path.Base(name) == "RECORD" {
			inst := path.Join(path.Dir(dest), "INSTALLER")
			out = append(out, tarEntry{Name: inst, Mode: 0o644, Type: '0', Data: []byte("ukernel\n")})
		}
	}
	for d := range dirs {
		out = append(out, tarEntry{Name: d, Mode: 0o755, Type: '5'})
	}
	return out, nil
}
