package lock

import (
	"slices"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/project"
)

// A requirement replaces the one of the same project, whatever its case or version.
func TestAddPython(t *testing.T) {
	env := &project.Env{Python: []string{"Requests==2.31.0", "six==1.16.0"}}
	added := AddPython(env, []string{"requests==2.32.3", "flask"})
	if !slices.Equal(added, []string{"requests==2.32.3", "flask"}) || !slices.Equal(env.Python, []string{"six==1.16.0", "requests==2.32.3", "flask"}) {
		t.Errorf("added %q, python %q", added, env.Python)
	}
}

// Remove takes names in any case and without versions; --system leaves Python alone; a name
// not listed changes nothing visible to the caller and says what is listed.
func TestRemove(t *testing.T) {
	env := func() *project.Env {
		return &project.Env{System: []string{"curl=7.88.1-10+deb12u12", "jq"}, Python: []string{"Six==1.16.0", "jq-py==1"}}
	}
	e := env()
	removed, err := Remove(e, []string{"CURL", "six"}, false)
	if err != nil || !slices.Equal(removed, []string{"curl=7.88.1-10+deb12u12", "Six==1.16.0"}) ||
		!slices.Equal(e.System, []string{"jq"}) || !slices.Equal(e.Python, []string{"jq-py==1"}) {
		t.Errorf("remove CURL six: %q %v; left %q %q", removed, err, e.System, e.Python)
	}
	e = env()
	if _, err := Remove(e, []string{"six"}, true); err == nil || !strings.Contains(err.Error(), "six is not a system package in env/ukernel.env; it lists: curl=7.88.1-10+deb12u12, jq") {
		t.Errorf("remove --system six: %v", err)
	}
	if _, err := Remove(&project.Env{}, []string{"jq"}, false); err == nil || !strings.Contains(err.Error(), "which lists none") {
		t.Errorf("remove from an empty env: %v", err)
	}
}

// An argument that is no Debian package in any spelling is refused before the archive is read
// (the options here name no archive that could be read), saying what the form is.
func TestAddSystemRefusesMalformed(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	for _, a := range []string{"curl==7", "curl (= 1.0)", "curl=", "=1.0", "c"} {
		env := &project.Env{Base: "debian-12"}
		_, _, err := AddSystem(t.Context(), Options{Dir: t.TempDir(), Offline: true, Keyring: "/nonexistent"}, env, []string{a})
		if err == nil || !strings.Contains(err.Error(), "expected NAME or NAME=VERSION") || len(env.System) != 0 {
			t.Errorf("add --system %q: %v; system %q", a, err, env.System)
		}
	}
}
