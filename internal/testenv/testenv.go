// Package testenv gives tests the real things they need: a Debian cloud kernel with its modules,
// fetched with the host's own apt configuration and cached between runs, and checks for the
// reference tools. The product itself gets its kernel through the lock; tests that exercise
// a layer below the lock use this copy.
package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
)

// Kernel is an unpacked Debian kernel package.
type Kernel struct {
	Vmlinuz    string // bzImage
	ModulesDir string // .../lib/modules/<release>
	Release    string
	Deb        string // the .deb it came from
}

var (
	kernelOnce sync.Once
	kernel     Kernel
	kernelErr  error
)

// DebianKernel returns the Debian 12 cloud kernel, downloading it with `apt-get download` into
// a cache under the user's cache directory on first use.
func DebianKernel(t testing.TB) Kernel {
	t.Helper()
	kernelOnce.Do(func() { kernel, kernelErr = fetchKernel() })
	if kernelErr != nil {
		t.Fatalf("test kernel: %v", kernelErr)
	}
	return kernel
}

func fetchKernel() (Kernel, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", "linux-image-cloud-amd64").Output()
	if err != nil {
		return Kernel{}, fmt.Errorf("apt-cache depends linux-image-cloud-amd64 (run apt-get update?): %w", err)
	}
	var pkg string
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "Depends: linux-image-") {
			pkg = strings.TrimPrefix(l, "Depends: ")
			break
		}
	}
	if pkg == "" {
		return Kernel{}, fmt.Errorf("no versioned kernel package behind linux-image-cloud-amd64 in %q", out)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return Kernel{}, err
	}
	dir := filepath.Join(base, "ukernel-test", pkg)
	release := strings.TrimPrefix(pkg, "linux-image-")
	k := Kernel{
		Vmlinuz:    filepath.Join(dir, "root", "boot", "vmlinuz-"+release),
		ModulesDir: filepath.Join(dir, "root", "lib", "modules", release),
		Release:    release,
	}
	if debs, _ := filepath.Glob(filepath.Join(dir, "*.deb")); len(debs) == 1 {
		k.Deb = debs[0]
		if _, err := os.Stat(k.Vmlinuz); err == nil {
			return k, nil
		}
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return Kernel{}, err
	}
	dl := exec.CommandContext(ctx, "apt-get", "download", pkg)
	dl.Dir = tmp
	if out, err := dl.CombinedOutput(); err != nil {
		return Kernel{}, fmt.Errorf("apt-get download %s: %v: %s", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return Kernel{}, fmt.Errorf("apt-get download %s left %d .deb files", pkg, len(debs))
	}
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], filepath.Join(tmp, "root")).CombinedOutput(); err != nil {
		return Kernel{}, fmt.Errorf("dpkg-deb -x %s: %v: %s", debs[0], err, out)
	}
	os.RemoveAll(dir)
	if err := atomicfile.Rename(tmp, dir); err != nil {
		return Kernel{}, err
	}
	k.Deb = filepath.Join(dir, filepath.Base(debs[0]))
	return k, nil
}

// RequireTools fails the test with an install hint when a reference tool is missing.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install it (see .ci/run for the Debian packages the tests need)", tool)
		}
	}
}
