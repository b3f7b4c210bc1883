package debian

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"1.0", "1.0", 0}, {"1.0~rc1", "1.0", -1}, {"1:0.1", "2.0", 1}, {"3.0.11-1~deb12u2", "3.0.11-1", -1},
		{"1.2.3-1+b1", "1.2.3-1", 1}, {"2.36-9+deb12u10", "2.36-9+deb12u9", 1}, {"1.0a", "1.0", 1},
	} {
		if got := CompareVersions(c.a, c.b); got != c.want {
			t.Errorf("Compare(%s, %s) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestParseRelations(t *testing.T) {
	g, err := ParseRelations("libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any (<< 3.12), perl:any,\n foo (>> 1)")
	must(t, err)
	if len(g) != 5 || len(g[1]) != 2 || g[1][1].Name != "debconf-2.0" || g[2][0].Arch != "any" || g[2][0].Constraint != (Constraint{"<<", "3.12"}) || g[4][0].Constraint.Op != ">>" {
		t.Fatalf("%#v", g)
	}
	for _, bad := range []string{"foo (>= 1", "foo (=~ 1)", "(>= 1)"} {
		if _, err := ParseRelations(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestParsePackages(t *testing.T) {
	pkgs, err := ParsePackages([]byte("Package: a\nVersion: 1\nArchitecture: amd64\nDepends: b,\n c\nDescription: x\n more\nSize: 12\n\nPackage: b\nVersion: 2\nArchitecture: all\n"))
	must(t, err)
	if len(pkgs) != 2 || pkgs[0].Depends != "b, c" || pkgs[0].Size != 12 || pkgs[1].Architecture != "all" {
		t.Fatalf("%+v", pkgs)
	}
	if _, err := ParsePackages([]byte("Version: 1\n\n")); err == nil {
		t.Error("stanza without Package accepted")
	}
}

// index builds a synthetic archive: name version [field value]...
func index(stanzas ...string) []Package {
	var b strings.Builder
	for _, s := range stanzas {
		b.WriteString(s + "\n\n")
	}
	pkgs, err := ParsePackages([]byte(b.String()))
	if err != nil {
		panic(err)
	}
	for i := range pkgs {
		if pkgs[i].Architecture == "" {
			pkgs[i].Architecture = "amd64"
		}
	}
	return pkgs
}

func names(ps []*Package) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name+"="+p.Version)
	}
	return out
}

func TestResolveSynthetic(t *testing.T) {
	pkgs := index(
		"Package: app\nVersion: 1\nDepends: libx (>= 2), mta | postfix, awk, usr-is-merged, dbg:i386\nPre-Depends: pre",
		"Package: libx\nVersion: 1",
		"Package: libx\nVersion: 3",
		"Package: libx\nVersion: 2",
		"Package: pre\nVersion: 1",
		"Package: exim\nVersion: 1\nProvides: mta",
		"Package: postfix\nVersion: 1\nProvides: mta",
		"Package: mawk\nVersion: 1\nPriority: required\nProvides: awk",
		"Package: gawk\nVersion: 1\nPriority: optional\nProvides: awk",
		"Package: dbg\nVersion: 1\nArchitecture: i386",
		"Package: other\nVersion: 1\nArchitecture: arm64",
	)
	r := NewResolver(pkgs)
	// dbg:i386 is unsatisfiable on amd64.
	if _, err := r.Resolve([]Request{{Name: "app"}}); err == nil || !strings.Contains(err.Error(), "dbg:i386") {
		t.Fatalf("want an unsatisfiable dbg:i386, got %v", err)
	}
	pkgs[0].Depends = "libx (>= 2), mta | postfix, awk, usr-is-merged"
	r = NewResolver(pkgs)
	got, err := r.Resolve([]Request{{Name: "app"}})
	must(t, err)
	// The first alternative (virtual mta) wins with its first provider by name; awk goes to the
	// required-priority provider; usr-is-merged is the layout's.
	want := []string{"app=1", "exim=1", "libx=3", "mawk=1", "pre=1"}
	if !reflect.DeepEqual(names(got), want) {
		t.Fatalf("got %v, want %v", names(got), want)
	}
	// A locked version that still satisfies is kept; a pin that does not is reported.
	r.Prefer = map[string]string{"libx": "2"}
	got, _ = r.Resolve([]Request{{Name: "app"}})
	if names(got)[2] != "libx=2" {
		t.Errorf("preferred version not kept: %v", names(got))
	}
	if _, err := r.Resolve([]Request{{Name: "app"}, {Name: "libx", Version: "1"}}); err == nil {
		t.Error("pinning libx=1 against app's libx (>= 2) resolved")
	}
	if _, err := r.Resolve([]Request{{Name: "libx", Version: "9"}}); err == nil || !strings.Contains(err.Error(), "available: 3") {
		t.Errorf("impossible version: %v", err)
	}
	if _, err := r.Resolve([]Request{{Name: "other"}}); err == nil {
		t.Error("arm64 package resolved")
	}
	if _, err := r.Resolve([]Request{{Name: "awk"}}); err == nil || !strings.Contains(err.Error(), "virtual") {
		t.Errorf("virtual request: %v", err)
	}
}

func TestChoose(t *testing.T) {
	r := NewResolver(index(
		"Package: libssl3\nVersion: 3.0.1", "Package: libssl-dev\nVersion: 3.0.1", "Package: libfoo1\nVersion: 1",
		"Package: libfoo2\nVersion: 2", "Package: bar\nVersion: 1\nProvides: baz",
	))
	for in, want := range map[string]string{"libssl": "libssl3", "libssl3": "libssl3", "libssl=3.0.1": "libssl3", "baz": "bar"} {
		p, err := r.Choose(in)
		if err != nil || p.Name != want {
			t.Errorf("Choose(%s) = %v, %v; want %s", in, p, err, want)
		}
	}
	if _, err := r.Choose("libfoo"); err == nil || !strings.Contains(err.Error(), "libfoo1, libfoo2") {
		t.Errorf("ambiguous: %v", err)
	}
	if _, err := r.Choose("libss"); err == nil || !strings.Contains(err.Error(), "libssl3") {
		t.Errorf("unknown with suggestions: %v", err)
	}
}

// The names users type against the real bookworm archive: a prefix that is no library stem is
// refused (it once took lib32z1), Provides give the hint, names are case-folded.
func TestChooseBookworm(t *testing.T) {
	r := NewResolver(openBookworm(t).Packages)
	for in, want := range map[string]string{"Curl": "curl", "libssl": "libssl3", "LibSSL": "libssl3", "libsqlite3": "libsqlite3-0", "libpq": "libpq5", "libz1": "zlib1g", "libpython": "libpython3.11"} {
		if p, err := r.Choose(in); err != nil || p.Name != want {
			t.Errorf("Choose(%s) = %v, %v; want %s", in, p, err, want)
		}
	}
	for in, want := range map[string][]string{
		"lib":        {"no package lib in the archive"},
		"libz":       {"no package libz", "zlib1g provides libz1"},
		"libncurses": {"libncurses names several libraries", "libncurses5, libncurses6"},
		"awk":        {"awk is a virtual package provided by several packages", "gawk", "mawk"},
		"crul":       {"no package crul", "similar names: ", "curl"},
	} {
		p, err := r.Choose(in)
		if err == nil {
			t.Errorf("Choose(%s) took %s", in, p.Name)
			continue
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Choose(%s): %v; want %q in it", in, err, w)
			}
		}
	}
}

// withHostApt makes a bookworm host whose apt sources are the given files (relative to
// /etc/apt), for the rest of the test, with no mirror override in the environment.
func withHostApt(t *testing.T, files map[string]string) {
	etc := t.TempDir()
	apt := filepath.Join(etc, "apt")
	must(t, os.MkdirAll(filepath.Join(apt, "sources.list.d"), 0o755))
	must(t, os.WriteFile(filepath.Join(etc, "os-release"), []byte("ID=debian\nVERSION_CODENAME=bookworm\n"), 0o644))
	for name, content := range files {
		must(t, os.WriteFile(filepath.Join(apt, name), []byte(content), 0o644))
	}
	saved := AptDir
	AptDir = apt
	t.Cleanup(func() { AptDir = saved })
	t.Setenv(MirrorEnv, "")
}

// sourceLines renders sources as "URI suite".
func sourceLines(got []Source) []string {
	var s []string
	for _, src := range got {
		s = append(s, src.URI+" "+src.Suite)
	}
	return s
}

func TestHostSources(t *testing.T) {
	withHostApt(t, map[string]string{
		"sources.list.d/debian.sources": "Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n" +
			"Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n" +
			"Types: deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n",
		"sources.list": "deb [arch=amd64] http://other.example/node nodistro main\n",
	})
	got, err := Sources("", "", "trixie")
	must(t, err)
	want := []string{"http://mirror.example/debian trixie", "http://mirror.example/debian trixie-updates", "http://mirror.example/debian-security trixie-security"}
	if s := sourceLines(got); !reflect.DeepEqual(s, want) {
		t.Fatalf("got %v, want %v", s, want)
	}
	t.Setenv(MirrorEnv, "http://m.example/debian/")
	got, _ = Sources("", "", "bookworm")
	if len(got) != 3 || got[2].URI != "http://m.example/debian-security" || got[0].From != "environment variable "+MirrorEnv {
		t.Fatalf("%+v", got)
	}
	got, _ = Sources("http://c.example/debian", "ukernel.toml [env] mirror", "bookworm")
	if got[0].URI != "http://c.example/debian" || got[0].From != "ukernel.toml [env] mirror" {
		t.Fatalf("%+v", got)
	}
}

// A host whose sources name its release by its alias ("stable") gives the same mirrors.
func TestHostSourcesAliases(t *testing.T) {
	withHostApt(t, map[string]string{"sources.list": "deb http://mirror.example/debian stable main\n" +
		"deb http://mirror.example/debian stable-updates main\n" +
		"deb http://mirror.example/debian-security stable-security main\n" +
		"deb http://mirror.example/debian sid main\n"})
	got, err := Sources("", "", "bookworm")
	must(t, err)
	want := []string{"http://mirror.example/debian bookworm", "http://mirror.example/debian bookworm-updates", "http://mirror.example/debian-security bookworm-security"}
	if s := sourceLines(got); !reflect.DeepEqual(s, want) {
		t.Fatalf("got %v, want %v", s, want)
	}
}

func TestPreferredVersionYieldsToNewerConstraint(t *testing.T) {
	r := NewResolver(index(
		"Package: libc6\nVersion: 1\nDepends: oldhelper",
		"Package: libc6\nVersion: 2\nDepends: newhelper\nProvides: libc-abi (= 2)",
		"Package: oldhelper\nVersion: 1",
		"Package: newhelper\nVersion: 1",
		"Package: tool\nVersion: 1\nDepends: libc6",
		"Package: app\nVersion: 1\nDepends: libc6 (>= 2), libc-abi (= 2)",
		"Package: legacy\nVersion: 1\nDepends: libc6 (<< 2)",
	))
	// The lock pinned libc6 1; app needs 2. tool marks libc6 1 first, so the closure is redone
	// with 2: oldhelper, pulled in by libc6 1 only, must not stay behind.
	r.Prefer = map[string]string{"libc6": "1", "tool": "1"}
	for _, reqs := range [][]Request{{{Name: "tool"}, {Name: "app"}}, {{Name: "app"}, {Name: "tool"}}} {
		got, err := r.Resolve(reqs)
		must(t, err)
		if want := []string{"app=1", "libc6=2", "newhelper=1", "tool=1"}; !reflect.DeepEqual(names(got), want) {
			t.Fatalf("%v: got %v, want %v", reqs, names(got), want)
		}
	}
	if r.Prefer["libc6"] != "1" {
		t.Errorf("Resolve changed the caller's Prefer: %v", r.Prefer)
	}
	// A locked version is never moved down, and an explicit pin never moves.
	if _, err := r.Resolve([]Request{{Name: "app"}, {Name: "legacy"}}); err == nil || !strings.Contains(err.Error(), "libc6 (<< 2)") {
		t.Errorf("conflicting constraints: %v", err)
	}
	if _, err := r.Resolve([]Request{{Name: "libc6", Version: "1"}, {Name: "app"}}); err == nil || !strings.Contains(err.Error(), "libc6 (>= 2)") {
		t.Errorf("explicit pin libc6=1 against app's libc6 (>= 2): %v", err)
	}
}
