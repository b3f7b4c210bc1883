package template

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/crashpoint"
	"github.com/ukernel-dev/ukernel/internal/filelock"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/workdir"
)

// EnvDir overrides where the store lives.
const EnvDir = "UKERNEL_TEMPLATES"

// Files and directories of the store (see the package comment).
const (
	SpecFile    = "template.json"
	CurrentFile = "current"
	LockFile    = "lock"
	// PinFile is the lock runs hold shared from resolving a revision until their guest's
	// record names it, and Prune exclusively (Pin).
	PinFile      = "pin"
	RevisionsDir = "revisions"
	ImageFile    = "image.img"
	RevisionFile = "revision.json"
	// SnapshotDir is where a revision's snapshots go (a later issue); the store creates nothing
	// there, and removes it with its revision.
	SnapshotDir = "snapshot"
	keysDir     = "_keys"
	trashDir    = "_trash" // a template or revision renamed away whole, then removed
	// pendingPrefix names a revision being added, under NAME/revisions/; stagePrefix a template
	// being created, under _trash/. Both record their owner (workdir): a killed writer's are
	// swept by the next one.
	pendingPrefix = ".new-"
	stagePrefix   = ".create-"
)

// Store is a template store.
type Store struct {
	dir string
}

// Open returns the user's store: $UKERNEL_TEMPLATES, else $XDG_DATA_HOME/ukernel/templates,
// else ~/.local/share/ukernel/templates. Nothing is created until something is written.
func Open() (*Store, error) {
	if d := os.Getenv(EnvDir); d != "" {
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, fmt.Errorf("%s=%q: %w", EnvDir, d, err)
		}
		return At(abs), nil
	}
	data := os.Getenv("XDG_DATA_HOME")
	if data == "" || !filepath.IsAbs(data) { // the XDG spec says to ignore a relative path
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("template store: %w (set %s)", err, EnvDir)
		}
		data = filepath.Join(home, ".local", "share")
	}
	return At(filepath.Join(data, "ukernel", "templates")), nil
}

// At returns the store in dir (absolute).
func At(dir string) *Store { return &Store{dir: dir} }

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// TemplateDir is a template's directory; it is also the project directory of its runs (their
// logs and its data volume live there).
func (s *Store) TemplateDir(name string) string { return filepath.Join(s.dir, name) }

// RevisionDir is a revision's directory in a template.
func (s *Store) RevisionDir(name, id string) string {
	return filepath.Join(s.dir, name, RevisionsDir, id)
}

// ImagePath is a revision's image.
func (s *Store) ImagePath(name, id string) string {
	return filepath.Join(s.RevisionDir(name, id), ImageFile)
}

// NotFoundError names a template that does not exist, and those that do.
type NotFoundError struct {
	Name  string
	Known []string
}

func (e *NotFoundError) Error() string {
	if len(e.Known) == 0 {
		return fmt.Sprintf("no template %q: there are no templates yet; create one with 'ukernel template create %s'", e.Name, e.Name)
	}
	return fmt.Sprintf("no template %q; templates: %s", e.Name, strings.Join(e.Known, ", "))
}

// ExistsError is returned by Create for a name already taken.
type ExistsError struct{ Name string }

func (e *ExistsError) Error() string {
	return fmt.Sprintf("template %q already exists: pick another name, or change it with 'ukernel template edit %s'", e.Name, e.Name)
}

// Names lists the templates, sorted.
func (s *Store) Names() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("template store: %w", err)
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && ValidateName(e.Name()) == nil {
			if _, err := os.Stat(filepath.Join(s.dir, e.Name(), SpecFile)); err == nil {
				names = append(names, e.Name())
			}
		}
	}
	return names, nil
}

// Get reads a template's spec.
func (s *Store) Get(name string) (*Spec, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(s.TemplateDir(name), SpecFile))
	if errors.Is(err, fs.ErrNotExist) {
		known, _ := s.Names()
		return nil, &NotFoundError{Name: name, Known: known}
	}
	if err != nil {
		return nil, err
	}
	var spec Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("template %s: %s is damaged (%v): delete the template and create it again", name, filepath.Join(s.TemplateDir(name), SpecFile), err)
	}
	if spec.Name != name {
		return nil, fmt.Errorf("template %s: %s names %q: delete the template and create it again", name, SpecFile, spec.Name)
	}
	return &spec, nil
}

// List reads every template's spec, sorted by name.
func (s *Store) List() ([]Spec, error) {
	names, err := s.Names()
	if err != nil {
		return nil, err
	}
	out := []Spec{}
	for _, n := range names {
		spec, err := s.Get(n)
		if err != nil {
			var nf *NotFoundError
			if errors.As(err, &nf) {
				continue // deleted meanwhile
			}
			return nil, err
		}
		out = append(out, *spec)
	}
	return out, nil
}

// Create adds a template. Its directory appears whole (spec included) or not at all.
func (s *Store) Create(spec *Spec) error {
	if err := ValidateName(spec.Name); err != nil {
		return err
	}
	if spec.Source != "" && !filepath.IsAbs(spec.Source) {
		return fmt.Errorf("template %s: source %q is not an absolute path", spec.Name, spec.Source)
	}
	now := time.Now().UTC().Truncate(time.Second)
	spec.Created, spec.Updated = now, now
	dir := s.TemplateDir(spec.Name)
	if _, err := os.Stat(filepath.Join(dir, SpecFile)); err == nil {
		return &ExistsError{Name: spec.Name}
	} else if _, err := os.Lstat(dir); err == nil {
		// A directory without a spec is no template (what a deleted template's guest wrote
		// into its logs afterwards, say): it goes, so that the name can be taken.
		if err := s.discard(dir); err != nil {
			return fmt.Errorf("template store: %w", err)
		}
	}
	trash := filepath.Join(s.dir, trashDir)
	if err := os.MkdirAll(trash, 0o755); err != nil {
		return fmt.Errorf("template store: %w", err)
	}
	sweep(trash, stagePrefix)
	stage, err := workdir.Mkdir(trash, stagePrefix)
	if err != nil {
		return fmt.Errorf("template store: %w", err)
	}
	defer os.RemoveAll(stage) // gone after the rename
	if err := writeJSON(filepath.Join(stage, SpecFile), spec); err != nil {
		return err
	}
	crashpoint.At("template-create")
	// rename(2) onto an existing non-empty directory fails: two creates of one name cannot
	// both win.
	if err := atomicfile.Rename(stage, s.TemplateDir(spec.Name)); err != nil {
		if _, serr := os.Stat(s.TemplateDir(spec.Name)); serr == nil {
			return &ExistsError{Name: spec.Name}
		}
		return fmt.Errorf("template store: %w", err)
	}
	return nil
}

// Save writes a changed spec (its Updated time set now). The caller holds the template's lock.
func (s *Store) Save(spec *Spec) error {
	if _, err := s.Get(spec.Name); err != nil {
		return err
	}
	spec.Updated = time.Now().UTC().Truncate(time.Second)
	return writeJSON(filepath.Join(s.TemplateDir(spec.Name), SpecFile), spec)
}

// Delete removes a template's tree: its revisions (an image shared with another template stays
// there, a hard link of its own), logs and data volume. It is renamed away first, so it
// vanishes whole. The caller holds the template's lock.
func (s *Store) Delete(name string) error {
	if _, err := s.Get(name); err != nil {
		return err
	}
	return s.discard(s.TemplateDir(name))
}

// discard renames dir into the trash and removes it there.
func (s *Store) discard(dir string) error {
	trash := filepath.Join(s.dir, trashDir)
	if err := os.MkdirAll(trash, 0o755); err != nil {
		return err
	}
	sweep(trash, stagePrefix)
	aside, err := workdir.Mkdir(trash, stagePrefix)
	if err != nil {
		return err
	}
	if err := atomicfile.Rename(dir, filepath.Join(aside, "x")); err != nil {
		os.Remove(aside)
		return fmt.Errorf("template store: %w", err)
	}
	return removeAll(aside)
}

// LockWait is how long Lock waits for another holder by default; project.LockWaitEnv
// (UKERNEL_LOCK_WAIT) overrides it as it does the project lock's.
const LockWait = project.DefaultLockWait

// LockedError is returned when a template's lock stayed held for the whole wait.
type LockedError struct {
	Name   string
	Holder string
	Waited time.Duration
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("template %s is locked by %s (waited %s): wait for it to finish and try again; if no such process runs, the lock is already free (it dies with its holder)", e.Name, e.Holder, e.Waited.Round(time.Second))
}

// lockWait is Lock's and Pin's wait: LockWait, or project.LockWaitEnv's.
func lockWait() (time.Duration, error) {
	v := os.Getenv(project.LockWaitEnv)
	if v == "" {
		return LockWait, nil
	}
	wait, err := time.ParseDuration(v)
	if err != nil || wait < 0 {
		return 0, fmt.Errorf("%s=%q: expected a duration such as 30s or 2m", project.LockWaitEnv, v)
	}
	return wait, nil
}

// Pin keeps Prune from removing any of the template's revisions until unpin: a run holds it
// from resolving its revision until its guest's record names that revision, which is what
// Prune's in-use list reads. Pins are shared among runs and never wait for a build (it is not
// the template's lock); they wait only for a prune in progress (milliseconds).
func (s *Store) Pin(ctx context.Context, name string) (unpin func(), err error) {
	if _, err := s.Get(name); err != nil {
		return nil, err
	}
	wait, err := lockWait()
	if err != nil {
		return nil, err
	}
	unpin, err = filelock.AcquireShared(ctx, filepath.Join(s.TemplateDir(name), PinFile), wait)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	return unpin, nil
}

// HoldPins waits until no run pins the template (Pin) and keeps new pins off until release:
// what removes or replaces a revision's files (a build's prune, a snapshot's replacement) does it
// under HoldPins, so a run never finds the files it is starting from going or changing. Runs
// hold their pin for their VMM's start; it waits for them as long as Lock waits, and a pin held
// longer (perf --template, for all its boots) makes it a *filelock.HeldError.
func (s *Store) HoldPins(ctx context.Context, name, command string) (release func(), err error) {
	wait, err := lockWait()
	if err != nil {
		return nil, err
	}
	return s.holdPins(ctx, name, command, wait)
}

func (s *Store) holdPins(ctx context.Context, name, command string, wait time.Duration) (release func(), err error) {
	return filelock.Acquire(ctx, filepath.Join(s.TemplateDir(name), PinFile), command, wait, nil)
}

// Lock takes a template's lock for command ("ukernel template build"): builds, edits, deletes
// and rollbacks of one template are serialised by it. waiting, if not nil, is told once who
// holds it when it is not free at once. The template must exist, and still exists when Lock
// returns.
func (s *Store) Lock(ctx context.Context, name, command string, waiting func(holder string)) (release func(), err error) {
	if _, err := s.Get(name); err != nil {
		return nil, err
	}
	wait, err := lockWait()
	if err != nil {
		return nil, err
	}
	release, err = filelock.Acquire(ctx, filepath.Join(s.TemplateDir(name), LockFile), command, wait, waiting)
	var held *filelock.HeldError
	if errors.As(err, &held) {
		return nil, &LockedError{Name: name, Holder: held.Holder, Waited: held.Waited}
	}
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	// Deleted while this waited: its lock file went with it.
	if _, err := s.Get(name); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

// writeFile publishes data at path atomically (temp file, fsync, rename).
func writeFile(path string, data []byte) error {
	return atomicfile.WriteFile(path, data, 0o644)
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(path, append(data, '\n'))
}

// sweep removes what killed writers left in dir under prefix; a failure only leaves them for
// the next sweep.
func sweep(dir, prefix string) {
	_, _ = workdir.Sweep(dir, prefix)
}

// removeAll removes a tree whose files may be read-only (images are 0444).
func removeAll(dir string) error {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// sortedRevisions orders revisions newest first (by when they were added, then id, for a
// stable order).
func sortedRevisions(revs []Revision) {
	slices.SortFunc(revs, func(a, b Revision) int {
		if c := b.Added.Compare(a.Added); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}
