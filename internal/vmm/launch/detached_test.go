package launch

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStartDetachedInterrupted: run -d interrupted (its context cancelled) while its monitor
// is still starting the guest stops the monitor and returns the interruption, instead of
// waiting for the start and leaving a detached guest running that the user asked to stop
// (before: Ctrl-C during `ukernel run -d` was ignored and it exited 0 with the guest running).
// The monitor here stands in for ukernel's own (which needs a VM whose start can be held at a
// known point): it follows the monitor's side of the protocol (request on stdin, progress on
// descriptor 3, result on 4). One reports when told to stop, as RunMonitor does; one ignores
// SIGTERM, and is killed once a stop's bound has passed.
func TestStartDetachedInterrupted(t *testing.T) {
	for _, tc := range []struct {
		name, onTerm string
		within       time.Duration
	}{
		{"reports", `trap 'echo "{\"error\":\"start interrupted\"}" >&4; exit 1' TERM`, 5 * time.Second},
		{"ignores", `trap '' TERM`, 1*time.Second + monitorKillAfter + 5*time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pidFile := filepath.Join(dir, "pid")
			exe := filepath.Join(dir, "monitor")
			script := "#!/bin/sh\n" + tc.onTerm + "\necho $$ > " + pidFile + "\ncat > /dev/null\necho 'Starting the guest' >&3\nwhile :; do sleep 0.05; done\n"
			if err := os.WriteFile(exe, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var progress bytes.Buffer
			type result struct {
				d   *Detached
				err error
			}
			done := make(chan result, 1)
			go func() {
				d, err := StartDetached(ctx, Options{Name: "ukt-int", StopTimeout: time.Second, Progress: &progress}, exe)
				done <- result{d, err}
			}()
			var pid int
			for deadline := time.Now().Add(10 * time.Second); pid == 0; time.Sleep(20 * time.Millisecond) {
				if b, err := os.ReadFile(pidFile); err == nil && bytes.HasSuffix(b, []byte("\n")) {
					pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
				}
				if time.Now().After(deadline) {
					t.Fatal("the monitor did not start")
				}
			}
			time.Sleep(200 * time.Millisecond) // in its start
			cancel()
			start := time.Now()
			select {
			case r := <-done:
				if r.err == nil || !errors.Is(r.err, context.Canceled) {
					t.Errorf("StartDetached returned %+v, %v; want the interruption", r.d, r.err)
				}
				t.Logf("returned after %s: %v", time.Since(start).Round(time.Millisecond), r.err)
			case <-time.After(tc.within):
				syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("StartDetached still waits %s after its context ended", tc.within)
			}
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				syscall.Kill(pid, syscall.SIGKILL)
				t.Errorf("the monitor (pid %d) still runs: %v", pid, err)
			}
		})
	}
}
