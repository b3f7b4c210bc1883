package image

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/ukernel-dev/ukernel/internal/workdir"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// mkfsErofs is the host tool that writes the compressed root (erofs-utils). go-erofs writes only
// uncompressed images, which would double the root's size.
const mkfsErofs = "mkfs.erofs"

// buildRootFS writes the root filesystem of dir to out with mkfs.erofs. What makes its output
// byte-identical (checked with erofs-utils 1.5): -T fixes every inode's and the superblock's time
// (file mtimes are ignored), -U fixes the UUID, --all-root drops host owners, -x-1 drops host
// xattrs (e.g. security.selinux); the directory order does not depend on readdir order.
// Modes are taken from the tree as staged: the caller stages them without the umask.
func buildRootFS(ctx context.Context, dir, out string, epoch int64) error {
	bin, err := exec.LookPath(mkfsErofs)
	if err != nil {
		return errors.New("mkfs.erofs not found: install erofs-utils")
	}
	id, err := treeUUID(ctx, dir)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin,
		// Level 12 with 64 KiB physical clusters: about 11% smaller than the defaults on a
		// Python runtime; the guest kernel (6.1) reads big pclusters.
		"-zlz4hc,12", "-C65536",
		"-T", strconv.FormatInt(epoch, 10),
		"-U", id,
		"--all-root",
		"-x-1",
		"--quiet",
		out, dir)
	workdir.DieWithParent(cmd)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if b, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		msg := strings.TrimSpace(string(b))
		if diskFull(out) {
			// mkfs.erofs says "was truncated" and "Numerical result out of range", not why.
			return fmt.Errorf("%w (mkfs.erofs %s: %s)", &fs.PathError{Op: "write", Path: out, Err: syscall.ENOSPC}, dir, msg)
		}
		return fmt.Errorf("mkfs.erofs %s: %v: %s", dir, err, msg)
	}
	return nil
}

// diskFull tells whether the filesystem holding path has less than 1 MiB left for us.
func diskFull(path string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(filepath.Dir(path), &st) == nil && int64(st.Bavail)*st.Bsize < 1<<20
}

// treeUUID derives the root filesystem's UUID from the tree's paths, types, modes, link targets
// and file contents, so the same tree always gets the same UUID.
func treeUUID(ctx context.Context, dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%o\x00", filepath.ToSlash(rel), uint32(info.Mode()))
		switch {
		case info.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			binary.Write(h, binary.LittleEndian, info.Size())
			if _, err := io.Copy(h, f); err != nil {
				return err
			}
		case info.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s\x00", t)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("reading the root tree %s: %w", dir, err)
	}
	return formatUUID(h.Sum(nil)[:16]), nil
}

func formatUUID(b []byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
