package project

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ukernel-dev/ukernel/internal/crashpoint"
	"github.com/ukernel-dev/ukernel/internal/workdir"
)

// WriteFileAtomic writes data to a temporary file beside path and renames it into place, so a
// reader never sees a half-written file and an interrupted write leaves the old one intact. The
// temporary file is named by its owner (workdir): one left by a killed ukernel is removed by the
// next write of the same file.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	prefix := "." + filepath.Base(path) + ".tmp-"
	if _, err := workdir.Sweep(dir, prefix); err != nil {
		return err
	}
	f, err := workdir.Create(dir, prefix)
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	crashpoint.At("atomic:" + filepath.Base(path))
	return os.Rename(tmp, path)
}
