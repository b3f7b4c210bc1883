package cache

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/cache"
	icache "github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

func TestNewCmdPrune(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    time.Duration
		wantErr string
	}{
		{nil, 0, ""},
		{[]string{"--older-than", "720h"}, 720 * time.Hour, ""},
		{[]string{"--older-than", "soon"}, 0, "invalid argument"},
		{[]string{"extra"}, 0, "unknown command"},
	} {
		ios, _, _, _ := iostreams.Test()
		var got *PruneOptions
		cmd := NewCmdPrune(&cmdutil.Factory{IO: ios}, func(o *PruneOptions) error { got = o; return nil })
		cmd.SetArgs(tc.args)
		cmd.SetOut(ios.Out)
		cmd.SetErr(ios.ErrOut)
		err := cmd.Execute()
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: err %v, want %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got == nil || got.OlderThan != tc.want {
			t.Errorf("%v: err %v, options %+v; want --older-than %v", tc.args, err, got, tc.want)
		}
	}
}

// Prune empties the cache it is given and says how much it removed.
func TestPruneRun(t *testing.T) {
	dir := t.TempDir()
	c, err := icache.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := c.PutBytes([]byte("blob"))
	if err != nil {
		t.Fatal(err)
	}
	ios, _, out, _ := iostreams.Test()
	store := template.At(t.TempDir())
	snap := fakeSnapshot(t, store, "api")
	err = pruneRun(t.Context(), &PruneOptions{IO: ios, JSON: true, OpenCache: func() (*icache.Cache, error) { return c, nil },
		Templates: func() (*template.Store, error) { return store, nil }})
	if err != nil || strings.ReplaceAll(out.String(), " ", "") != "{\n\"files\":1,\n\"bytes\":4,\n\"snapshots\":1,\n\"snapshot_bytes\":4096\n}\n" {
		t.Errorf("prune --json: err %v, stdout %q", err, out)
	}
	if _, err := os.Stat(cache.Blobs.In(dir, sum[:2], sum)); !os.IsNotExist(err) {
		t.Errorf("the blob is still cached: %v", err)
	}
	if _, err := os.Stat(snap); !os.IsNotExist(err) {
		t.Errorf("the snapshot is still there: %v", err)
	}
}

// fakeSnapshot creates template name in s with a revision's snapshot directory (a 4 KiB memory
// file) and returns that directory.
func fakeSnapshot(t *testing.T, s *template.Store, name string) string {
	t.Helper()
	if err := s.Create(&template.Spec{Name: name, Source: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(s.RevisionDir(name, strings.Repeat("a", 64)), template.SnapshotDir)
	if err := os.MkdirAll(snap, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(snap, "memory"), make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	return snap
}

// TestPruneKeepsSnapshotsBeingRestored: a snapshot a run is starting from (it pinned the
// template, as run --template and perf --template do until their guest has started) stays, and
// prune says so; another template's goes; once the run has started, a prune removes it.
func TestPruneKeepsSnapshotsBeingRestored(t *testing.T) {
	c, err := icache.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := template.At(t.TempDir())
	busy, idle := fakeSnapshot(t, store, "api"), fakeSnapshot(t, store, "db")
	unpin, err := store.Pin(t.Context(), "api")
	if err != nil {
		t.Fatal(err)
	}
	prune := func() string {
		ios, _, out, _ := iostreams.Test()
		if err := pruneRun(t.Context(), &PruneOptions{IO: ios, OpenCache: func() (*icache.Cache, error) { return c, nil },
			Templates: func() (*template.Store, error) { return store, nil }}); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	out := prune()
	if _, err := os.Stat(busy); err != nil {
		t.Fatalf("prune removed the snapshot a run was restoring: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Removed 1 template snapshots") || !strings.Contains(out, "Kept the snapshots of api: a run or perf is starting from one") {
		t.Errorf("prune with api pinned said:\n%s", out)
	}
	if _, err := os.Stat(idle); !os.IsNotExist(err) {
		t.Errorf("the snapshot no run was restoring is still there: %v", err)
	}
	unpin()
	if out := prune(); !strings.Contains(out, "Removed 1 template snapshots") || strings.Contains(out, "Kept") {
		t.Errorf("prune once the run started said:\n%s", out)
	}
	if _, err := os.Stat(busy); !os.IsNotExist(err) {
		t.Errorf("the snapshot is still there once no run pins it: %v", err)
	}
}
