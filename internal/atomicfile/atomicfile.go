// Package atomicfile publishes files whole: every file ukernel writes for later reading (a lock,
// a stamp, a state record, a cache entry, an image) is written to a new temporary file beside
// its path, synced, renamed over the path, and the directory synced. A reader sees the old file
// or the new one, never part of one; after a kill, a full disk or a power loss the old one is
// intact. The temporary file is named by its owner (package workdir), so the next write of the
// same path removes what a killed ukernel left. Every rename of a published file or tree goes
// through Rename, which syncs the directories it changed.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ukernel-dev/ukernel/internal/crashpoint"
	"github.com/ukernel-dev/ukernel/internal/workdir"
)

// WriteFile publishes data at path with mode perm, creating path's directory if needed.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return Write(path, perm, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// Write publishes at path, with mode perm, what fill writes into f, a new temporary file beside
// path (fill may also hand f.Name() to a tool that writes it). An error from fill, or a kill,
// leaves path as it was. The crash tests' step is "atomic:<base name of path>": the file written
// and synced, not yet renamed.
func Write(path string, perm os.FileMode, fill func(f *os.File) error) error {
	tmp, err := stage(path, perm, fill)
	if err == nil {
		if err = Rename(tmp, path); err != nil {
			os.Remove(tmp)
		}
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// WriteNew publishes data at path, with mode perm, only if nothing is there yet: of writers
// racing for one path exactly one wins, and the others get an error that wraps fs.ErrExist.
// For a file that replacing would lose (a private key): the file is linked into place, which
// never replaces, where Write renames over.
func WriteNew(path string, data []byte, perm os.FileMode) error {
	tmp, err := stage(path, perm, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
	if err == nil {
		// Once linked, path holds the file; the temporary name goes in every case.
		err = os.Link(tmp, path)
		os.Remove(tmp)
		if err == nil {
			err = SyncDir(filepath.Dir(path))
		}
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// stage writes what fill writes into a new temporary file beside path, with mode perm, synced
// and closed, and returns its name; on an error it leaves nothing.
func stage(path string, perm os.FileMode, fill func(f *os.File) error) (name string, err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if _, err := Sweep(path); err != nil {
		return "", err
	}
	// A new file (O_EXCL): a file or link planted under a temporary name is never written
	// through, and the name is random, so none can be planted in advance.
	f, err := workdir.Create(dir, tempPrefix(path))
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := fill(f); err != nil {
		return "", err
	}
	if err := f.Chmod(perm); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	crashpoint.At("atomic:" + filepath.Base(path))
	return f.Name(), nil
}

// Sweep removes the temporary files that writes of path by processes no longer running left
// (Write does it before each write), and returns how many it removed.
func Sweep(path string) (int, error) {
	return workdir.Sweep(filepath.Dir(path), tempPrefix(path))
}

func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

// Publish renames tmp, a file a tool wrote in full, to path once its content is synced: the
// file is durable before any reader can find it under path.
func Publish(tmp, path string) error {
	f, err := os.Open(tmp)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	return Rename(tmp, path)
}

// Rename renames old to new (a file whose content is already synced, or a tree) and syncs the
// directories that changed, so the rename survives a power loss.
func Rename(old, new string) error {
	if err := os.Rename(old, new); err != nil {
		return err
	}
	err := SyncDir(filepath.Dir(new))
	if od := filepath.Dir(old); od != filepath.Dir(new) {
		err = errors.Join(err, SyncDir(od))
	}
	return err
}

// Symlink points path at target, replacing what path was in one step: a reader finds the old
// link or the new one, never none.
func Symlink(target, path string) error {
	dir := filepath.Dir(path)
	if _, err := Sweep(path); err != nil {
		return err
	}
	// A unique name the link can be made at: Create makes it, the link replaces it.
	f, err := workdir.Create(dir, tempPrefix(path))
	if err != nil {
		return err
	}
	tmp := f.Name()
	f.Close()
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("link %s: %w", path, err)
	}
	if err := Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("link %s: %w", path, err)
	}
	return nil
}

// SyncDir syncs directory dir, making the entries created, renamed or removed in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Move renames old to new without a sync: inside a tree being built that is published whole
// later (with Rename), where a sync would cost one per file moved, and for log rotation, where a
// rename lost to a power loss loses no bytes (they stay under the older name) and a sync per
// rotation would slow the writer.
func Move(old, new string) error { return os.Rename(old, new) }
