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

func TestEnvAddShowRemove(t *testing.T) {
	if testing.Short() {
		t.Skip("network: resolves against the Debian archive (run without -short)")
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "env"), 0o755)
	os.WriteFile(filepath.Join(dir, "ukernel.toml"), []byte("[project]\nname = \"demo\"\nlanguage = \"shell\"\nentry = \"src/main.sh\"\n[env]\nbase = \"debian-12\"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "env/ukernel.env"), []byte("base = \"debian-12\"\nsystem = []\npython = []\n"), 0o644)
	run := func(args ...string) (string, string, error) {
		io, _, out, errOut := iostreams.Test()
		f := &cmdutil.Factory{IO: io, Dir: dir}
		cmd := NewCmdEnv(f)
		cmd.SetArgs(args)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		err := cmd.ExecuteContext(ctx)
		return out.String(), errOut.String(), err
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
