package debian

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// KernelTree is a Debian kernel image package unpacked under a directory.
type KernelTree struct {
	Vmlinuz    string // the bzImage, boot/vmlinuz-<release>
	Release    string // uname -r
	ModulesDir string // the modules of that release
}

// moduleRoots are where a kernel package keeps its modules: lib/modules up to Debian 12,
// usr/lib/modules from Debian 13 on (merged /usr: its packages ship nothing under /lib).
var moduleRoots = []string{"lib/modules", "usr/lib/modules"}

// FindKernel finds the kernel and its modules in a kernel package unpacked under root.
func FindKernel(root string) (*KernelTree, error) {
	vm, err := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if err != nil {
		return nil, err
	}
	if len(vm) != 1 {
		return nil, fmt.Errorf("kernel package has %d boot/vmlinuz-* files, want 1 (is it a linux-image package?)", len(vm))
	}
	release := strings.TrimPrefix(filepath.Base(vm[0]), "vmlinuz-")
	var tried []string
	for _, r := range moduleRoots {
		dir := filepath.Join(root, filepath.FromSlash(r), release)
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			return &KernelTree{Vmlinuz: vm[0], Release: release, ModulesDir: dir}, nil
		}
		tried = append(tried, r+"/"+release)
	}
	return nil, fmt.Errorf("kernel package has no modules for %s: neither %s exists", release, strings.Join(tried, " nor "))
}
