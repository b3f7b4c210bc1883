package runlog

import (
	"context"
	"encoding/json"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/guestlog"
)

func appendRecords(t *testing.T, path string, logs ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range logs {
		b, _ := json.Marshal(guestlog.Record{Time: time.Now(), Stream: "stdout", Log: l})
		if _, err := f.Write(append(b, '\n')); err != nil {
			t.Fatal(err)
		}
	}
}

// ReadOutput passes every record, or the last N; FollowOutput goes on from where it stopped
// and returns once the guest is no longer running, with what was appended meanwhile.
func TestReadAndFollowOutput(t *testing.T) {
	r := Run{ID: "r1", Dir: t.TempDir()}
	appendRecords(t, r.Output(), "one", "two", "three")
	var mu sync.Mutex
	var got []string
	collect := func(rec guestlog.Record) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, rec.Log)
		return nil
	}
	if _, err := r.ReadOutput(guestlog.Filter{}, -1, collect); err != nil || len(got) != 3 {
		t.Fatalf("all records: %q %v", got, err)
	}
	got = nil
	offset, err := r.ReadOutput(guestlog.Filter{}, 1, collect)
	if err != nil || len(got) != 1 || got[0] != "three" {
		t.Fatalf("the last record: %q %v", got, err)
	}
	got = nil
	var running atomic.Bool
	running.Store(true)
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { done <- r.FollowOutput(ctx, offset, guestlog.Filter{}, collect, running.Load) }()
	appendRecords(t, r.Output(), "four")
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("the follow ended while the guest runs: %v", err)
	default:
	}
	appendRecords(t, r.Output(), "five")
	running.Store(false)
	select {
	case err := <-done:
		mu.Lock()
		defer mu.Unlock()
		if err != nil || len(got) != 2 || got[0] != "four" || got[1] != "five" {
			t.Errorf("followed %q, %v; want four, five", got, err)
		}
	case <-ctx.Done():
		t.Fatal("the follow did not end after the guest stopped")
	}

	// Interrupted, a follow ends without an error.
	running.Store(true)
	ictx, icancel := context.WithCancel(context.Background())
	go func() {
		done <- r.FollowOutput(ictx, 0, guestlog.Filter{}, func(guestlog.Record) error { return nil }, running.Load)
	}()
	icancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("an interrupted follow: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("an interrupted follow did not end")
	}
}
