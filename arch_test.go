package ukernel

import (
	"os/exec"
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
