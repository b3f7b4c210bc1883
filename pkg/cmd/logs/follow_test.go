package logs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/runlog"
	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// TestFollowEndsWhenTheRunEnds: logs -f NAME returns once the guest's run has ended and its
// owner recorded it, even while the owner runs on (a detached guest's monitor under --restart
// waits to start it again). Before, it followed the finished run's log for as long as the
// monitor ran, printing nothing. The VMM and the monitor are real processes (sleep): the VMM
// one carries its API socket's path on its command line, as Handle.Alive checks.
func TestFollowEndsWhenTheRunEnds(t *testing.T) {
	dir := t.TempDir()
	store, err := runstate.OpenAt(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	start := func(args ...string) *exec.Cmd {
		c := exec.Command(args[0], args[1:]...)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		return c
	}
	api := filepath.Join(dir, "api.sock")
	vmmProc := start("sh", "-c", "sleep 60; : "+api)
	monitor := start("sleep", "60")
	ownerStart, _ := runstate.ProcessStart(monitor.Process.Pid)
	run := runlog.Run{ID: "r1", Dir: filepath.Join(dir, "runs", "r1")}
	if err := os.MkdirAll(run.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(run.Output(), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	st := &runstate.State{Name: "api", RunID: run.ID, RunDir: run.Dir, Detached: true, Started: time.Now(),
		Owner: monitor.Process.Pid, OwnerStart: ownerStart}
	st.Handle.PID, st.Handle.APISocket = vmmProc.Process.Pid, api
	if err := store.Save(st); err != nil {
		t.Fatal(err)
	}
	ios, _, _, _ := iostreams.Test()
	o := &Options{IO: ios, Name: "api", Follow: true, Tail: -1, OpenStore: func() (*runstate.Store, error) { return store, nil }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- logsRun(ctx, o) }()
	select {
	case err := <-done:
		t.Fatalf("logs -f returned while the guest ran: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	// The guest ends; its monitor records the end, and stays to restart it.
	vmmProc.Process.Kill()
	vmmProc.Wait()
	if err := store.Finish(st, runlog.Outcome{Reason: "killed"}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("logs -f: %v", err)
		}
	case <-time.After(5 * time.Second):
		cancel()
		<-done
		t.Fatal("logs -f still follows 5s after the run ended and was recorded (its monitor runs on)")
	}
}
