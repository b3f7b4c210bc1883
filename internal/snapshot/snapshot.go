// Package snapshot is a saved guest of a template revision, taken once its workload was ready:
// its files (device state, RAM, the data volume as it was), their seals, and the fingerprint of
// everything a restore depends on. A snapshot is a point in time, like a container image: every
// guest restored from it starts from that moment, with its own copy of the data volume.
//
// Layout of a snapshot directory (a revision's snapshot/):
//
//	snapshot.json   Meta: fingerprint, files with sizes and digests, created-at
//	state           the VMM's device state (tens of KB: RAM is not in it)
//	memory          guest RAM, mapped privately by each restore (never written after the save)
//	data.img        the data volume at the save, when the image has one
//	*.seal          each file's digest with its identity (cache.Seal): verified once, then known
//	                by identity, since hashing 512 MiB of RAM costs ~0.4 s here
//
// Each take of a snapshot is a new directory, written and sealed beside the snapshot and put in
// place whole (Staging.Publish); no file of a take is written after its seal. A restore holds
// the take it opened (Take) and checks it is still the one in place once its VMM has the files.
package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/cache"
)

// Files of a snapshot directory.
const (
	MetaFile   = "snapshot.json"
	StateFile  = "state"
	MemoryFile = "memory"
	DataFile   = "data.img"
)

// FormatVersion is the version of snapshot.json this ukernel writes and reads.
const FormatVersion = 1

// Meta is snapshot.json.
type Meta struct {
	Version     int         `json:"version"`
	Created     time.Time   `json:"created"`
	Fingerprint Fingerprint `json:"fingerprint"`
	Files       []File      `json:"files"`
	// VMM is the VMM binary as it was fingerprinted: a restore whose binary has the same
	// identity takes its digest from here instead of hashing it again.
	VMM Binary `json:"vmm_binary"`
	// ConfigSize is the size of the config drive the guest booted with: a restore attaches a
	// blank one of that size (the guest read its config at boot; the device must be there).
	ConfigSize int64 `json:"config_size"`
	// Env is the run-time environment (-e) the guest booted with: its processes keep it, so a
	// run that asks for another boots cold.
	Env map[string]string `json:"env,omitempty"`
	// Ready says what made the guest ready (every health check passing, or the workload
	// settled) and ReadyMS when, after the VMM's start.
	Ready   string `json:"ready"`
	ReadyMS int64  `json:"ready_ms"`
}

// File is one file of a snapshot.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Size is the bytes a snapshot's files take (the memory file's apparent size).
func (m *Meta) Size() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// Has reports whether the snapshot has the named file.
func (m *Meta) Has(name string) bool {
	for _, f := range m.Files {
		if f.Name == name {
			return true
		}
	}
	return false
}

// ErrNone means a revision has no snapshot.
var ErrNone = errors.New("no snapshot")

// Read returns the snapshot in dir.
func Read(dir string) (*Meta, error) {
	data, err := os.ReadFile(filepath.Join(dir, MetaFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNone
	}
	if err != nil {
		return nil, err
	}
	var m Meta
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, MetaFile), err)
	}
	if m.Version != FormatVersion {
		return nil, fmt.Errorf("%s: format version %d; this ukernel reads %d (take the snapshot again)", filepath.Join(dir, MetaFile), m.Version, FormatVersion)
	}
	// Verify and a restore open each file by its name: one outside dir is never theirs.
	for _, f := range m.Files {
		if f.Name != filepath.Base(f.Name) || !filepath.IsLocal(f.Name) || f.Name == "." || f.Name == MetaFile || f.Size < 0 {
			return nil, fmt.Errorf("%s: file %q (%d bytes) is not a snapshot file (take the snapshot again)", filepath.Join(dir, MetaFile), f.Name, f.Size)
		}
	}
	return &m, nil
}

// Verify checks every file of the snapshot in dir against m: a file whose identity is the one
// sealed is taken as verified; any other is hashed. The error says which file differs and how.
func Verify(dir string, m *Meta) error {
	for _, f := range m.Files {
		path := filepath.Join(dir, f.Name)
		fi, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("snapshot file %s: %w", f.Name, err)
		}
		if fi.Size() != f.Size {
			return fmt.Errorf("snapshot file %s is %d bytes, recorded as %d", f.Name, fi.Size(), f.Size)
		}
		if _, err := cache.CheckSealed(path, f.SHA256); err != nil {
			if errors.Is(err, cache.ErrSealBroken) {
				return fmt.Errorf("snapshot file %s changed since it was saved (%v)", f.Name, errors.Unwrap(err))
			}
			return fmt.Errorf("snapshot file %s: %w", f.Name, err)
		}
	}
	return nil
}

// Staging is a snapshot being written: its files go in Dir, Seal seals them and Publish puts
// the directory in place of the revision's previous snapshot, whole.
type Staging struct {
	Dir    string
	target string
}

// Stage starts a snapshot that will replace the one at target (a revision's snapshot/).
func Stage(target string) (*Staging, error) {
	parent := filepath.Dir(target)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	sweep(parent)
	dir, err := os.MkdirTemp(parent, stagePrefix)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return &Staging{Dir: dir, target: target}, nil
}

// stagePrefix names a snapshot being written or being replaced, beside its target.
const stagePrefix = ".snapshot-"

// sweep removes what a killed writer left beside the snapshots of parent. A writer running now
// is serialised by the template's lock.
func sweep(parent string) {
	old, _ := filepath.Glob(filepath.Join(parent, stagePrefix+"*"))
	for _, d := range old {
		os.RemoveAll(d)
	}
}

// Abort removes what was written.
func (s *Staging) Abort() { os.RemoveAll(s.Dir) }

// Seal hashes and seals the files named in m (their sizes and digests are filled in) and
// writes snapshot.json: the snapshot is complete in Dir, ready for Publish.
func (s *Staging) Seal(m *Meta, names ...string) error {
	m.Version = FormatVersion
	m.Files = nil
	for _, name := range names {
		path := filepath.Join(s.Dir, name)
		if err := cache.Seal(path, ""); err != nil {
			return fmt.Errorf("snapshot file %s: %w", name, err)
		}
		sum, err := cache.CheckSealed(path, "")
		if err != nil {
			return err
		}
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		m.Files = append(m.Files, File{Name: name, Size: fi.Size(), SHA256: sum})
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(s.Dir, MetaFile), append(data, '\n'), 0o644)
}

// Publish puts the sealed directory in place of the previous snapshot by renames alone: no file
// of either take is written, so a guest that mapped the previous memory file keeps it as it was
// (it is unlinked, and lives on while mapped). Between the two renames there is no snapshot, and
// a restore that opened the previous one finds it gone or replaced (Take.Replaced): the caller
// holds off the restores that are starting (template.Store.PublishSnapshot).
func (s *Staging) Publish() error {
	if _, err := os.Stat(s.target); err == nil {
		old, err := os.MkdirTemp(filepath.Dir(s.target), stagePrefix)
		if err != nil {
			return err
		}
		if err := atomicfile.Rename(s.target, filepath.Join(old, "old")); err != nil {
			return err
		}
		defer os.RemoveAll(old)
	}
	return atomicfile.Rename(s.Dir, s.target)
}

// Take is the take of a snapshot a restore is opening, its directory held open: every take is a
// new directory put in place whole (Publish), and a held directory's inode is not reused for
// another, so Replaced tells whether the snapshot's path still names this take.
type Take struct {
	dir string
	f   *os.File
}

// OpenTake holds the snapshot at dir as it is now (ErrNone: there is none).
func OpenTake(dir string) (*Take, error) {
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNone
	}
	if err != nil {
		return nil, err
	}
	return &Take{dir: dir, f: f}, nil
}

// Replaced says why the snapshot's path no longer names this take (nil: it still does).
func (t *Take) Replaced() error {
	held, err := t.f.Stat()
	if err != nil {
		return err
	}
	now, err := os.Stat(t.dir)
	if errors.Is(err, os.ErrNotExist) {
		return errors.New("the snapshot was removed while the restore started")
	}
	if err != nil {
		return err
	}
	if !os.SameFile(held, now) {
		return errors.New("the snapshot was replaced (taken again) while the restore started")
	}
	return nil
}

// Close lets the take go.
func (t *Take) Close() error { return t.f.Close() }

// Remove deletes the snapshot at dir, if there is one.
func Remove(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	sweep(filepath.Dir(dir))
	old, err := os.MkdirTemp(filepath.Dir(dir), stagePrefix)
	if err != nil {
		return err
	}
	if err := atomicfile.Rename(dir, filepath.Join(old, "old")); err != nil {
		os.RemoveAll(old)
		return err
	}
	return os.RemoveAll(old)
}

// Prune removes the snapshots at dirs (revisions' snapshot/) taken more than olderThan ago (0:
// every one), and returns how many and their bytes on disk. A snapshot is taken again with
// `template build --snapshot`.
func Prune(dirs []string, olderThan time.Duration) (n int, bytes int64, err error) {
	var errs []error
	for _, dir := range dirs {
		if olderThan > 0 {
			if m, err := Read(dir); err == nil && time.Since(m.Created) < olderThan {
				continue
			}
		}
		size := diskUsage(dir)
		if err := Remove(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
		bytes += size
	}
	return n, bytes, errors.Join(errs...)
}

// diskUsage is the bytes the files under dir take on disk (the memory file is sparse).
func diskUsage(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok {
					n += st.Blocks * 512
				}
			}
		}
		return nil
	})
	return n
}
