package scaffold

import (
	"slices"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/project"
)

// TestProgramsFollowLanguages: init has the minimal program for every language of project's table
// and no program for a language the table lacks, and each language's base exists and fits it.
func TestProgramsFollowLanguages(t *testing.T) {
	for _, name := range project.Languages() {
		if _, ok := programs[name]["minimal"]; !ok {
			t.Errorf("language %s has no minimal program", name)
		}
		lang, _ := project.LookupLanguage(name)
		b, err := project.LookupBase(lang.Base)
		if err != nil || b.Adapter != lang.BaseAdapter {
			t.Errorf("language %s: base %q (%+v, %v) does not fit its base adapter %q", name, lang.Base, b, err, lang.BaseAdapter)
		}
		if lang.Ext == "" || lang.Argv == nil {
			t.Errorf("language %s has no entry extension or argv", name)
		}
	}
	for name := range programs {
		if !slices.Contains(project.Languages(), name) {
			t.Errorf("programs for %s, which is not a language", name)
		}
	}
}
