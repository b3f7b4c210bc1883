package cache

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/cache"
	icache "github.com/ukernel-dev/ukernel/internal/cache"
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
	templates := t.TempDir()
	snap := filepath.Join(templates, "api", "revisions", "abc", "snapshot")
	os.MkdirAll(snap, 0o755)
	os.WriteFile(filepath.Join(snap, "memory"), make([]byte, 4096), 0o600)
	err = pruneRun(&PruneOptions{IO: ios, JSON: true, OpenCache: func() (*icache.Cache, error) { return c, nil },
		Templates: func() (string, error) { return templates, nil }})
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
