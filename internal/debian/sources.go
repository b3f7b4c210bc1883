package debian

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Source is one suite of an archive: packages are read from URI/dists/Suite/main/binary-amd64.
type Source struct {
	URI   string
	Suite string
	// From says where the mirror setting came from, for error messages.
	From string
}

// MirrorEnv is the environment variable that overrides the host's apt sources.
const MirrorEnv = "UKERNEL_DEBIAN_MIRROR"

// AptDir is the apt configuration directory read for the host's sources; tests may change it.
var AptDir = "/etc/apt"

// Sources returns the suites of release codename to read. The mirror is configMirror (from
// ukernel.toml's [env] mirror, described by configFrom) if set, else $UKERNEL_DEBIAN_MIRROR, else
// the host's apt sources. An explicit mirror serves <codename> and <codename>-updates, and its
// "-security" sibling (…/debian → …/debian-security) serves <codename>-security, as Debian lays
// them out. The host's sources are used suite by suite as listed, with the host's codename
// replaced by the requested one.
func Sources(configMirror, configFrom, codename string) ([]Source, error) {
	if configMirror != "" {
		return mirrorSources(configMirror, configFrom, codename), nil
	}
	if m := os.Getenv(MirrorEnv); m != "" {
		return mirrorSources(m, "environment variable "+MirrorEnv, codename), nil
	}
	return hostSources(codename)
}

func mirrorSources(uri, from, codename string) []Source {
	uri = strings.TrimRight(uri, "/")
	return []Source{
		{URI: uri, Suite: codename, From: from},
		{URI: uri, Suite: codename + "-updates", From: from},
		{URI: uri + "-security", Suite: codename + "-security", From: from},
	}
}

type aptEntry struct {
	types, uris, suites, components []string
	file                            string
}

func hostSources(codename string) ([]Source, error) {
	var entries []aptEntry
	files, _ := filepath.Glob(filepath.Join(AptDir, "sources.list.d", "*.sources"))
	sort.Strings(files)
	for _, f := range files {
		e, err := readDeb822(f)
		if err != nil {
			return nil, err
		}
		entries = append(entries, e...)
	}
	lists, _ := filepath.Glob(filepath.Join(AptDir, "sources.list.d", "*.list"))
	sort.Strings(lists)
	for _, f := range append([]string{filepath.Join(AptDir, "sources.list")}, lists...) {
		e, err := readOneLine(f)
		if err != nil {
			return nil, err
		}
		entries = append(entries, e...)
	}
	host := hostCodename()
	var out []Source
	seen := map[string]bool{}
	for _, e := range entries {
		if !contains(e.types, "deb") || !contains(e.components, "main") {
			continue
		}
		for _, s := range e.suites {
			base, suffix, _ := strings.Cut(s, "-")
			// Only the host's own release (by codename or by its alias, as in "stable-updates")
			// tells which mirror serves which pocket; other releases' lines are left out.
			if host != "" && base != host && !suiteAliases[base] {
				continue
			}
			suite := codename
			if suffix != "" {
				suite += "-" + suffix
			}
			for _, u := range e.uris {
				src := Source{URI: strings.TrimRight(u, "/"), Suite: suite, From: "apt sources " + e.file}
				if key := src.URI + " " + src.Suite; !seen[key] {
					seen[key] = true
					out = append(out, src)
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no Debian mirror configured: set [env] mirror in ukernel.toml or %s, or add a deb source for main to %s", MirrorEnv, AptDir)
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// hostCodename is the host's Debian codename (VERSION_CODENAME in os-release), "" if unknown.
// suiteAliases are the archive's names for whichever release holds that role.
var suiteAliases = map[string]bool{"stable": true, "oldstable": true, "testing": true, "unstable": true}

func hostCodename() string {
	data, err := os.ReadFile(filepath.Join(filepath.Dir(AptDir), "os-release"))
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VERSION_CODENAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

func readDeb822(path string) ([]aptEntry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []aptEntry
	cur := aptEntry{file: path}
	enabled := true
	var last *[]string
	flush := func() {
		if len(cur.uris) > 0 && enabled {
			out = append(out, cur)
		}
		cur, enabled, last = aptEntry{file: path}, true, nil
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "#") {
			continue
		}
		if strings.TrimSpace(l) == "" {
			flush()
			continue
		}
		if l[0] == ' ' || l[0] == '\t' {
			if last != nil {
				*last = append(*last, strings.Fields(l)...)
			}
			continue
		}
		k, v, _ := strings.Cut(l, ":")
		last = nil
		switch strings.ToLower(k) {
		case "types":
			last = &cur.types
		case "uris":
			last = &cur.uris
		case "suites":
			last = &cur.suites
		case "components":
			last = &cur.components
		case "enabled":
			enabled = strings.TrimSpace(v) != "no"
		}
		if last != nil {
			*last = append(*last, strings.Fields(v)...)
		}
	}
	flush()
	return out, nil
}

func readOneLine(path string) ([]aptEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	defer f.Close()
	var out []aptEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(l, '#'); i >= 0 {
			l = l[:i]
		}
		fields := strings.Fields(l)
		if len(fields) > 1 && strings.HasPrefix(fields[1], "[") {
			// Options: skip up to the closing bracket.
			j := 1
			for j < len(fields) && !strings.HasSuffix(fields[j], "]") {
				j++
			}
			if j == len(fields) {
				continue // options without their "]": apt refuses the line
			}
			fields = append(fields[:1], fields[j+1:]...)
		}
		if len(fields) < 4 || strings.HasPrefix(fields[1], "[") {
			continue // a second options bracket is not a URI
		}
		out = append(out, aptEntry{types: fields[:1], uris: fields[1:2], suites: fields[2:3], components: fields[3:], file: path})
	}
	return out, sc.Err()
}
