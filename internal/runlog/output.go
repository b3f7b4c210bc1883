package runlog

import (
	"context"
	"time"

	"github.com/ukernel-dev/ukernel/internal/guestlog"
)

// ReadOutput calls fn for each record of r's output log (its rotated files first) that f
// selects, or with last >= 0 only for the last `last` of them, read backwards from the log's
// end: either way only the records passed on are held, so a log of any size costs the same
// memory. It returns the offset up to which the log was read, for FollowOutput.
func (r Run) ReadOutput(f guestlog.Filter, last int, fn func(guestlog.Record) error) (int64, error) {
	if last < 0 {
		return guestlog.Scan(r.Output(), f, fn)
	}
	recs, offset, err := guestlog.TailRecords(r.Output(), f, last)
	if err != nil {
		return 0, err
	}
	for _, rec := range recs {
		if err := fn(rec); err != nil {
			return 0, err
		}
	}
	return offset, nil
}

// FollowOutput calls fn for each record f selects that is appended to r's output log after
// offset, until running (asked every 100 ms) reports false, once the guest is gone and the
// process that owned it has recorded the rest, or until ctx ends, which ends a follow normally
// (nil).
func (r Run) FollowOutput(ctx context.Context, offset int64, f guestlog.Filter, fn func(guestlog.Record) error, running func() bool) error {
	done := make(chan struct{})
	watch, stop := context.WithCancel(ctx) // the watcher ends with the follow, whatever ends it
	defer stop()
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for running() {
			select {
			case <-watch.Done():
				return
			case <-t.C:
			}
		}
	}()
	err := guestlog.FollowFrom(ctx, r.Output(), offset, &guestlog.RecordReader{Filter: f, Fn: fn}, done)
	if ctx.Err() != nil {
		return nil
	}
	return err
}
