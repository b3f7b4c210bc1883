package ukernel

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/ukernel-dev/ukernel/"

// goList runs go list with args and returns its output's lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", strings.Join(args, " "), err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// imports returns, for every package of the module (tests excluded), the module packages it
// imports directly, without the module prefix.
func imports(t *testing.T) map[string][]string {
	m := map[string][]string{}
	for _, line := range goList(t, "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], module)
		m[pkg] = []string{}
		for _, imp := range f[1:] {
			if p, ok := strings.CutPrefix(imp, module); ok {
				m[pkg] = append(m[pkg], p)
			}
		}
	}
	return m
}

// TestImportRules enforces the import rules of docs/ARCHITECTURE.md.
func TestImportRules(t *testing.T) {
	// The guest's PID 1 is built from the source InitSource embeds: it may depend on nothing else.
	for _, dep := range goList(t, "-deps", "-f", "{{.ImportPath}}", "./cmd/ukernel-init") {
		// Package-level work runs before init's main, on every boot: regexp's (a compile, and the
		// unicode tables it references) cost about 20 ms under software emulation
		// (docs/PERFORMANCE.md).
		if dep == "regexp" {
			t.Errorf("cmd/ukernel-init depends on regexp: its start would compile patterns and build the unicode tables on every boot")
		}
		p, ok := strings.CutPrefix(dep, module)
		if ok && p != "cmd/ukernel-init" && p != "internal/abi" && p != "internal/guest" {
			t.Errorf("cmd/ukernel-init depends on %s: the guest init may import only internal/guest and internal/abi (embedded by initsource.go)", p)
		}
	}
	allowed := map[string][]string{
		"internal/abi":        {},                                          // the contract: both sides import it
		"internal/vmm":        {"internal/abi"},                            // the Backend contract
		"internal/atomicfile": {"internal/crashpoint", "internal/workdir"}, // under every package that writes
		"internal/workdir":    {},
		"internal/crashpoint": {},
	}
	backends := []string{"internal/vmm/qemu", "internal/vmm/firecracker"}
	for pkg, imps := range imports(t) {
		if want, ok := allowed[pkg]; ok {
			for _, p := range imps {
				if !slices.Contains(want, p) {
					t.Errorf("%s imports %s; it may import only %v", pkg, p, want)
				}
			}
		}
		for _, p := range imps {
			if strings.HasPrefix(pkg, "internal/") && (strings.HasPrefix(p, "pkg/") || strings.HasPrefix(p, "cmd/")) {
				t.Errorf("%s imports %s: internal packages never import commands", pkg, p)
			}
			if slices.Contains(backends, pkg) && (slices.Contains(backends, p) ||
				p == "internal/vmm/launch" || p == "internal/vmm/backends" || p == "internal/vmm/hostcheck") {
				t.Errorf("backend %s imports %s: a backend imports vmm, never launch, the registry or another backend", pkg, p)
			}
			if slices.Contains(backends, p) && pkg != "internal/vmm/backends" && !strings.HasPrefix(pkg, "bench/") {
				t.Errorf("%s imports the backend %s: everything but the registry (and benches) reaches backends through internal/vmm/backends", pkg, p)
			}
		}
	}
}

// TestOneHome: what has one home is not computed elsewhere in the module's code (tests and test
// data aside): renames publish through internal/atomicfile, and only internal/cache says where
// the cache lives (internal/testenv keeps the tests' own kernel cache).
func TestOneHome(t *testing.T) {
	rules := []struct {
		needle, home, why string
	}{
		{"os.Rename(", "internal/atomicfile/", "publish through internal/atomicfile (WriteFile, Write, Publish, Rename, Move)"},
		{"os.UserCacheDir(", "internal/cache/", "the cache's place is cache.DefaultDir"},
		{`Getenv("XDG_CACHE_HOME")`, "internal/cache/", "the cache's place is cache.DefaultDir"},
	}
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && p != "." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") || strings.HasPrefix(p, "internal/testenv/") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, r := range rules {
			if strings.Contains(string(b), r.needle) && !strings.HasPrefix(p, r.home) {
				t.Errorf("%s calls %s: %s", p, r.needle, r.why)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
