// Package e2e drives the real ukernel binary through whole user journeys: init, lock, build,
// pack and boot under QEMU (TCG here), reading what the guest printed.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// ukernelBin builds the CLI once per test process, as `go build ./cmd/ukernel` would.
func ukernelBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ukernel-e2e-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "ukernel")
		out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/ukernel").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots VMs and fetches packages; runs without -short")
	}
}

// result is one finished ukernel invocation.
type result struct {
	code           int
	stdout, stderr string
}

// uk runs ukernel with a deadline in the project directory dir.
func uk(t *testing.T, dir string, timeout time.Duration, args ...string) result {
	t.Helper()
	return ukEnv(t, dir, timeout, nil, args...)
}

func ukEnv(t *testing.T, dir string, timeout time.Duration, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, ukernelBin(t), append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ctx.Err() != nil {
		t.Fatalf("ukernel %s: no result within %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), timeout, r.stdout, r.stderr)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("ukernel %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// mustUK runs ukernel and fails the test unless it exits 0.
func mustUK(t *testing.T, dir string, timeout time.Duration, args ...string) result {
	t.Helper()
	r := uk(t, dir, timeout, args...)
	if r.code != 0 {
		t.Fatalf("ukernel %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// newProject creates a project with `ukernel init` in a fresh directory.
func newProject(t *testing.T, name string, initArgs ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mustUK(t, dir, time.Minute, append([]string{"init", "--name", name}, initArgs...)...)
	return dir
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// noQEMULeft fails when a QEMU process started for dir is still alive.
func noQEMULeft(t *testing.T, marker string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, _ := exec.Command("pgrep", "-af", "qemu-system").Output()
		var left []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, marker) {
				left = append(left, l)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("QEMU still running:\n%s", strings.Join(left, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// printRootReadahead is Python that prints the device the guest's root filesystem is on (the
// image disk, vda, or the dm-verity device of a read-only image) and its readahead. The
// workload is chrooted, so /proc/mounts does not show the root's own mount.
const printRootReadahead = `import glob, os
dev = "/sys/block/vda"
for d in glob.glob("/sys/block/dm-*"):
    if open(d + "/dm/name").read().strip() == "ukernel-root":
        dev = d
print("root device:", "/dev/" + os.path.basename(dev), flush=True)
print("root readahead:", open(dev + "/queue/read_ahead_kb").read().strip(), flush=True)
`

// checkRootReadahead checks printRootReadahead's output: init set internal/guest.RootReadaheadKB.
func checkRootReadahead(t *testing.T, stdout string) {
	t.Helper()
	if !regexp.MustCompile(`root readahead: 2048\r?\n`).MatchString(stdout) {
		t.Errorf("the root device's readahead is not 2048 KiB:\n%s", stdout)
	}
}
