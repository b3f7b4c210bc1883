package cache

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// TreeSeal records a derived directory tree (an unpacked kernel package) when it is made: each
// regular file's digest, mode and identity, each symlink's target. Check compares a tree with it
// by identity, hashing only the files whose identity changed.
type TreeSeal struct {
	Files map[string]TreeFile `json:"files"` // by slash-separated path under the root
	Links map[string]string   `json:"links,omitempty"`
}

// TreeFile is a regular file of a sealed tree.
type TreeFile struct {
	Sealed
	Mode fs.FileMode `json:"mode"`
}

// SealTree hashes every file under dir except the root-level file named skip (where the caller
// keeps the seal).
func SealTree(dir, skip string) (*TreeSeal, error) {
	s := &TreeSeal{Files: map[string]TreeFile{}, Links: map[string]string{}}
	err := walkTree(dir, skip, func(rel, p string, fi fs.FileInfo) error {
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			s.Links[rel] = target
			return err
		}
		id, err := IDOf(fi)
		if err != nil {
			return err
		}
		sum, err := FileSHA256(p)
		if err != nil {
			return err
		}
		s.Files[rel] = TreeFile{Sealed: Sealed{SHA256: sum, ID: id}, Mode: fi.Mode()}
		return nil
	})
	return s, err
}

// Check tells whether the tree under dir is the one sealed. A file whose identity changed but
// whose content and mode did not (a copied cache) is taken, and its new identity recorded in s:
// renewed says so, for the caller to store s again. A difference wraps ErrSealBroken and names
// the first path that differs.
func (s *TreeSeal) Check(dir, skip string) (renewed bool, err error) {
	seen := 0
	err = walkTree(dir, skip, func(rel, p string, fi fs.FileInfo) error {
		seen++
		if fi.Mode()&fs.ModeSymlink != 0 {
			want, ok := s.Links[rel]
			if target, err := os.Readlink(p); err != nil || !ok || target != want {
				return fmt.Errorf("%w: %s is not the symlink unpacked", ErrSealBroken, p)
			}
			return nil
		}
		f, ok := s.Files[rel]
		if !ok {
			return fmt.Errorf("%w: %s was added", ErrSealBroken, p)
		}
		if fi.Mode() != f.Mode {
			return fmt.Errorf("%w: %s has mode %v, unpacked as %v", ErrSealBroken, p, fi.Mode(), f.Mode)
		}
		id, err := IDOf(fi)
		if err != nil || id == f.ID {
			return err
		}
		sum, err := FileSHA256(p)
		if err != nil {
			return err
		}
		if sum != f.SHA256 {
			return fmt.Errorf("%w: %s is sha256 %s, unpacked as %s", ErrSealBroken, p, sum, f.SHA256)
		}
		f.ID = id
		s.Files[rel] = f
		renewed = true
		return nil
	})
	if err == nil && seen != len(s.Files)+len(s.Links) {
		err = fmt.Errorf("%w: %d of the %d files unpacked under %s are left", ErrSealBroken, seen, len(s.Files)+len(s.Links), dir)
	}
	return renewed, err
}

// walkTree calls fn for each regular file and symlink under dir (except the root-level skip),
// in lexical order; any other kind of file is an error.
func walkTree(dir, skip string, fn func(rel, path string, fi fs.FileInfo) error) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == skip {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() && fi.Mode()&fs.ModeSymlink == 0 {
			return fmt.Errorf("%w: %s is neither a regular file nor a symlink", ErrSealBroken, p)
		}
		return fn(filepath.ToSlash(rel), p, fi)
	})
}
