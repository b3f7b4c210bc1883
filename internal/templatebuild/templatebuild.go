// Package templatebuild builds a template's revision from its source project: it computes the
// input key, takes an existing revision with that key (the template's own, or another
// template's, sharing its bytes), or builds and packs the image through the pipeline straight
// into the store, then makes it current and prunes old revisions.
package templatebuild

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ukernel-dev/ukernel/internal/pipeline"
	"github.com/ukernel-dev/ukernel/internal/progress"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/remotecache"
	"github.com/ukernel-dev/ukernel/internal/snapshot"
	"github.com/ukernel-dev/ukernel/internal/template"
)

// DefaultKeep is how many revisions a build keeps by default (the current one included).
const DefaultKeep = 5

// Options steer one build.
type Options struct {
	Store      *template.Store
	Name       string
	Force      bool // build even when a revision has the input key
	UpdateLock bool // re-resolve the environment to the newest versions first
	Keep       int  // revisions kept, the current one included; 0: DefaultKeep
	Offline    bool
	Progress   *progress.Writer
	Logger     *slog.Logger
	Command    string // who holds the locks, e.g. "ukernel template build"
	// InUse lists the revisions the template's running guests boot from: never pruned.
	InUse func(name string) ([]string, error)
	// AfterCommit, when set, runs with the template still locked once the revision is current
	// (snapshots hook in here).
	AfterCommit func(ctx context.Context, r *Result) error
}

// Outcome says what a build did.
type Outcome string

const (
	UpToDate Outcome = "up-to-date" // the current revision has the input key: nothing done
	Reused   Outcome = "reused"     // a revision with the input key became current, no build
	Built    Outcome = "built"      // a new image was built
	Pulled   Outcome = "pulled"     // taken from the shared build cache, verified
)

// Result is the template's current revision after the build.
type Result struct {
	Name     string            `json:"name"`
	Outcome  Outcome           `json:"outcome"`
	Revision template.Revision `json:"revision"`
	Previous string            `json:"previous,omitempty"` // the revision current before, if it changed
	// Identical: the build (--force) made the current revision's image again, byte for byte.
	Identical bool          `json:"identical,omitempty"`
	Pruned    []string      `json:"pruned,omitempty"`
	Took      time.Duration `json:"-"`
	// Snapshot is the revision's snapshot, when the build took one (template build --snapshot).
	Snapshot *snapshot.Meta `json:"snapshot,omitempty"`
}

// SourceError is a template whose source cannot be built: pulled (no source), moved, or no
// longer a project.
type SourceError struct {
	Name, Source, Why string
}

func (e *SourceError) Error() string {
	if e.Source == "" {
		return fmt.Sprintf("template %s has no source project (it was pulled): it can be run, not built; to build it, create a template from a project with 'ukernel template create NAME --from DIR'", e.Name)
	}
	return fmt.Sprintf("template %s: its source %s %s; point it at the project with 'ukernel template edit %s --from DIR'", e.Name, e.Source, e.Why, e.Name)
}

// CheckSource tells whether spec's source is a project that can be built.
func CheckSource(spec *template.Spec) error {
	if spec.Source == "" {
		return &SourceError{Name: spec.Name}
	}
	fi, err := os.Stat(spec.Source)
	if err != nil {
		return &SourceError{Name: spec.Name, Source: spec.Source, Why: "is gone (moved or deleted)"}
	}
	if !fi.IsDir() {
		return &SourceError{Name: spec.Name, Source: spec.Source, Why: "is not a directory"}
	}
	if _, err := os.Stat(filepath.Join(spec.Source, project.ConfigFile)); err != nil {
		return &SourceError{Name: spec.Name, Source: spec.Source, Why: "is not a project (no " + project.ConfigFile + ")"}
	}
	return nil
}

// Build makes the template's current revision match its source.
func Build(ctx context.Context, o Options) (*Result, error) {
	start := time.Now()
	if o.Keep == 0 {
		o.Keep = DefaultKeep
	}
	if o.Keep < 1 {
		return nil, fmt.Errorf("--keep %d: keep at least 1 revision (the current one)", o.Keep)
	}
	if o.Command == "" {
		o.Command = "ukernel template build"
	}
	s := o.Store
	spec, err := s.Get(o.Name)
	if err != nil {
		return nil, err
	}
	if err := CheckSource(spec); err != nil {
		return nil, err
	}
	var tell func(string)
	if o.Progress != nil {
		tell = func(h string) { o.Progress.Printf("Waiting for template %s, locked by %s", o.Name, h) }
	}
	release, err := s.Lock(ctx, o.Name, o.Command, tell)
	if err != nil {
		return nil, err
	}
	defer release()
	// Read again under the lock: an edit may have changed it meanwhile.
	if spec, err = s.Get(o.Name); err != nil {
		return nil, err
	}
	if err := CheckSource(spec); err != nil {
		return nil, err
	}
	// The build writes the project's build/ directory: the project lock keeps `ukernel build`
	// and other templates of the same project out meanwhile.
	po := pipeline.Options{
		Dir: spec.Source, Offline: o.Offline, Upgrade: o.UpdateLock, Release: spec.Release, Role: spec.Role,
		DataVolume: true, Progress: o.Progress, Logger: o.Logger, Command: o.Command,
	}
	p, releaseProject, err := pipeline.Open(ctx, po)
	if err != nil {
		return nil, fmt.Errorf("template %s (source %s): %w", o.Name, spec.Source, err)
	}
	defer releaseProject()
	in, err := pipeline.Inputs(ctx, p, po)
	if err != nil {
		return nil, err
	}
	key := in.Key()
	cur, err := s.Current(o.Name)
	if err != nil {
		return nil, err
	}
	res := &Result{Name: o.Name}
	if !o.Force {
		r, err := s.FindKey(o.Name, key)
		if err != nil {
			return nil, err
		}
		if r != nil {
			res.Revision, res.Outcome = *r, Reused
			if r.ID == cur {
				res.Outcome = UpToDate
			}
			return finish(ctx, o, res, cur, start)
		}
	}
	pending, err := s.NewRevision(o.Name)
	if err != nil {
		return nil, err
	}
	po.ImagePath = pending.ImagePath()
	pr, err := pipeline.Pack(ctx, p, po)
	if err != nil {
		pending.Abort()
		return nil, err
	}
	r, err := pending.Commit(template.Revision{
		InputKey: key, Inputs: &in, BuiltAt: time.Now().UTC(),
		Sizes: template.Sizes{Closure: p.Lock.Size()},
	})
	if err != nil {
		return nil, err
	}
	if r.ID != pr.SHA256 {
		return nil, errors.New("the packed image changed before it was stored")
	}
	res.Revision, res.Outcome, res.Identical = *r, Built, r.ID == cur
	if pr.Remote != nil && pr.Remote.Outcome == remotecache.Hit {
		res.Outcome = Pulled
	}
	return finish(ctx, o, res, cur, start)
}

// finish makes the revision current, prunes, and runs the hook, all under the template's lock.
func finish(ctx context.Context, o Options, res *Result, cur string, start time.Time) (*Result, error) {
	s := o.Store
	if res.Revision.ID != cur {
		if err := s.SetCurrent(o.Name, res.Revision.ID); err != nil {
			return nil, err
		}
		res.Previous = cur
	}
	var inUse func() ([]string, error)
	if o.InUse != nil {
		inUse = func() ([]string, error) { return o.InUse(o.Name) }
	}
	pruned, err := s.Prune(ctx, o.Name, o.Keep, inUse)
	if err != nil {
		return nil, err
	}
	res.Pruned = pruned
	if o.AfterCommit != nil {
		if err := o.AfterCommit(ctx, res); err != nil {
			return nil, err
		}
	}
	res.Took = time.Since(start)
	return res, nil
}
