package image

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// moduleExts are the file endings of kernel modules, compressed or not (Debian 13 ships .ko.xz).
var moduleExts = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// moduleName normalises a module or file name the way the kernel does: no extension, '-' as '_'.
func moduleName(s string) string {
	s = filepath.Base(s)
	for _, ext := range moduleExts {
		if strings.HasSuffix(s, ext) {
			s = strings.TrimSuffix(s, ext)
			break
		}
	}
	return strings.ReplaceAll(s, "-", "_")
}

func isModuleFile(p string) bool {
	for _, ext := range moduleExts {
		if strings.HasSuffix(p, ext) {
			return true
		}
	}
	return false
}

// ResolveModules finds the named modules under modulesDir (a /lib/modules/<release> tree), adds
// their dependencies read from each module's ELF .modinfo "depends=" (Debian's package ships no
// modules.dep) and returns their paths relative to modulesDir, dependencies first. The order is
// deterministic: requested modules in the order given, each one's dependencies depth-first in
// name order. Modules built into the kernel (listed in modules.builtin) are left out.
func ResolveModules(modulesDir string, names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	index, err := indexModules(modulesDir)
	if err != nil {
		return nil, err
	}
	builtin, err := readBuiltin(modulesDir)
	if err != nil {
		return nil, err
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		switch state[name] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("kernel module dependency cycle: %s -> %s", strings.Join(chain, " -> "), name)
		}
		if builtin[name] {
			state[name] = 2 // compiled into the kernel: nothing to load
			return nil
		}
		rel, ok := index[name]
		if !ok {
			if len(chain) > 0 {
				return fmt.Errorf("kernel module %s (needed by %s) not found under %s", name, strings.Join(chain, " -> "), modulesDir)
			}
			return fmt.Errorf("kernel module %s not found under %s (neither a module file nor in modules.builtin)", name, modulesDir)
		}
		state[name] = 1
		deps, err := moduleDepends(filepath.Join(modulesDir, rel))
		if err != nil {
			return err
		}
		sort.Strings(deps)
		for _, d := range deps {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, rel)
		return nil
	}
	for _, n := range names {
		if err := visit(moduleName(n), nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// resolveModuleGroups resolves the modules every boot loads and those of each group together:
// all of them in one load order (boot modules first), and for each group the paths only that
// group needs, in that order. A dependency shared with the boot set stays in the boot set.
func resolveModuleGroups(modulesDir string, boot []string, groups map[string][]string) ([]string, map[string][]string, error) {
	all := append([]string(nil), boot...)
	names := slices.Sorted(maps.Keys(groups))
	for _, g := range names {
		all = append(all, groups[g]...)
	}
	order, err := ResolveModules(modulesDir, all)
	if err != nil || len(groups) == 0 {
		return order, nil, err
	}
	bootSet, err := ResolveModules(modulesDir, boot)
	if err != nil {
		return nil, nil, err
	}
	out := map[string][]string{}
	for _, g := range names {
		closure, err := ResolveModules(modulesDir, groups[g])
		if err != nil {
			return nil, nil, err
		}
		for _, p := range order {
			if slices.Contains(closure, p) && !slices.Contains(bootSet, p) {
				out[g] = append(out[g], p)
			}
		}
	}
	return order, out, nil
}

// indexModules maps module names to their slash-separated paths relative to dir.
func indexModules(dir string) (map[string]string, error) {
	index := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !isModuleFile(p) {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := moduleName(p)
		if prev, dup := index[name]; dup {
			return fmt.Errorf("kernel module %s found twice under %s: %s and %s", name, dir, prev, rel)
		}
		index[name] = filepath.ToSlash(rel)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing kernel modules: %w", err)
	}
	if len(index) == 0 {
		return nil, fmt.Errorf("no kernel modules under %s", dir)
	}
	return index, nil
}

// readBuiltin reads modules.builtin (paths of modules compiled into the kernel); a missing file
// means none are known.
func readBuiltin(dir string) (map[string]bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, "modules.builtin"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	m := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			m[moduleName(l)] = true
		}
	}
	return m, sc.Err()
}

// moduleDepends returns the module names in the "depends=" entry of a module's .modinfo section.
func moduleDepends(path string) ([]string, error) {
	data, err := readModule(path)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("kernel module %s: not an ELF file: %w", path, err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("kernel module %s has no .modinfo section", path)
	}
	info, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("kernel module %s: reading .modinfo: %w", path, err)
	}
	var deps []string
	for _, kv := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			for _, d := range strings.Split(string(v), ",") {
				if d = strings.TrimSpace(d); d != "" {
					deps = append(deps, moduleName(d))
				}
			}
		}
	}
	return deps, nil
}

// readModule returns a module's ELF bytes, decompressing .ko.xz, .ko.zst and .ko.gz.
func readModule(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(path, ".xz"):
		if r, err = xz.NewReader(f); err != nil {
			return nil, fmt.Errorf("kernel module %s: %w", path, err)
		}
	case strings.HasSuffix(path, ".zst"):
		d, err := zstd.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("kernel module %s: %w", path, err)
		}
		defer d.Close()
		r = d
	case strings.HasSuffix(path, ".gz"):
		if r, err = gzip.NewReader(f); err != nil {
			return nil, fmt.Errorf("kernel module %s: %w", path, err)
		}
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("kernel module %s: %w", path, err)
	}
	return b, nil
}
