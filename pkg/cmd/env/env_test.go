package env

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// writeProject writes a shell project on debian-12 with the given env file and returns its dir.
func writeProject(t *testing.T, env string) string {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "env"), 0o755)
	os.WriteFile(filepath.Join(dir, "ukernel.toml"), []byte("[project]\nname = \"demo\"\nlanguage = \"shell\"\nentry = \"src/main.sh\"\n[env]\nbase = \"debian-12\"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "env/ukernel.env"), []byte(env), 0o644)
	return dir
}

// runEnv runs `ukernel env ARGS` on the project in dir with test IO streams.
func runEnv(ctx context.Context, dir string, args ...string) (string, string, error) {
	io, _, out, errOut := iostreams.Test()
	f := &cmdutil.Factory{IO: io, Dir: dir}
	cmd := NewCmdEnv(f)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

func TestEnvAddShowRemove(t *testing.T) {
	if testing.Short() {
		t.Skip("network: resolves against the Debian archive (run without -short)")
	}
	dir := writeProject(t, "base = \"debian-12\"\nsystem = []\npython = []\n")
	run := func(args ...string) (string, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		return runEnv(ctx, dir, args...)
	}
	_, stderr, err := run("add", "--system", "libssl")
	if err != nil || !strings.Contains(stderr, "Added libssl3 (3.0.") || !strings.Contains(stderr, "Locked environment: env/ukernel.lock") {
		t.Fatalf("add: %v\n%s", err, stderr)
	}
	out, _, err := run("show")
	if err != nil || !strings.Contains(out, "libssl3") || !strings.Contains(out, "Total:") {
		t.Fatalf("show: %v\n%s", err, out)
	}
	if _, _, err := run("lock", "--locked", "--offline"); err != nil {
		t.Fatalf("lock --locked on a fresh lock: %v", err)
	}
	if _, _, err := run("add", "--system", "no-such-package-xyz"); err == nil {
		t.Fatal("unknown package added")
	}
	_, stderr, err = run("remove", "libssl3")
	if err != nil || !strings.Contains(stderr, "Removed libssl3") {
		t.Fatalf("remove: %v\n%s", err, stderr)
	}
	env, _ := os.ReadFile(filepath.Join(dir, "env/ukernel.env"))
	if strings.Contains(string(env), "libssl3") {
		t.Fatalf("env still lists libssl3:\n%s", env)
	}
}

// A change that fails to lock, or whose locking is interrupted, must leave env/ukernel.env as it
// was (byte for byte) and write no lock: otherwise every later build fails on the bad request.
func TestEnvEditFailingToLockKeepsEnv(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // empty cache: --offline cannot lock
	// Where the cancelled run would fetch from, were it not cancelled: nothing listens there.
	t.Setenv("UKERNEL_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")
	const env = "# hand-written\nbase = \"debian-12\"\nsystem = [\"curl\"]\npython = []\n"
	cancelled, cancel := context.WithCancel(context.Background())
	cancel() // as Ctrl-C does through the root command's signal context
	for _, tc := range []struct {
		name string
		ctx  context.Context
		args []string
	}{
		{"add offline", context.Background(), []string{"add", "--offline", "no-such-requirement==1.0"}},
		{"remove offline", context.Background(), []string{"remove", "--offline", "curl"}},
		{"add interrupted", cancelled, []string{"add", "requests==2.32.3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeProject(t, env)
			_, stderr, err := runEnv(tc.ctx, dir, tc.args...)
			if err == nil {
				t.Fatalf("locking succeeded with nothing to lock from\n%s", stderr)
			}
			if !strings.Contains(err.Error(), "env/ukernel.env left unchanged") {
				t.Errorf("error does not say the env file was kept: %v", err)
			}
			if got, _ := os.ReadFile(filepath.Join(dir, "env/ukernel.env")); string(got) != env {
				t.Errorf("env/ukernel.env changed by a failed %q:\n%s", tc.args[0], got)
			}
			if _, err := os.Stat(filepath.Join(dir, "env/ukernel.lock")); !os.IsNotExist(err) {
				t.Errorf("a lock was written: %v", err)
			}
		})
	}
}
