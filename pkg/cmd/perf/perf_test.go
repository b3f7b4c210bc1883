package perf

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/perf"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

func TestNewCmdPerf(t *testing.T) {
	parse := func(args ...string) (*Options, error) {
		ios, _, _, _ := iostreams.Test()
		var got *Options
		cmd := NewCmdPerf(&cmdutil.Factory{IO: ios}, func(o *Options) error { got = o; return nil })
		cmd.SetArgs(args)
		cmd.SetOut(ios.Out)
		cmd.SetErr(ios.ErrOut)
		return got, cmd.Execute()
	}
	if o, err := parse(); err != nil || o.Runs != 10 || o.Image != "" || o.SVG != "" || o.Accel != "auto" || o.Timeout != 2*time.Minute || o.Offline {
		t.Errorf("perf: %v %+v; want 10 runs of the project's image", err, o)
	}
	if o, err := parse("--runs", "3", "--image", "dist/a.img", "--svg", "boot.svg", "--accel", "tcg", "--timeout", "30s", "--offline"); err != nil ||
		o.Runs != 3 || o.Image != "dist/a.img" || o.SVG != "boot.svg" || o.Accel != "tcg" || o.Timeout != 30*time.Second || !o.Offline {
		t.Errorf("perf with every flag: %v %+v", err, o)
	}
	if o, err := parse("--runs", "0"); cmdutil.ExitCode(err) != 2 || !strings.Contains(err.Error(), "--runs 0: expected at least 1") || o != nil {
		t.Errorf("perf --runs 0: %v; want a usage error before running", err)
	}
	if o, err := parse("--template", "api", "--image", "a.img"); cmdutil.ExitCode(err) != 2 || !strings.Contains(err.Error(), "exclude each other") || o != nil {
		t.Errorf("perf --template api --image a.img: %v; want a usage error before running", err)
	}
	if o, err := parse("--template", "api@r2"); err != nil || o.Template != "api@r2" {
		t.Errorf("perf --template api@r2: %v %+v", err, o)
	}
}

// fakeRevision puts a revision with id into template name of s (revision.json and an image
// file: enough to resolve it, not to boot it) and makes it current.
func fakeRevision(t *testing.T, s *template.Store, name, id string, added time.Time) {
	t.Helper()
	dir := s.RevisionDir(name, id)
	if err := os.MkdirAll(filepath.Join(dir, template.SnapshotDir), 0o755); err != nil {
		t.Fatal(err)
	}
	rev, _ := json.Marshal(template.Revision{ID: id, Added: added})
	if err := os.WriteFile(filepath.Join(dir, template.RevisionFile), rev, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, template.ImageFile), []byte("image"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := s.SetCurrent(name, id); err != nil {
		t.Fatal(err)
	}
}

// TestTemplatePinnedWhileMeasured: perf --template NAME@REV of an older revision keeps a
// build's prune from removing it until its last boot, and lets it prune afterwards.
func TestTemplatePinnedWhileMeasured(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(template.EnvDir, filepath.Join(dir, "templates"))
	t.Setenv(project.LockWaitEnv, "200ms")
	s, err := template.Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Create(&template.Spec{Name: "api", Source: dir}); err != nil {
		t.Fatal(err)
	}
	old, cur := strings.Repeat("a", 64), strings.Repeat("b", 64)
	fakeRevision(t, s, "api", old, time.Now().Add(-time.Hour))
	fakeRevision(t, s, "api", cur, time.Now())
	ctx := t.Context()
	ios, _, _, _ := iostreams.Test()
	boots := 0
	o := &Options{IO: ios, ProjectDir: func() (string, error) { return dir, nil }, Runs: 2, Template: "api@" + old[:12], JSON: true,
		Measure: func(ctx context.Context, po perf.Options) ([]perf.Boot, error) {
			for range po.Runs {
				// A template build's prune between two boots.
				removed, err := s.Prune(ctx, "api", 1, nil)
				if err == nil || len(removed) > 0 {
					return nil, fmt.Errorf("a prune ran while perf measured %s: removed %v (%v)", po.Image, removed, err)
				}
				if _, err := os.Stat(po.Image); err != nil {
					return nil, fmt.Errorf("the measured image went: %w", err)
				}
				boots++
			}
			return nil, nil
		}}
	if err := perfRun(ctx, o); err != nil {
		t.Fatal(err)
	}
	if boots != 2 {
		t.Fatalf("%d boots measured, want 2", boots)
	}
	if removed, err := s.Prune(ctx, "api", 1, nil); err != nil || len(removed) != 1 || removed[0] != old {
		t.Errorf("after perf: prune removed %v (%v), want %s", removed, err, old[:12])
	}
}
