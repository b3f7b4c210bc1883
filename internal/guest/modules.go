package guest

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// ModulePaths turns the manifest's module list (paths relative to /lib/modules/<release>/, already
// in dependency order) into absolute paths under root, keeping the order. It refuses paths that
// would leave the modules directory.
func ModulePaths(root, release string, modules []string) ([]string, error) {
	if release == "" {
		return nil, errors.New("kernel release unknown: the manifest has no kernel.release")
	}
	base := path.Join(root, "lib", "modules", release)
	out := make([]string, 0, len(modules))
	for _, m := range modules {
		clean := path.Clean(m)
		if m == "" || path.IsAbs(m) || clean == ".." || strings.HasPrefix(clean, "../") {
			return nil, fmt.Errorf("manifest module %q: want a path relative to /lib/modules/%s", m, release)
		}
		out = append(out, path.Join(base, clean))
	}
	return out, nil
}

// LoadModule loads one kernel module with finit_module. A module that is already loaded (or
// built in) is fine. Compressed modules are handed to the kernel to decompress.
func LoadModule(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("load module: %w", err)
	}
	defer f.Close()
	flags := 0
	if strings.HasSuffix(file, ".xz") || strings.HasSuffix(file, ".zst") || strings.HasSuffix(file, ".gz") {
		flags |= unix.MODULE_INIT_COMPRESSED_FILE
	}
	err = unix.FinitModule(int(f.Fd()), ModuleParams(kernelCmdline(), file), flags)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", file, err)
	}
	return nil
}
