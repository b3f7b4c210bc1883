// Package cache is the per-user, content-addressed store of downloaded artefacts (Debian indices,
// .debs, wheels) and of derived data (parsed indices; kernels, inits and boot files that other
// packages keep in their own folders here and seal (seal.go), which Prune also clears). It alone
// knows where the cache lives (DefaultDir) and its folders (layout.go).
// Blobs are named by their SHA-256, verified on every read and written through a temporary file
// renamed into place, so two ukernel processes can share it and an interrupted download never
// leaves a partial blob behind.
package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/crashpoint"
	"github.com/ukernel-dev/ukernel/internal/workdir"
)

// Cache is a cache directory.
type Cache struct {
	Dir string
}

// ErrNotFound means the cache holds no valid blob for a digest.
var ErrNotFound = errors.New("not in cache")

// Open opens the cache at DefaultDir, creating it.
func Open() (*Cache, error) {
	dir, err := DefaultDir()
	if err != nil {
		return nil, err
	}
	return OpenDir(dir)
}

// OpenDir opens a cache rooted at dir, creating it.
func OpenDir(dir string) (*Cache, error) {
	for _, f := range []Folder{Blobs, Tmp, State} {
		if err := os.MkdirAll(f.In(dir), 0o755); err != nil {
			return nil, fmt.Errorf("cache directory %s: %w", dir, err)
		}
	}
	// Partial downloads and writes of a killed ukernel.
	for _, prefix := range tmpPrefixes {
		if _, err := workdir.Sweep(Tmp.In(dir), prefix); err != nil {
			return nil, fmt.Errorf("cache directory %s: %w", dir, err)
		}
	}
	return &Cache{Dir: dir}, nil
}

// tmpPrefixes name the temporary entries of tmp/: a blob being stored, a download, a work
// directory.
var tmpPrefixes = []string{"blob-", "dl-", "work-"}

// WorkDir makes a new directory in the cache's tmp/ for files on their way into the cache
// (pip's downloads). The caller removes it; one a killed ukernel left is removed by the next
// OpenDir.
func (c *Cache) WorkDir() (string, error) {
	return workdir.Mkdir(Tmp.In(c.Dir), "work-")
}

func validDigest(sum string) error {
	if len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" {
		return fmt.Errorf("%q is not a lowercase hex SHA-256", sum)
	}
	return nil
}

// BlobPath is where the blob with this SHA-256 lives (whether or not it exists).
func (c *Cache) BlobPath(sum string) string {
	return Blobs.In(c.Dir, sum[:2], sum)
}

// Has reports whether a blob is present, without verifying it.
func (c *Cache) Has(sum string) bool {
	_, err := os.Stat(c.BlobPath(sum))
	return err == nil
}

// Path returns the path of a verified blob. A blob whose content no longer matches its name is
// deleted and reported as ErrNotFound, so the caller fetches it again.
func (c *Cache) Path(sum string) (string, error) {
	if err := validDigest(sum); err != nil {
		return "", err
	}
	p := c.BlobPath(sum)
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", ErrNotFound
		}
		return "", err
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return "", fmt.Errorf("read cached %s: %w", p, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		// Removing races harmlessly with another process doing the same.
		os.Remove(p)
		return "", fmt.Errorf("%w: cached %s was corrupt (sha256 %s), removed", ErrNotFound, p, got)
	}
	MarkUsed(p)
	return p, nil
}

// MarkUsed refreshes the time of a cache entry (a file, or a directory holding one entry):
// `cache prune --older-than` removes what was not used. Best effort: a failure only makes the
// entry look older.
func MarkUsed(path string) {
	now := time.Now()
	_ = os.Chtimes(path, now, now)
}

// ReadBlob returns a verified blob's content.
func (c *Cache) ReadBlob(sum string) ([]byte, error) {
	if err := validDigest(sum); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(c.BlobPath(sum))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	if got := sha256Hex(data); got != sum {
		os.Remove(c.BlobPath(sum))
		return nil, fmt.Errorf("%w: cached blob %s was corrupt, removed", ErrNotFound, sum)
	}
	return data, nil
}

// EntryName names a derived cache entry after its key (what it was made from): a short,
// fixed-length, file-name-safe hash.
func EntryName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Put stores r's content. If want is not empty the content must hash to it; the blob is named by
// its actual SHA-256, which is returned.
func (c *Cache) Put(r io.Reader, want string) (string, error) {
	f, err := workdir.Create(Tmp.In(c.Dir), "blob-")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), r); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if want != "" && sum != want {
		return "", fmt.Errorf("sha256 mismatch: got %s, want %s", sum, want)
	}
	return sum, c.commit(tmp, sum)
}

// PutFile stores a copy of the file at path (verified against want when set).
func (c *Cache) PutFile(path, want string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return c.Put(f, want)
}

// PutBytes stores data.
func (c *Cache) PutBytes(data []byte) (string, error) {
	sum := sha256Hex(data)
	if c.Has(sum) {
		return sum, nil
	}
	_, err := c.Put(strings.NewReader(string(data)), sum)
	return sum, err
}

func (c *Cache) commit(tmp, sum string) error {
	dst := c.BlobPath(sum)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return err
	}
	crashpoint.At("cache-blob")
	// rename(2) is atomic: a concurrent writer of the same blob writes the same bytes.
	return atomicfile.Publish(tmp, dst)
}

// ReadState returns a named state file (mutable data keyed by name, e.g. the last InRelease of
// a suite). Missing -> ErrNotFound.
func (c *Cache) ReadState(name string) ([]byte, error) {
	p := c.statePath(name)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err == nil {
		MarkUsed(p)
	}
	return data, err
}

// WriteState replaces a named state file atomically.
func (c *Cache) WriteState(name string, data []byte) error {
	return atomicfile.Write(c.statePath(name), 0o600, func(f *os.File) error {
		if _, err := f.Write(data); err != nil {
			return err
		}
		crashpoint.At("cache-state")
		return nil
	})
}

// ReadRecord returns a named record (Records). Missing -> ErrNotFound.
func (c *Cache) ReadRecord(name string) ([]byte, error) {
	data, err := os.ReadFile(Records.In(c.Dir, filepath.FromSlash(name)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	return data, err
}

// WriteRecord replaces a named record (Records) atomically.
func (c *Cache) WriteRecord(name string, data []byte) error {
	return atomicfile.WriteFile(Records.In(c.Dir, filepath.FromSlash(name)), data, 0o600)
}

func (c *Cache) statePath(name string) string {
	return State.In(c.Dir, filepath.FromSlash(name))
}

// PruneResult says what Prune removed.
type PruneResult struct {
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
}

// Prune removes what was not used for olderThan (everything when olderThan is 0), folder by
// folder as layout says: blobs and state files, and the entries of the derived folders (data
// rebuilt on demand from blobs or images; boot files alone grow by one kernel and initrd per
// packed image), by modification time, which reads refresh; and leftover temporary files.
func (c *Cache) Prune(olderThan time.Duration) (PruneResult, error) {
	var res PruneResult
	cutoff := time.Now().Add(-olderThan)
	unused := func(info fs.FileInfo) bool { return olderThan == 0 || info.ModTime().Before(cutoff) }
	for _, l := range layout {
		root := l.folder.In(c.Dir)
		var err error
		if l.prune == pruneNever {
			continue
		}
		if l.prune == pruneEntries {
			err = pruneEntriesOf(root, unused, &res)
		} else {
			err = pruneFilesOf(root, l.prune, olderThan, unused, &res)
		}
		if err != nil {
			return res, fmt.Errorf("prune %s: %w", root, err)
		}
	}
	return res, nil
}

// pruneFilesOf removes the unused files under root; temporary ones only when older than an hour
// (a younger one may belong to a running download), or all of them when olderThan is 0.
func pruneFilesOf(root string, kind pruneKind, olderThan time.Duration, unused func(fs.FileInfo) bool, res *PruneResult) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil // removed meanwhile by another process
		}
		if kind == pruneTemp && time.Since(info.ModTime()) < time.Hour && olderThan > 0 {
			return nil
		}
		// State (the last InRelease of each suite, parsed indices) is what --offline runs on: it
		// goes by age like the blobs.
		if kind != pruneTemp && !unused(info) {
			return nil
		}
		if err := os.Remove(p); err == nil {
			res.Files++
			res.Bytes += info.Size()
		}
		return nil
	})
}

// pruneEntriesOf removes the unused entries of root, each as a whole: an entry is used as a
// whole, and its users refresh its own mtime, not its files'.
func pruneEntriesOf(root string, unused func(fs.FileInfo) bool, res *PruneResult) error {
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !unused(info) {
			continue
		}
		p := filepath.Join(root, e.Name())
		n := usage(p)
		if err := os.RemoveAll(p); err == nil {
			res.Files += n.Files
			res.Bytes += n.Bytes
		}
	}
	return nil
}

// usage counts the files under p (p itself if it is one) and their size.
func usage(p string) PruneResult {
	var res PruneResult
	filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				res.Files++
				res.Bytes += info.Size()
			}
		}
		return nil
	})
	return res
}

// Size returns the number of blobs and their total size.
func (c *Cache) Size() (PruneResult, error) {
	var res PruneResult
	err := filepath.WalkDir(Blobs.In(c.Dir), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			res.Files++
			res.Bytes += info.Size()
		}
		return nil
	})
	return res, err
}
