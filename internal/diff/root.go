package diff

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ukernel-dev/ukernel/internal/crashpoint"
	"github.com/ukernel-dev/ukernel/internal/image"
	"github.com/ukernel-dev/ukernel/internal/workdir"
)

// workPrefix names a diff's work directory in the system's temporary directory.
const workPrefix = "ukernel-diff-"

// compareRoots extracts both root filesystems (image.ExtractRoot) and compares their files.
func compareRoots(ctx context.Context, a, b *image.Image) ([]File, error) {
	// Named for its owner: the roots a killed diff extracted (diff is interruptible) go with the
	// next diff.
	if _, err := workdir.Sweep(os.TempDir(), workPrefix); err != nil {
		return nil, err
	}
	tmp, err := workdir.Mkdir(os.TempDir(), workPrefix)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	var trees [2]map[string]entry
	for i, im := range []*image.Image{a, b} {
		dir := filepath.Join(tmp, fmt.Sprint(i))
		if err := im.ExtractRoot(ctx, dir); err != nil {
			return nil, err
		}
		if trees[i], err = walk(dir); err != nil {
			return nil, err
		}
		crashpoint.At("diff-root")
	}
	var files []File
	for p, ea := range trees[0] {
		eb, ok := trees[1][p]
		switch {
		case !ok:
			files = append(files, File{Path: p, SizeA: ea.size, SizeB: -1})
		case ea != eb:
			files = append(files, File{Path: p, SizeA: ea.size, SizeB: eb.size})
		}
	}
	for p, eb := range trees[1] {
		if _, ok := trees[0][p]; !ok {
			files = append(files, File{Path: p, SizeA: -1, SizeB: eb.size})
		}
	}
	slices.SortFunc(files, func(x, y File) int { return strings.Compare(x.Path, y.Path) })
	return files, nil
}

// entry is what is compared of a file: type and mode, size and content digest (a symlink's
// target stands for its content).
type entry struct {
	mode fs.FileMode
	size int64
	sum  [32]byte
}

func walk(root string) (map[string]entry, error) {
	m := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e := entry{mode: fi.Mode()}
		switch {
		case fi.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			e.size, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			copy(e.sum[:], h.Sum(nil))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			e.size, e.sum = int64(len(target)), sha256.Sum256([]byte(target))
		}
		m["/"+filepath.ToSlash(rel)] = e
		return nil
	})
	return m, err
}
