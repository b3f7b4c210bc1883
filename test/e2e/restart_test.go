package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunDetachedRestart: run -d --restart on-failure starts a guest again when its workload
// fails, and `ukernel stop` ends it for good (its monitor does not start it again).
func TestRunDetachedRestart(t *testing.T) {
	skipShort(t)
	dir := newProject(t, "restarter", "--lang", "python", "--template", "worker")
	writeFile(t, filepath.Join(dir, "src", "main.py"), "import sys, time\nprint('up', flush=True)\ntime.sleep(15)\nsys.exit(3)\n")
	mustUK(t, dir, 15*time.Minute, "run", "-d", "--restart", "on-failure")
	defer func() {
		uk(t, dir, 2*time.Minute, "stop", "restarter")
		noQEMULeft(t, filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "restarter"))
	}()
	runs := func() []string {
		r, _ := filepath.Glob(filepath.Join(dir, "logs", "runs", "*"))
		return r
	}
	// The first run exits 3 after 15s; the monitor starts a second one a second later.
	waitFor(t, "a second run", 3*time.Minute, func() (bool, string) {
		return len(runs()) >= 2, strings.Join(runs(), "\n")
	})
	waitFor(t, "the second run running", 2*time.Minute, func() (bool, string) {
		for _, g := range ps(t, dir) {
			if g.Name == "restarter" && g.Status == "running" {
				return true, ""
			}
		}
		return false, "not running"
	})
	mustUK(t, dir, 2*time.Minute, "stop", "restarter")
	n := len(runs())
	// Long enough for the monitor's backoff (2s after the second run) to have started another.
	time.Sleep(8 * time.Second)
	if got := len(runs()); got != n {
		t.Errorf("a run started after ukernel stop: %d runs, %d at the stop", got, n)
	}
	for _, g := range ps(t, dir) {
		if g.Name == "restarter" {
			t.Errorf("restarter still listed as %s after stop", g.Status)
		}
	}
}
