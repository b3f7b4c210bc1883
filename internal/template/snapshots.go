package template

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/ukernel-dev/ukernel/internal/filelock"
	"github.com/ukernel-dev/ukernel/internal/snapshot"
)

// SnapshotsPruned is what PruneSnapshots did.
type SnapshotsPruned struct {
	Snapshots     int   `json:"snapshots"`
	SnapshotBytes int64 `json:"snapshot_bytes"`
	// KeptInUse names the templates whose snapshots stayed because a run or perf was starting
	// from one of their revisions (it holds the pin).
	KeptInUse []string `json:"snapshots_kept_in_use,omitempty"`
}

// PublishSnapshot puts the sealed snapshot st in place of its revision's (st.Publish) while no run
// is starting from the template: it waits for the restores that hold the pin (they started
// from the previous take and open all of its files before they unpin) and holds new ones off
// for the renames. Guests already running keep the previous take's memory file, unlinked, never
// written.
func (s *Store) PublishSnapshot(ctx context.Context, name string, st *snapshot.Staging) error {
	release, err := s.HoldPins(ctx, name, "ukernel template build --snapshot")
	if err != nil {
		return fmt.Errorf("the new snapshot is not published: runs kept starting from the template (perf --template pins it for all its boots): %w", err)
	}
	defer release()
	return st.Publish()
}

// PruneSnapshots removes the revisions' snapshots of every template taken more than olderThan
// ago (0: every one), each template's under its pin held exclusively, as Prune does: a restore
// that is starting holds the pin, so it never finds its files going. It does not wait for
// one: that template keeps its snapshots this time (KeptInUse).
func (s *Store) PruneSnapshots(ctx context.Context, olderThan time.Duration) (SnapshotsPruned, error) {
	var res SnapshotsPruned
	names, err := s.Names()
	if err != nil {
		return res, err
	}
	var errs []error
	for _, name := range names {
		release, err := s.holdPins(ctx, name, "ukernel cache prune", 0)
		var held *filelock.HeldError
		if errors.As(err, &held) {
			res.KeptInUse = append(res.KeptInUse, name)
			continue
		}
		if err != nil {
			return res, err
		}
		dirs, err := filepath.Glob(filepath.Join(s.TemplateDir(name), RevisionsDir, "*", SnapshotDir))
		if err == nil {
			var n int
			var bytes int64
			n, bytes, err = snapshot.Prune(dirs, olderThan)
			res.Snapshots += n
			res.SnapshotBytes += bytes
		}
		release()
		if err != nil {
			errs = append(errs, err)
		}
	}
	return res, errors.Join(errs...)
}
