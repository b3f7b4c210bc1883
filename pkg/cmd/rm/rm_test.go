package rm

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// rm removes a finished guest's record and refuses a live one, going on after the refusal.
func TestRm(t *testing.T) {
	store, err := runstate.OpenAt(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Save(&runstate.State{Name: "done", Exited: true}); err != nil {
		t.Fatal(err)
	}
	if err := store.Reserve("live"); err != nil { // this (live) process starts it
		t.Fatal(err)
	}
	ios, _, out, _ := iostreams.Test()
	var opts *Options
	cmd := NewCmdRm(&cmdutil.Factory{IO: ios, JSON: true}, func(o *Options) error { opts = o; return nil })
	cmd.SetArgs([]string{"live", "done"})
	if err := cmd.Execute(); err != nil || opts == nil {
		t.Fatal(err)
	}
	opts.OpenStore = func() (*runstate.Store, error) { return store, nil }
	err = rmRun(opts)
	if err == nil || !strings.Contains(err.Error(), `rm live: guest "live" is running`) {
		t.Errorf("rm live done: %v", err)
	}
	if strings.ReplaceAll(out.String(), " ", "") != "{\n\"removed\":[\n\"done\"\n]\n}\n" {
		t.Errorf("rm --json: %q", out)
	}
	if _, err := store.Load("done"); err == nil {
		t.Error("the finished guest is still recorded")
	}
	if _, err := store.Load("live"); err != nil {
		t.Errorf("the live guest's record is gone: %v", err)
	}
}
