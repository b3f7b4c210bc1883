package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/ukernel-dev/ukernel/internal/workdir"
)

// ErrNoExtractor means fsck.erofs (erofs-utils) is not installed, so the root cannot be extracted.
var ErrNoExtractor = errors.New("fsck.erofs (erofs-utils) is not installed")

// ExtractTimeout bounds one root filesystem extraction.
const ExtractTimeout = 5 * time.Minute

// ExtractRoot extracts the image's root filesystem into dir (which must not exist). The root is
// lz4hc-compressed erofs, which the pure-Go reader cannot decompress, so erofs-utils'
// fsck.erofs --extract does it (it also checks every file while extracting).
func (im *Image) ExtractRoot(ctx context.Context, dir string) error {
	if _, err := exec.LookPath("fsck.erofs"); err != nil {
		return ErrNoExtractor
	}
	off, size := im.RootPartition()
	if n := im.manifest.Root.Size; n > 0 && n <= size {
		size = n
	}
	fsPath := dir + ".erofs"
	dst, err := os.Create(fsPath)
	if err != nil {
		return err
	}
	defer os.Remove(fsPath)
	_, err = io.Copy(dst, io.NewSectionReader(im.f, off, size))
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: copy root partition: %w", im.path, err)
	}
	ctx, cancel := context.WithTimeout(ctx, ExtractTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "fsck.erofs", "--extract="+dir, "--preserve-perms", fsPath)
	workdir.DieWithParent(cmd) // never extracting on into a directory the next diff removes
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: fsck.erofs --extract of the root filesystem: %v: %s", im.path, err, strings.TrimSpace(out.String()))
	}
	return nil
}
