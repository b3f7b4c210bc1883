package template

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzResolve feeds a template's files (template.json, current, a revision's revision.json)
// and a NAME[@REV] reference through Resolve: an error, or the one revision that is there.
func FuzzResolve(f *testing.F) {
	id := strings.Repeat("ab", 32)
	f.Add([]byte(`{"name":"web","source":"/src/web","role":"api","vcpu":2,"publish":["8080:80"]}`), []byte(id+"\n"),
		[]byte(`{"id":"`+id+`","input_key":"k","inputs":{"lock":"l","source":"s"},"sizes":{"total":4096}}`), "web")
	f.Add([]byte(`{"name":"web"}`), []byte("abab\n"), []byte(`{"id":"`+id+`"}`), "web@abab")
	f.Add([]byte(`{"name":"other"}`), []byte(""), []byte(`{}`), "web@"+id)
	f.Add([]byte(`{"name":`), []byte(id), []byte(`{"id":"`+id+`","sizes":{"total":-1}}`), "web@zz")
	f.Fuzz(func(t *testing.T, spec, current, revision []byte, ref string) {
		s := At(t.TempDir())
		dir := s.RevisionDir("web", id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for p, data := range map[string][]byte{
			filepath.Join(s.TemplateDir("web"), SpecFile):    spec,
			filepath.Join(s.TemplateDir("web"), CurrentFile): current,
			filepath.Join(dir, RevisionFile):                 revision,
		} {
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		s.Revisions("web")
		s.Current("web")
		r, err := s.Resolve(ref)
		if err != nil {
			return
		}
		if r.Spec.Name != "web" || r.Revision.ID != id || r.Dir != dir || filepath.Dir(r.Image) != dir {
			t.Fatalf("%q resolved to %+v", ref, r)
		}
	})
}
