package build

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// treeDigest hashes a directory tree: every entry's relative path, type, mode bits that matter
// (executable or not) and content or link target. It is the cache key for source trees, so it
// ignores mtimes, owners and umask on purpose: they do not reach the image.
func treeDigest(root string) (string, error) {
	h := sha256.New()
	err := walkSorted(root, func(rel string, fi fs.FileInfo) error {
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

// walkSorted visits every entry below root (not root itself) in lexical order with paths
// relative to root, slash-separated. Symlinks are not followed.
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
			if err := fn(r, fi); err != nil {
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

// dirEntries turns a directory tree into archive entries under prefix, normalising modes to
// 0755 for directories and executables and 0644 for other files.
func dirEntries(root, prefix string) ([]tarEntry, error) {
	var out []tarEntry
	err := walkSorted(root, func(rel string, fi fs.FileInfo) error {
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

// extractTarGz unpacks an archive written by writeTarGz into dir (a trusted archive we made).
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
		dst := filepath.Join(dir, filepath.FromSlash(name))
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
