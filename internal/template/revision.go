package template

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/crashpoint"
	"github.com/ukernel-dev/ukernel/internal/image"
	"github.com/ukernel-dev/ukernel/internal/workdir"
)

// Current returns the id of a template's current revision, "" when it has none yet.
func (s *Store) Current(name string) (string, error) {
	data, err := os.ReadFile(filepath.Join(s.TemplateDir(name), CurrentFile))
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := s.Get(name); err != nil {
			return "", err
		}
		return "", nil
	}
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(data))
	if !revRe.MatchString(id) || len(id) != 64 {
		return "", fmt.Errorf("template %s: %s holds no revision id: make a revision current with 'ukernel template rollback %s REV'", name, CurrentFile, name)
	}
	return id, nil
}

// SetCurrent makes revision id (a full id) current: one atomic file replacement, so a reader
// sees the old or the new revision, never none. The caller holds the template's lock.
func (s *Store) SetCurrent(name, id string) error {
	if _, err := s.readRevision(name, id); err != nil {
		return err
	}
	return writeFile(filepath.Join(s.TemplateDir(name), CurrentFile), []byte(id+"\n"))
}

// Revisions lists a template's revisions, newest first.
func (s *Store) Revisions(name string) ([]Revision, error) {
	if _, err := s.Get(name); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(filepath.Join(s.TemplateDir(name), RevisionsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return []Revision{}, nil
	}
	if err != nil {
		return nil, err
	}
	revs := []Revision{}
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		r, err := s.readRevision(name, e.Name())
		if err != nil {
			return nil, err
		}
		revs = append(revs, *r)
	}
	sortedRevisions(revs)
	return revs, nil
}

func (s *Store) readRevision(name, id string) (*Revision, error) {
	p := filepath.Join(s.RevisionDir(name, id), RevisionFile)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("template %s has no revision %s (see ukernel template revisions %s)", name, ShortID(id), name)
	}
	if err != nil {
		return nil, err
	}
	var r Revision
	if err := json.Unmarshal(data, &r); err != nil || r.ID != id {
		return nil, fmt.Errorf("template %s: %s is damaged: remove that revision's directory, or rebuild with 'ukernel template build --force %s'", name, p, name)
	}
	return &r, nil
}

// Revision returns a template's revision rev: a full id, a unique prefix of one, or "" for
// the current one. An unknown revision's error lists those that exist.
func (s *Store) Revision(name, rev string) (*Revision, error) {
	revs, err := s.Revisions(name)
	if err != nil {
		return nil, err
	}
	if rev == "" {
		cur, err := s.Current(name)
		if err != nil {
			return nil, err
		}
		if cur == "" {
			return nil, &NoRevisionError{Name: name}
		}
		rev = cur
	}
	var found []Revision
	for _, r := range revs {
		if strings.HasPrefix(r.ID, rev) {
			found = append(found, r)
		}
	}
	switch {
	case len(found) == 1:
		return &found[0], nil
	case len(found) > 1:
		return nil, fmt.Errorf("revision %s of template %s is ambiguous (%d match): give more digits", rev, name, len(found))
	}
	var ids []string
	for _, r := range revs {
		ids = append(ids, r.Short())
	}
	if len(ids) == 0 {
		return nil, &NoRevisionError{Name: name}
	}
	return nil, fmt.Errorf("template %s has no revision %s; its revisions: %s", name, rev, strings.Join(ids, ", "))
}

// NoRevisionError is a template that was never built (nor pulled).
type NoRevisionError struct{ Name string }

func (e *NoRevisionError) Error() string {
	return fmt.Sprintf("template %s has no revision yet: build it with 'ukernel template build %s'", e.Name, e.Name)
}

// Resolved is a revision found from NAME[@REV].
type Resolved struct {
	Spec     Spec
	Revision Revision
	Dir      string // the revision's directory
	Image    string // its image
}

// Resolve finds NAME[@REV]: the template and its given (or current) revision.
func (s *Store) Resolve(ref string) (*Resolved, error) {
	name, rev, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	spec, err := s.Get(name)
	if err != nil {
		return nil, err
	}
	r, err := s.Revision(name, rev)
	if err != nil {
		return nil, err
	}
	return &Resolved{Spec: *spec, Revision: *r, Dir: s.RevisionDir(name, r.ID), Image: s.ImagePath(name, r.ID)}, nil
}

// Pending is a revision being added to a template: its image is written at ImagePath, then
// Commit publishes it. Until then nothing of it is visible; a killed writer's is swept by the
// next NewRevision of the template.
type Pending struct {
	s    *Store
	name string
	dir  string
}

// NewRevision starts adding a revision to a template. The caller holds the template's lock.
func (s *Store) NewRevision(name string) (*Pending, error) {
	if _, err := s.Get(name); err != nil {
		return nil, err
	}
	revs := filepath.Join(s.TemplateDir(name), RevisionsDir)
	if err := os.MkdirAll(revs, 0o755); err != nil {
		return nil, err
	}
	sweep(revs, pendingPrefix)
	dir, err := workdir.Mkdir(revs, pendingPrefix)
	if err != nil {
		return nil, err
	}
	return &Pending{s: s, name: name, dir: dir}, nil
}

// ImagePath is where the new revision's image is to be written.
func (p *Pending) ImagePath() string { return filepath.Join(p.dir, ImageFile) }

// Abort discards the pending revision.
func (p *Pending) Abort() { removeAll(p.dir) }

// Commit publishes the image written at ImagePath as a revision of the template. The id, the
// role and the sizes but Closure are read from the image (which must be whole: it is
// verified); the rest of rev (InputKey, Inputs, BuiltAt, Sizes.Closure) is the caller's. A
// revision with the same id already there is kept as it is. The input key is recorded, so
// that other templates find it. Current is not changed: see SetCurrent.
func (p *Pending) Commit(rev Revision) (*Revision, error) {
	defer p.Abort() // no-op after the rename
	im, err := image.Open(p.ImagePath())
	if err != nil {
		return nil, err
	}
	if err := im.Verify().Err(); err != nil {
		im.Close()
		return nil, err
	}
	sum, err := im.SHA256()
	if err != nil {
		im.Close()
		return nil, err
	}
	m := im.Manifest()
	rev.ID = sum
	rev.Role = m.Role
	rev.Ukernel = m.Build.Ukernel
	rev.Sizes.Root = m.Root.Size
	rev.Sizes.Total = im.Size()
	rev.Sizes.Packages = m.Lock.Packages
	for _, a := range m.Artefacts {
		switch a.Name {
		case image.ArtefactKernel:
			rev.Sizes.Kernel = a.Size
		case image.ArtefactInitramfs:
			rev.Sizes.Initramfs = a.Size
		}
	}
	im.Close()
	if rev.BuiltAt.IsZero() {
		rev.BuiltAt = time.Now().UTC()
	}
	rev.Added = time.Now().UTC()
	return p.publish(rev)
}

// publish renames the pending directory, holding the image, into revisions/ID.
func (p *Pending) publish(rev Revision) (*Revision, error) {
	if err := os.Chmod(p.ImagePath(), 0o444); err != nil {
		return nil, err
	}
	if err := writeJSON(filepath.Join(p.dir, RevisionFile), rev); err != nil {
		return nil, err
	}
	final := p.s.RevisionDir(p.name, rev.ID)
	if existing, err := p.s.readRevision(p.name, rev.ID); err == nil {
		return existing, p.s.recordKey(*existing)
	}
	if _, err := os.Lstat(final); err == nil {
		// A directory without a readable revision.json: not a revision, replace it.
		if err := p.s.discard(final); err != nil {
			return nil, err
		}
	}
	crashpoint.At("template-revision")
	if err := atomicfile.Rename(p.dir, final); err != nil {
		return nil, fmt.Errorf("template %s: %w", p.name, err)
	}
	return &rev, p.s.recordKey(rev)
}

// recordKey remembers which revision an input key made.
func (s *Store) recordKey(rev Revision) error {
	if rev.InputKey == "" {
		return nil
	}
	return writeFile(filepath.Join(s.dir, keysDir, rev.InputKey), []byte(rev.ID+"\n"))
}

// AddImage adds the image file at src (already built: pulled from a registry) to a template as
// a revision, copied, and returns it. rev gives what the image does not say (BuiltAt,
// InputKey when known). The caller holds the template's lock.
func (s *Store) AddImage(name, src string, rev Revision) (*Revision, error) {
	p, err := s.NewRevision(name)
	if err != nil {
		return nil, err
	}
	if err := copyFile(src, p.ImagePath()); err != nil {
		p.Abort()
		return nil, err
	}
	return p.Commit(rev)
}

// FindKey returns the template's revision made from input key, adding it from another
// template that has one (sharing the image's bytes through a hard link), or nil when no
// revision has that key. The caller holds the template's lock.
func (s *Store) FindKey(name, key string) (*Revision, error) {
	revs, err := s.Revisions(name)
	if err != nil {
		return nil, err
	}
	for _, r := range revs {
		if r.InputKey == key {
			return &r, nil
		}
	}
	data, err := os.ReadFile(filepath.Join(s.dir, keysDir, key))
	if err != nil {
		return nil, nil
	}
	id := strings.TrimSpace(string(data))
	for _, r := range revs {
		if r.ID == id { // the same image from other inputs (another ukernel build, say)
			return &r, nil
		}
	}
	names, err := s.Names()
	if err != nil {
		return nil, err
	}
	for _, other := range names {
		if other == name {
			continue
		}
		r, err := s.readRevision(other, id)
		if err != nil {
			continue
		}
		if got, err := s.linkRevision(name, other, *r); err == nil {
			return got, nil
		}
	}
	return nil, nil // a stale key: its revision was removed everywhere
}

// linkRevision adds other's revision r to template name, its image a hard link of other's.
func (s *Store) linkRevision(name, other string, r Revision) (*Revision, error) {
	p, err := s.NewRevision(name)
	if err != nil {
		return nil, err
	}
	if err := os.Link(s.ImagePath(other, r.ID), p.ImagePath()); err != nil {
		p.Abort()
		return nil, err
	}
	defer p.Abort()
	// The other template may have been deleted between the read and the link, or its image
	// damaged: what is linked is checked against the id before it is published.
	if err := checkDigest(p.ImagePath(), r.ID); err != nil {
		return nil, err
	}
	r.Added = time.Now().UTC()
	return p.publish(r)
}

// Prune removes a template's revisions but the current one and the newest others, keep in
// all, and those inUse lists (run by guests), and returns the ids removed. It asks inUse (nil:
// none) once no run is between resolving a revision and recording its guest (Pin), and holds
// them off until it is done. The caller holds the template's lock.
func (s *Store) Prune(ctx context.Context, name string, keep int, inUse func() ([]string, error)) ([]string, error) {
	release, err := s.HoldPins(ctx, name, "ukernel template prune")
	if err != nil {
		return nil, fmt.Errorf("template %s: prune: %w", name, err)
	}
	defer release()
	var used []string
	if inUse != nil {
		if used, err = inUse(); err != nil {
			return nil, err
		}
	}
	revs, err := s.Revisions(name)
	if err != nil {
		return nil, err
	}
	cur, err := s.Current(name)
	if err != nil {
		return nil, err
	}
	kept := 0
	if cur != "" {
		kept = 1
	}
	var removed []string
	for _, r := range revs {
		if r.ID == cur {
			continue
		}
		if kept < keep {
			kept++
			continue
		}
		if slices.Contains(used, r.ID) {
			continue
		}
		if err := s.discard(s.RevisionDir(name, r.ID)); err != nil {
			return removed, err
		}
		removed = append(removed, r.ID)
	}
	return removed, nil
}

// Previous returns the revision added just before the current one.
func (s *Store) Previous(name string) (*Revision, error) {
	revs, err := s.Revisions(name)
	if err != nil {
		return nil, err
	}
	cur, err := s.Current(name)
	if err != nil {
		return nil, err
	}
	for i, r := range revs {
		if r.ID == cur {
			if i+1 < len(revs) {
				return &revs[i+1], nil
			}
			return nil, fmt.Errorf("template %s: revision %s is its oldest; there is nothing to roll back to", name, r.Short())
		}
	}
	return nil, &NoRevisionError{Name: name}
}

// DamagedError is a stored image that does not match its revision id, or fails verification.
type DamagedError struct {
	Name, ID string
	Err      error
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("template %s revision %s is damaged: %v; rebuild it with 'ukernel template build --force %s' (or make another revision current: ukernel template rollback %s)", e.Name, ShortID(e.ID), e.Err, e.Name, e.Name)
}

func (e *DamagedError) Unwrap() error { return e.Err }

// Verify reads a revision's image in full: its SHA-256 must be the revision id, and every part
// of it must pass `inspect`'s verification. A damaged image is a *DamagedError.
func (s *Store) Verify(name, id string) error {
	p := s.ImagePath(name, id)
	if err := checkDigest(p, id); err != nil {
		return &DamagedError{Name: name, ID: id, Err: err}
	}
	im, err := image.Open(p)
	if err != nil {
		return &DamagedError{Name: name, ID: id, Err: err}
	}
	defer im.Close()
	if err := im.Verify().Err(); err != nil {
		return &DamagedError{Name: name, ID: id, Err: err}
	}
	return nil
}

// checkDigest compares a file's SHA-256 with want.
func checkDigest(p, want string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("its SHA-256 is %s, not its id", ShortID(got))
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// ImageArg reads an image argument of a command (inspect, diff): template:NAME[@REV] is that
// revision's image in the user's store; anything else is returned as it is.
func ImageArg(arg string) (string, error) {
	ref, ok := strings.CutPrefix(arg, RefPrefix)
	if !ok {
		return arg, nil
	}
	s, err := Open()
	if err != nil {
		return "", err
	}
	res, err := s.Resolve(ref)
	if err != nil {
		return "", err
	}
	return res.Image, nil
}
