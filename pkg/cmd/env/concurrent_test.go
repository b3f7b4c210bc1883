package env

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/project"
)

// TestConcurrentAddsLoseNothing runs two `ukernel env add` at once through the built binary:
// both packages end up in env/ukernel.env and the lock; with the project lock held elsewhere for
// longer than the wait, add fails naming the holder and changes nothing.
func TestConcurrentAddsLoseNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("network: resolves against the Debian archive (run without -short)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "ukernel")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "../../../cmd/ukernel").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := writeProject(t, "system = []\n")
	ukernel := func(env []string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, bin, append([]string{"-C", dir}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	if out, err := ukernel(nil, "env", "lock"); err != nil {
		t.Fatalf("env lock: %v\n%s", err, out)
	}
	pkgs := []string{"jq", "curl"}
	outs := make([]string, len(pkgs))
	errs := make([]error, len(pkgs))
	var wg sync.WaitGroup
	for i, p := range pkgs {
		wg.Go(func() { outs[i], errs[i] = ukernel(nil, "env", "add", "--system", p) })
	}
	wg.Wait()
	env, err := project.LoadEnv(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pkgs {
		if errs[i] != nil {
			t.Errorf("env add --system %s: %v\n%s", p, errs[i], outs[i])
		}
		if !strings.Contains(strings.Join(env.System, " "), p) {
			t.Errorf("%s was lost: env/ukernel.env has %v\n%s", p, env.System, strings.Join(outs, "\n"))
		}
	}
	lockData, _ := os.ReadFile(filepath.Join(dir, project.LockFile))
	for _, p := range pkgs {
		if !bytes.Contains(lockData, []byte(`"name": "`+p+`"`)) {
			t.Errorf("%s is not in the lock", p)
		}
	}

	// Held by someone else for longer than the wait: a clear failure, nothing written.
	release, err := project.LockProject(ctx, dir, "ukernel env add", time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	before, _ := os.ReadFile(filepath.Join(dir, project.EnvFile))
	out, err := ukernel([]string{project.LockWaitEnv + "=1s"}, "env", "add", "--system", "less")
	want := fmt.Sprintf("locked by PID %d (ukernel env add)", os.Getpid())
	if err == nil || !strings.Contains(out, want) || !strings.Contains(out, "Waiting for the project lock") {
		t.Fatalf("add while the project is locked: %v\n%s\nwant %q", err, out, want)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, project.EnvFile)); !bytes.Equal(before, after) {
		t.Fatalf("env/ukernel.env changed while locked by another command:\n%s", after)
	}
}
