package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// killMidway starts `ukernel pack` in dir, waits until a file matching glob (relative to dir)
// appears and a little longer, and kills the process with SIGKILL. It returns what matched.
func killMidway(t *testing.T, dir, glob string) []string {
	t.Helper()
	cmd := exec.Command(ukernelBin(t), "-C", dir, "pack")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(10 * time.Minute)
	for {
		if m, _ := filepath.Glob(filepath.Join(dir, glob)); len(m) > 0 {
			time.Sleep(300 * time.Millisecond) // well into the step
			cmd.Process.Signal(syscall.SIGKILL)
			if err := <-done; err == nil {
				t.Fatalf("pack finished before it could be killed in %s", glob)
			}
			// What the killed pack left, still there (its children died with it).
			left, _ := filepath.Glob(filepath.Join(dir, glob))
			if len(left) == 0 {
				t.Fatalf("the killed pack left nothing matching %s: the test did not kill it mid-way", glob)
			}
			return left
		}
		select {
		case err := <-done:
			t.Fatalf("pack ended (%v) before %s appeared", err, glob)
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("no %s within the deadline", glob)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestKilledPackLeavesNothing kills a real `ukernel pack` with SIGKILL while it builds and again
// while it packs: the work it left is ignored by the generated .gitignore, and the next pack
// removes it and gives the same image, byte for byte.
func TestKilledPackLeavesNothing(t *testing.T) {
	skipShort(t)
	dir := newProject(t, "kill-worker", "--lang", "python", "--template", "worker")
	var ref struct{ SHA256 string }
	if err := json.Unmarshal([]byte(mustUK(t, dir, 15*time.Minute, "--json", "pack").stdout), &ref); err != nil || ref.SHA256 == "" {
		t.Fatalf("pack --json: %v", err)
	}
	if out, err := exec.Command("git", "init", "-q", dir).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}
	ignored := func(p string) {
		t.Helper()
		rel, _ := filepath.Rel(dir, p)
		if err := exec.Command("git", "-C", dir, "check-ignore", "-q", rel).Run(); err != nil {
			t.Errorf("the generated .gitignore does not cover %s", rel)
		}
	}
	fresh := func() {
		for _, d := range []string{"build", "dist"} {
			if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
				t.Fatal(err)
			}
		}
	}

	fresh()
	for _, p := range killMidway(t, dir, ".build-tmp-*") {
		ignored(p)
	}
	fresh()
	for _, p := range killMidway(t, dir, "dist/.kill-worker.img.work-*") {
		ignored(p)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".build-tmp-*")); len(left) > 0 {
		t.Errorf("the second pack kept the killed build's %q", left)
	}

	var again struct{ SHA256 string }
	if err := json.Unmarshal([]byte(mustUK(t, dir, 15*time.Minute, "--json", "pack").stdout), &again); err != nil {
		t.Fatal(err)
	}
	if again.SHA256 != ref.SHA256 {
		t.Errorf("after the kills the image is %s, before %s", again.SHA256, ref.SHA256)
	}
	for _, glob := range []string{".build-tmp-*", "dist/.*", "build/*.old"} {
		if left, _ := filepath.Glob(filepath.Join(dir, glob)); len(left) > 0 {
			t.Errorf("left behind after the rerun: %q", left)
		}
	}
}
