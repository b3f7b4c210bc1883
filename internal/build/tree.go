package build

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ukernel-dev/ukernel/internal/project"
)

// treeDigest hashes a workload source tree: every entry's relative path, type, mode bits that
// matter (executable or not) and content or link target. It is the cache key for source trees, so
// it ignores mtimes, owners, umask and host byproducts on purpose: they do not reach the image.
func treeDigest(root string) (string, error) {
	h := sha256.New()
	err := walkSource(root, func(rel string, fi fs.FileInfo) error {
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(filepath.Join(root, rel))
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "L %s %s\n", rel, target)
		case fi.IsDir():
			fmt.Fprintf(h, "D %s\n", rel)
		case fi.Mode().IsRegular():
			f, err := os.Open(filepath.Join(root, rel))
			if err != nil {
				return err
			}
			defer f.Close()
			fmt.Fprintf(h, "F %s %v %d\n", rel, fi.Mode()&0o111 != 0, fi.Size())
			n, err := io.Copy(h, f)
			if err != nil {
				return fmt.Errorf("read %s: %w", filepath.Join(root, rel), err)
			}
			if n != fi.Size() {
				return fmt.Errorf("%s changed while it was being read", filepath.Join(root, rel))
			}
		default:
			return fmt.Errorf("%s: unsupported file type %v", filepath.Join(root, rel), fi.Mode().Type())
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}

// hostByproduct reports whether a source entry is what running the code on the host leaves
// behind rather than source: Python's bytecode caches. They come from the host's Python (its
// version, its file times), so bundling them would make the image depend on the machine that
// built it, and a stale one could shadow the source; the guest compiles what it needs itself.
func hostByproduct(name string) bool {
	return name == "__pycache__" || strings.HasSuffix(name, ".pyc")
}

// walkSource is walkSorted over a workload's source without its host byproducts. The bundle
// (dirEntries) and the build's cache key (treeDigest) both walk through it, so what is shipped
// and what decides a rebuild are the same set of files.
func walkSource(root string, fn func(rel string, fi fs.FileInfo) error) error {
	return walkSorted(root, func(rel string, fi fs.FileInfo) error {
		if hostByproduct(path.Base(rel)) {
			return fs.SkipDir
		}
		return fn(rel, fi)
	})
}

// walkSorted visits every entry below root (not root itself) in lexical order with paths
// relative to root, slash-separated. Symlinks are not followed. fn returning fs.SkipDir leaves
// that entry out, and a directory's contents with it.
func walkSorted(root string, fn func(rel string, fi fs.FileInfo) error) error {
	var walk func(rel string) error
	walk = func(rel string) error {
		entries, err := os.ReadDir(filepath.Join(root, rel))
		if err != nil {
			return err
		}
		sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
		for _, e := range entries {
			r := path.Join(rel, e.Name())
			fi, err := os.Lstat(filepath.Join(root, r))
			if err != nil {
				return fmt.Errorf("%s disappeared during the build: %w", filepath.Join(root, r), err)
			}
			if err := fn(r, fi); errors.Is(err, fs.SkipDir) {
				continue
			} else if err != nil {
				return err
			}
			if fi.IsDir() {
				if err := walk(r); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk("")
}

// maxLinks is how many symlinks one path may pass through, Linux's limit (past it: ELOOP).
const maxLinks = 40

// inRoot returns the host path of rel (slash-separated, relative to root) with every symlink on
// the way resolved as the guest will resolve it, root being its "/": an absolute target starts
// again at root, and ".." stops there. Packages ship links that point anywhere (/usr/lib/foo ->
// /opt/foo); followed by the host, such a link would make a later package or step of the build
// read or write the host's files. The last element is followed only with followLast (a
// directory to create or fill); otherwise it is the entry itself, to be replaced.
func inRoot(root, rel string, followLast bool) (string, error) {
	var done []string // resolved elements, none of them a symlink
	todo := strings.Split(rel, "/")
	for links := 0; len(todo) > 0; {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		if len(todo) > 0 || followLast {
			p := filepath.Join(root, filepath.FromSlash(path.Join(path.Join(done...), name)))
			fi, err := os.Lstat(p)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return "", err
			}
			if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
				if links++; links > maxLinks {
					return "", fmt.Errorf("%s: too many levels of symbolic links", rel)
				}
				target, err := os.Readlink(p)
				if err != nil {
					return "", err
				}
				if path.IsAbs(target) {
					done = done[:0]
				}
				todo = append(strings.Split(target, "/"), todo...)
				continue
			}
		}
		done = append(done, name)
	}
	return filepath.Join(root, filepath.FromSlash(path.Join(done...))), nil
}

// writeInRoot replaces the file rel of the tree at root: never through a link (see inRoot), and
// never into the inode of a file hard-linked from another tree (copyTree).
func writeInRoot(root, rel string, data []byte, mode fs.FileMode) error {
	p, err := inRoot(root, rel, false)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	os.Remove(p)
	if err := os.WriteFile(p, data, mode); err != nil {
		return err
	}
	return os.Chmod(p, mode)
}

// tarEntry is one file of a deterministic archive.
type tarEntry struct {
	Name   string // slash-separated, relative
	Mode   int64
	Type   byte
	Link   string
	Source string // file to copy content from
	Data   []byte // content when Source is empty
}

// writeTarGz writes entries sorted by name with uid/gid 0, fixed mtimes and no host names, so
// the same entries give the same bytes on any machine.
func writeTarGz(w io.Writer, entries []tarEntry, mtime time.Time) error {
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	gz, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		hdr := &tar.Header{
			Name: e.Name, Mode: e.Mode, Typeflag: e.Type, Linkname: e.Link,
			ModTime: mtime, Format: tar.FormatPAX, Uname: "", Gname: "",
		}
		if e.Type == tar.TypeDir && !strings.HasSuffix(hdr.Name, "/") {
			hdr.Name += "/"
		}
		var src io.Reader
		if e.Type == tar.TypeReg {
			if e.Source != "" {
				f, err := os.Open(e.Source)
				if err != nil {
					return fmt.Errorf("%s disappeared during the build: %w", e.Source, err)
				}
				defer f.Close()
				fi, err := f.Stat()
				if err != nil {
					return err
				}
				hdr.Size = fi.Size()
				src = io.LimitReader(f, fi.Size())
			} else {
				hdr.Size = int64(len(e.Data))
				src = strings.NewReader(string(e.Data))
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if src != nil {
			n, err := io.Copy(tw, src)
			if err != nil {
				return err
			}
			if n != hdr.Size {
				return fmt.Errorf("%s changed size during the build", e.Source)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// dirEntries turns a workload source tree into archive entries under prefix, normalising modes
// to 0755 for directories and executables and 0644 for other files.
func dirEntries(root, prefix string) ([]tarEntry, error) {
	var out []tarEntry
	err := walkSource(root, func(rel string, fi fs.FileInfo) error {
		name := path.Join(prefix, rel)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(filepath.Join(root, rel))
			if err != nil {
				return err
			}
			out = append(out, tarEntry{Name: name, Mode: 0o777, Type: tar.TypeSymlink, Link: target})
		case fi.IsDir():
			out = append(out, tarEntry{Name: name, Mode: 0o755, Type: tar.TypeDir})
		case fi.Mode().IsRegular():
			mode := int64(0o644)
			if fi.Mode()&0o111 != 0 {
				mode = 0o755
			}
			out = append(out, tarEntry{Name: name, Mode: mode, Type: tar.TypeReg, Source: filepath.Join(root, rel)})
		default:
			return fmt.Errorf("%s: unsupported file type %v in the workload source", filepath.Join(root, rel), fi.Mode().Type())
		}
		return nil
	})
	return out, err
}

// extractTarGz unpacks an archive written by writeTarGz into dir (a trusted archive we made;
// dir may hold packages' links, which are followed only inside dir).
func extractTarGz(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", archive, err)
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", archive, err)
		}
		name := path.Clean(hdr.Name)
		if name == "." || strings.HasPrefix(name, "../") || path.IsAbs(name) {
			return fmt.Errorf("%s: unsafe path %q", archive, hdr.Name)
		}
		dst, err := inRoot(dir, name, hdr.Typeflag == tar.TypeDir)
		if err != nil {
			return fmt.Errorf("%s: %w", archive, err)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
			if err := os.Chmod(dst, fs.FileMode(hdr.Mode).Perm()); err != nil {
				return err
			}
		case tar.TypeSymlink:
			os.Remove(dst)
			if err := os.Symlink(hdr.Linkname, dst); err != nil {
				return err
			}
		case tar.TypeReg:
			os.Remove(dst)
			out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fs.FileMode(hdr.Mode).Perm())
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, tr); err != nil {
				out.Close()
				return err
			}
			if err := out.Close(); err != nil {
				return err
			}
			if err := os.Chmod(dst, fs.FileMode(hdr.Mode).Perm()); err != nil {
				return err
			}
		}
	}
}

// SourceDigest hashes what of a project goes into its image besides the locked packages:
// ukernel.toml and src/ as the build reads it. Templates key their revisions on it.
func SourceDigest(dir string) (string, error) {
	cfg, err := os.ReadFile(filepath.Join(dir, project.ConfigFile))
	if err != nil {
		return "", err
	}
	src, err := treeDigest(filepath.Join(dir, project.SrcDir))
	if err != nil {
		return "", fmt.Errorf("reading the workload source: %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "config %d\n%s\nsrc %s\n", len(cfg), cfg, src)
	return hex.EncodeToString(h.Sum(nil)), nil
}
