package debian

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Debian 12's kernel packages put their modules under lib/modules, Debian 13's under
// usr/lib/modules; both must be found, and a package with neither names both paths.
func TestFindKernel(t *testing.T) {
	const rel = "6.12.99+deb13-cloud-amd64"
	for _, tc := range []struct {
		name    string
		files   []string
		modules string // want ModulesDir relative to the root; "" wants an error
		errHas  string
	}{
		{"debian-12", []string{"boot/vmlinuz-" + rel, "lib/modules/" + rel + "/modules.order"}, "lib/modules/" + rel, ""},
		{"debian-13", []string{"boot/vmlinuz-" + rel, "usr/lib/modules/" + rel + "/modules.order"}, "usr/lib/modules/" + rel, ""},
		{"no modules", []string{"boot/vmlinuz-" + rel, "usr/lib/modules/other/modules.order"}, "", "neither lib/modules/" + rel + " nor usr/lib/modules/" + rel},
		{"modules is a file", []string{"boot/vmlinuz-" + rel, "lib/modules/" + rel}, "", "no modules for " + rel},
		{"no kernel", []string{"lib/modules/" + rel + "/modules.order"}, "", "0 boot/vmlinuz-* files"},
		{"two kernels", []string{"boot/vmlinuz-" + rel, "boot/vmlinuz-6.1.0-1-amd64"}, "", "2 boot/vmlinuz-* files"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range tc.files {
				p := filepath.Join(root, filepath.FromSlash(f))
				must(t, os.MkdirAll(filepath.Dir(p), 0o755))
				must(t, os.WriteFile(p, []byte("x"), 0o644))
			}
			k, err := FindKernel(root)
			if tc.modules == "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("FindKernel = %+v, %v; want an error containing %q", k, err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := KernelTree{Vmlinuz: filepath.Join(root, "boot", "vmlinuz-"+rel), Release: rel, ModulesDir: filepath.Join(root, filepath.FromSlash(tc.modules))}
			if *k != want {
				t.Fatalf("FindKernel = %+v, want %+v", *k, want)
			}
		})
	}
}
