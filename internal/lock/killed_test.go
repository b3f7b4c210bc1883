package lock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/crashpoint"
	"github.com/ukernel-dev/ukernel/internal/pypi"
)

// six 1.16.0's wheel: 11 kB, from the package index through the host's pip.
var sixWheel = pypi.Wheel{Name: "six", Version: "1.16.0", Filename: "six-1.16.0-py2.py3-none-any.whl",
	SHA256: "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254", Size: 11053}

// TestKilledWheelFetchLeavesNothing: a build killed (SIGKILL at crashpoint cache-blob) while it
// stores a wheel pip downloaded leaves pip's directory in the cache's tmp/; the next command
// that opens the cache removes it, and fetches the wheel again, leaving tmp/ empty. The killed
// command is this test binary, re-executed.
func TestKilledWheelFetchLeavesNothing(t *testing.T) {
	l := &Lock{Base: "python-3.11", Python: []pypi.Wheel{sixWheel}}
	if dir := os.Getenv("UKT_WHEEL_HELPER"); dir != "" {
		c, err := cache.OpenDir(dir)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			_, err = FetchWheels(ctx, l, c, Options{})
		}
		t.Fatalf("not killed at cache-blob: %v", err)
	}
	needNet(t)
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledWheelFetchLeavesNothing$")
	cmd.Env = append(os.Environ(), "UKT_WHEEL_HELPER="+dir, crashpoint.Env+"=cache-blob")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the fetch did not die at cache-blob: %v\n%s", err, out)
	}
	c, err := cache.OpenDir(dir) // the next command
	must(t, err)
	paths, err := FetchWheels(ctx(t), l, c, Options{})
	must(t, err)
	if paths["six"] != c.BlobPath(sixWheel.SHA256) {
		t.Errorf("six stored at %q", paths["six"])
	}
	if left, _ := os.ReadDir(cache.Tmp.In(dir)); len(left) != 0 {
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		t.Errorf("the cache's tmp/ holds %q after a killed fetch and the next one", names)
	}
}

// TestKilledFetchEndsPip: pip, which downloads into the cache's work directory, dies with the
// command that ran it (SIGKILL): it never goes on writing into a directory the next command
// removes as a killed one's. pip here is a stand-in that only waits (the real one's download
// ends too soon to be killed at a known point); the killed command is this test binary,
// re-executed.
func TestKilledFetchEndsPip(t *testing.T) {
	if dir := os.Getenv("UKT_PIP_HELPER"); dir != "" {
		pypi.Python = os.Getenv("UKT_PIP")
		c, err := cache.OpenDir(dir)
		if err == nil {
			_, err = FetchWheels(context.Background(), &Lock{Base: "python-3.11", Python: []pypi.Wheel{sixWheel}}, c, Options{})
		}
		t.Fatalf("pip returned: %v", err)
	}
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pip.pid")
	pip := filepath.Join(dir, "python3")
	must(t, os.WriteFile(pip, []byte("#!/bin/sh\necho $$ > "+pidFile+".tmp && mv "+pidFile+".tmp "+pidFile+"\nexec sleep 60\n"), 0o755))
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledFetchEndsPip$")
	cmd.Env = append(os.Environ(), "UKT_PIP_HELPER="+filepath.Join(dir, "cache"), "UKT_PIP="+pip)
	must(t, cmd.Start())
	var pid int
	for deadline := time.Now().Add(30 * time.Second); pid == 0; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(pidFile); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("pip never started")
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	for deadline := time.Now().Add(5 * time.Second); syscall.Kill(pid, 0) == nil; time.Sleep(20 * time.Millisecond) {
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(st), ") Z") {
			break // dead, not yet reaped by its new parent
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("pip (pid %d) still runs 5s after the command that ran it was killed", pid)
		}
	}
}
