package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/testenv"
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

// TestKilledRunLeavesNothing kills a real foreground `ukernel run` with SIGKILL, once while it
// starts the guest (its config drive, holding a secret, exists and QEMU is not recorded yet) and
// once while the guest runs: QEMU dies with it both times, and the next command removes the
// config drive and records the guest as finished. The secret, taken from ukernel's environment,
// is not in QEMU's.
func TestKilledRunLeavesNothing(t *testing.T) {
	skipShort(t)
	dir := newProject(t, "kill-run", "--lang", "shell", "--template", "minimal")
	cfg := filepath.Join(dir, "ukernel.toml")
	data, _ := os.ReadFile(cfg)
	writeFile(t, cfg, strings.Replace(string(data), "entry = 'src/main.sh'", "entry = 'src/main.sh'\nsecrets = ['uk_key']", 1))
	writeFile(t, filepath.Join(dir, "src", "main.sh"), "echo \"ready $(wc -c </run/secrets/uk_key)\"\nwhile :; do sleep 1; done\n")
	mustUK(t, dir, 15*time.Minute, "pack")
	secret := fmt.Sprintf("kill-s3cret-%d", time.Now().UnixNano())
	state := filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "ukernel")

	start := func(name string) (*exec.Cmd, *testenv.SyncBuffer, chan error) {
		cmd := exec.Command(ukernelBin(t), "-C", dir, "run", "--accel", "tcg", "--name", name, "--secret", "uk_key")
		cmd.Env = append(os.Environ(), "uk_key="+secret)
		var out testenv.SyncBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() { cmd.Process.Kill() })
		return cmd, &out, done
	}
	kill := func(cmd *exec.Cmd, done chan error) {
		cmd.Process.Signal(syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the killed ukernel did not exit")
		}
	}

	// 1. Killed while it starts the guest: the config drive is written, QEMU started (its pid
	// file exists) and not recorded yet.
	cmd, out, done := start("kill-start")
	drive := filepath.Join(state, "kill-start.config")
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(2 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(state, "kill-start.pid")); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run ended (%v) before QEMU started:\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("QEMU did not start within the deadline:\n%s", out.String())
		}
	}
	kill(cmd, done)
	if _, err := os.Stat(drive); err != nil {
		t.Logf("the start finished before the kill (%v): only the QEMU check applies", err)
	}
	noQEMULeft(t, filepath.Join(state, "kill-start.qmp"))

	// 2. Killed while the guest runs. Opening the store (this run) swept the first one's drive.
	cmd, out, done = start("kill-live")
	waitFor(t, "the workload's start", 3*time.Minute, func() (bool, string) {
		return strings.Contains(out.String(), fmt.Sprintf("ready %d", len(secret))), out.String()
	})
	if _, err := os.Stat(drive); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the next run left the killed run's config drive %s: %v", drive, err)
	}
	var st struct {
		VMM struct{ PID int } `json:"vmm"`
	}
	b, err := os.ReadFile(filepath.Join(state, "kill-live.json"))
	if err != nil || json.Unmarshal(b, &st) != nil || st.VMM.PID <= 0 {
		t.Fatalf("state of kill-live: %v %s", err, b)
	}
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", st.VMM.PID))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(env, []byte(secret)) {
		t.Error("the secret taken from ukernel's environment is in QEMU's environment")
	}
	kill(cmd, done)
	noQEMULeft(t, filepath.Join(state, "kill-live.qmp"))

	// The next command, whatever it is, cleans what the killed runs left.
	uk(t, dir, time.Minute, "logs", "kill-live")
	ents, _ := os.ReadDir(state)
	for _, e := range ents {
		p := filepath.Join(state, e.Name())
		if strings.HasSuffix(e.Name(), ".config") || strings.Contains(e.Name(), ".config.tmp") || strings.HasSuffix(e.Name(), ".pid") {
			t.Errorf("left behind: %s", p)
		}
		if data, _ := os.ReadFile(p); bytes.Contains(data, []byte(secret)) {
			t.Errorf("the secret is left in %s", p)
		}
	}
	for _, name := range []string{"kill-start", "kill-live"} {
		b, err := os.ReadFile(filepath.Join(state, name+".json"))
		if err != nil || !bytes.Contains(b, []byte(`"exited": true`)) {
			t.Errorf("%s is not recorded as finished: %v\n%s", name, err, b)
		}
	}
}
