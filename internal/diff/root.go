package diff

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ukernel-dev/ukernel/internal/image"
)

// errNoExtractor means fsck.erofs is missing: the file comparison is skipped, with a note.
var errNoExtractor = errors.New("files not compared: fsck.erofs (erofs-utils) is not installed")

// ExtractTimeout bounds one root filesystem extraction.
const ExtractTimeout = 5 * time.Minute

// compareRoots extracts both root filesystems and compares their files. The root is
// lz4hc-compressed erofs, which the pure-Go reader cannot decompress, so erofs-utils'
// fsck.erofs --extract does it (it also checks every file while extracting).
func compareRoots(ctx context.Context, a, b *image.Image) ([]File, error) {
	if _, err := exec.LookPath("fsck.erofs"); err != nil {
		return nil, errNoExtractor
	}
	tmp, err := os.MkdirTemp("", "ukernel-diff-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	var trees [2]map[string]entry
	for i, im := range []*image.Image{a, b} {
		dir := filepath.Join(tmp, fmt.Sprint(i))
		if err := extractRoot(ctx, im, dir); err != nil {
			return nil, err
		}
		if trees[i], err = walk(dir); err != nil {
			return nil, err
		}
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

// extractRoot copies the image's root partition to a file and extracts it into dir.
func extractRoot(ctx context.Context, im *image.Image, dir string) error {
	off, size := im.RootPartition()
	if n := im.Manifest().Root.Size; n > 0 && n <= size {
		size = n
	}
	src, err := os.Open(im.Path())
	if err != nil {
		return err
	}
	defer src.Close()
	fsPath := dir + ".erofs"
	dst, err := os.Create(fsPath)
	if err != nil {
		return err
	}
	_, err = io.Copy(dst, io.NewSectionReader(src, off, size))
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: copy root partition: %w", im.Path(), err)
	}
	defer os.Remove(fsPath)
	ctx, cancel := context.WithTimeout(ctx, ExtractTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "fsck.erofs", "--extract="+dir, "--preserve-perms", fsPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: fsck.erofs --extract of the root filesystem: %v: %s", im.Path(), err, strings.TrimSpace(out.String()))
	}
	return nil
}
