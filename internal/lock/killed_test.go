package lock

import (
	"context"
	"errors"
	"os"
	"os/exec"
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
