package debian

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzAptSources: the host's apt sources, one-line (sources.list) and deb822 (*.sources), read
// without a panic; every entry read names a type, a URI and a suite (one-line: exactly one of
// each, its options skipped), and written back in the same format it reads the same.
func FuzzAptSources(f *testing.F) {
	f.Add("deb http://deb.example/debian bookworm main contrib # x\ndeb [arch=amd64 signed-by=/k.gpg] http://m/d bookworm-updates main\n#deb-src x y z\n",
		"Types: deb deb-src\nURIs: http://m/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /k.gpg\n\n# c\nTypes: deb\nURIs: http://x\n http://y\nSuites: trixie\nComponents: main\nEnabled: no\n")
	f.Add("deb [trusted=yes http://m/d bookworm main\n", "Types:\nURIs: u\n")
	f.Add("deb [ arch=amd64 ] [x y z\n", " continued\nuris: a:b\n\n\n")
	f.Fuzz(func(t *testing.T, oneLine, deb822 string) {
		dir := t.TempDir()
		read := func(name, data string, parse func(string) ([]aptEntry, error)) []aptEntry {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			e, err := parse(p)
			if err != nil {
				return nil
			}
			for i := range e {
				e[i].file = ""
			}
			return e
		}
		lines := read("sources.list", oneLine, readOneLine)
		var back strings.Builder
		for _, e := range lines {
			if len(e.types) != 1 || len(e.uris) != 1 || len(e.suites) != 1 || len(e.components) == 0 || strings.HasPrefix(e.uris[0], "[") {
				t.Fatalf("one-line entry %+v", e)
			}
			back.WriteString(strings.Join(append(append(append([]string{}, e.types...), e.uris[0], e.suites[0]), e.components...), " ") + "\n")
		}
		if again := read("sources.list", back.String(), readOneLine); !reflect.DeepEqual(again, lines) {
			t.Fatalf("one-line: read %+v; written back as %q, read %+v", lines, back.String(), again)
		}
		stanzas := read("x.sources", deb822, readDeb822)
		back.Reset()
		for _, e := range stanzas {
			if len(e.uris) == 0 {
				t.Fatalf("deb822 entry without a URI: %+v", e)
			}
			for _, f := range []struct {
				k string
				v []string
			}{{"Types", e.types}, {"URIs", e.uris}, {"Suites", e.suites}, {"Components", e.components}} {
				back.WriteString(f.k + ": " + strings.Join(f.v, " ") + "\n")
			}
			back.WriteString("\n")
		}
		if again := read("x.sources", back.String(), readDeb822); !reflect.DeepEqual(again, stanzas) {
			t.Fatalf("deb822: read %+v; written back as %q, read %+v", stanzas, back.String(), again)
		}
	})
}
