package main

import (
	"context"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/guest"
	"github.com/ukernel-dev/ukernel/internal/image"
)

// The floor: the image's own entry (for the python presets, its python3.11 running its script)
// as the kernel's /init, from an initramfs holding only the files its start reads, copied from
// the image's own root partition: no ukernel init, no modules, no root mount. What any init
// design could reach with this interpreter on this kernel.
//
// The files are read from the image (not from a project's staged build/rootfs): the bench is
// handed an image, and the image's root is exactly what the real boot runs, byte for byte.

// floorGuest is the floor's initramfs and the kernel command line that runs the entry as init.
type floorGuest struct {
	initrd  string
	cmdline string
	files   int   // regular files in the initramfs
	bytes   int64 // their size
}

// prepareFloor extracts img's root into work and writes the floor's initramfs. cmdline is the
// image's kernel command line; its rdinit= is replaced by the entry.
func prepareFloor(ctx context.Context, img, cmdline, work string) (floorGuest, error) {
	im, err := image.Open(img)
	if err != nil {
		return floorGuest{}, err
	}
	defer im.Close()
	m := im.Manifest()
	if len(m.Entry) == 0 {
		return floorGuest{}, fmt.Errorf("%s: the image has no entry (services only): no floor to measure", img)
	}
	root := filepath.Join(work, "floor-root")
	if err := im.ExtractRoot(ctx, root); err != nil {
		return floorGuest{}, err
	}
	keep, err := floorFiles(root, m)
	if err != nil {
		return floorGuest{}, err
	}
	g := floorGuest{initrd: filepath.Join(work, "floor.cpio")}
	if g.cmdline, err = floorCmdline(cmdline, m); err != nil {
		return floorGuest{}, err
	}
	recs := []cpio.Record{
		// The kernel opens /dev/console as init's stdin, stdout and stderr; nothing mounts
		// devtmpfs, so the nodes a start may open are made here.
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.CharDev("dev/null", 0o666, 1, 3),
		cpio.CharDev("dev/urandom", 0o666, 1, 9),
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." || rel == "dev" {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		mode := uint64(fi.Mode().Perm())
		switch {
		case d.IsDir():
			recs = append(recs, cpio.Directory(rel, mode))
		case fi.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			recs = append(recs, cpio.Symlink(rel, t))
		case fi.Mode().IsRegular() && keep["/"+rel]:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			recs = append(recs, cpio.StaticFile(rel, string(b), mode))
			g.files++
			g.bytes += int64(len(b))
		}
		return nil
	})
	if err != nil {
		return floorGuest{}, err
	}
	err = atomicfile.Write(g.initrd, 0o644, func(f *os.File) error {
		w := cpio.Newc.Writer(f)
		if err := cpio.WriteRecords(w, recs); err != nil {
			return err
		}
		return cpio.WriteTrailer(w)
	})
	return g, err
}

// floorFiles chooses the regular files (guest paths) of the extracted root the entry's start
// reads: the entry's program and its shared libraries (ELF closure, with the dynamic loader),
// every byte-compiled module with its source (the build compiles exactly the modules a start
// loads: the startup modules and those the entry imports; the source loader stats the source
// before it reads a pyc), the standard library's landmark os.py, every .pth file, and the files
// of the workload's directory, of the entry's arguments' directories and of /etc/pythonX.Y (the
// target of Debian's sitecustomize link). Directories and symlinks are all kept (they are
// small), so every lookup that fails in the real root fails here too.
func floorFiles(root string, m abi.Manifest) (map[string]bool, error) {
	keep := map[string]bool{}
	if err := elfClosure(root, m.Entry[0], keep); err != nil {
		return nil, err
	}
	dirs := []string{m.Workdir}
	if m.Workdir == "" {
		dirs[0] = abi.AppDir
	}
	for _, a := range m.Entry[1:] {
		if strings.HasPrefix(a, "/") {
			dirs = append(dirs, path.Dir(a))
		}
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		g := "/" + filepath.ToSlash(rel)
		dir := path.Dir(g)
		switch {
		case strings.HasSuffix(g, ".pyc") && path.Base(dir) == "__pycache__":
			keep[g] = true
			src := path.Join(path.Dir(dir), strings.SplitN(path.Base(g), ".", 2)[0]+".py")
			if _, err := os.Lstat(filepath.Join(root, src)); err == nil {
				keep[src] = true
			}
		case strings.HasSuffix(g, ".pth"),
			strings.HasPrefix(g, "/usr/lib/python3") && path.Base(g) == "os.py",
			strings.HasPrefix(dir, "/etc/python3"),
			slices.Contains(dirs, dir):
			keep[g] = true
		}
		return nil
	})
	return keep, err
}

// elfClosure adds prog (a guest path), its program interpreter and its DT_NEEDED libraries,
// recursively, resolved as the image's dynamic loader does without an ld.so.cache: in its
// default directories. Symlinks are followed inside root; the files they end at are kept.
func elfClosure(root, prog string, keep map[string]bool) error {
	real, err := resolve(root, prog)
	if err != nil {
		return err
	}
	if keep[real] {
		return nil
	}
	keep[real] = true
	f, err := elf.Open(filepath.Join(root, real))
	if err != nil {
		return fmt.Errorf("%s: %w", prog, err)
	}
	defer f.Close()
	var deps []string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return fmt.Errorf("%s: program interpreter: %w", prog, err)
			}
			deps = append(deps, strings.TrimRight(string(b), "\x00"))
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("%s: %w", prog, err)
	}
	for _, l := range libs {
		found := ""
		for _, d := range []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib"} {
			if _, err := os.Stat(filepath.Join(root, d, l)); err == nil {
				found = path.Join(d, l)
				break
			}
		}
		if found == "" {
			return fmt.Errorf("%s needs %s, which the image's root does not hold", prog, l)
		}
		deps = append(deps, found)
	}
	for _, d := range deps {
		if err := elfClosure(root, d, keep); err != nil {
			return err
		}
	}
	return nil
}

// resolve follows symlinks in the guest path p inside root and returns the guest path of the
// file it names.
func resolve(root, p string) (string, error) {
	for range 40 {
		parts := strings.Split(strings.TrimPrefix(path.Clean(p), "/"), "/")
		cur, changed := "/", false
		for i, part := range parts {
			next := path.Join(cur, part)
			fi, err := os.Lstat(filepath.Join(root, next))
			if err != nil {
				return "", fmt.Errorf("%s: %w", p, err)
			}
			if fi.Mode()&fs.ModeSymlink == 0 {
				cur = next
				continue
			}
			t, err := os.Readlink(filepath.Join(root, next))
			if err != nil {
				return "", err
			}
			if !path.IsAbs(t) {
				t = path.Join(cur, t)
			}
			p, changed = path.Join(append([]string{t}, parts[i+1:]...)...), true
			break
		}
		if !changed {
			return cur, nil
		}
	}
	return "", fmt.Errorf("%s: too many symlinks", p)
}

// floorCmdline turns the image's kernel command line into one that runs the entry as init,
// with the environment and arguments the image's init would give it: the kernel passes
// NAME=value words to init's environment and the words after "--" to its argv. The working
// directory stays "/" (the kernel's), which CPython's start does not read: sys.path[0] is the
// script's directory.
func floorCmdline(cmdline string, m abi.Manifest) (string, error) {
	var words []string
	for _, w := range strings.Fields(cmdline) {
		if !strings.HasPrefix(w, "rdinit=") && !strings.HasPrefix(w, "init=") {
			words = append(words, w)
		}
	}
	words = append(words, "rdinit="+m.Entry[0])
	home := "/"
	for _, u := range m.Users {
		if u.Name == m.User && u.Home != "" {
			home = u.Home
		}
	}
	user := m.User
	if user == "" {
		user = "root"
	}
	layers := []map[string]string{{"USER": user, "LOGNAME": user}, m.Env}
	if m.Role != "" {
		layers = append(layers, map[string]string{abi.RoleEnv: m.Role})
	}
	words = append(words, guest.MergeEnv(home, layers...)...)
	words = append(words, "--")
	words = append(words, m.Entry[1:]...)
	for _, w := range words {
		if w == "" || strings.ContainsAny(w, " \t\n\"") {
			return "", fmt.Errorf("the floor passes the entry's environment and arguments on the kernel command line, which cannot hold %q", w)
		}
	}
	return strings.Join(words, " "), nil
}
