package env

import (
	"context"
	"encoding/json"
	"fmt"
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
	return writeProjectOn(t, "debian-12", env)
}

// writeProjectOn writes a project on base with the given env file and returns its dir.
func writeProjectOn(t *testing.T, base, env string) string {
	t.Helper()
	dir := t.TempDir()
	lang, entry := "shell", "src/main.sh"
	if strings.HasPrefix(base, "python") {
		lang, entry = "python", "src/main.py"
	}
	for name, data := range map[string]string{
		"ukernel.toml":    fmt.Sprintf("[project]\nname = \"demo\"\nlanguage = %q\nentry = %q\n[env]\nbase = %q\n", lang, entry, base),
		"env/ukernel.env": env,
		entry:             "",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runEnv runs `ukernel env ARGS` on the project in dir with test IO streams.
func runEnv(ctx context.Context, dir string, args ...string) (string, string, error) {
	return runEnvWith(ctx, dir, false, args...)
}

// runEnvWith runs `ukernel env ARGS`, with the root's --json when json is set.
func runEnvWith(ctx context.Context, dir string, json bool, args ...string) (string, string, error) {
	io, _, out, errOut := iostreams.Test()
	f := &cmdutil.Factory{IO: io, Dir: dir, JSON: json}
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

// Names given to `env add --system` map to one package by a rule, or are refused with candidates:
// "lib" once silently took lib32z1. `env remove --system` (documented) works.
func TestEnvSystemNames(t *testing.T) {
	if testing.Short() {
		t.Skip("network: resolves against the Debian archive (run without -short)")
	}
	const env = "system = []\npython = []\n"
	dir := writeProject(t, env)
	run := func(args ...string) (string, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		return runEnv(ctx, dir, args...)
	}
	for name, want := range map[string]string{"lib": "no package lib in the archive", "libz": "zlib1g provides libz1", "libncurses": "libncurses5, libncurses6"} {
		_, stderr, err := run("add", "--system", name)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(stderr, "Added") {
			t.Errorf("add --system %s: %v (want %q)\n%s", name, err, want, stderr)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "env/ukernel.env")); string(got) != env {
		t.Fatalf("refused names changed env/ukernel.env:\n%s", got)
	}
	if _, stderr, err := run("add", "--system", "Curl"); err != nil || !strings.Contains(stderr, "Added curl (") {
		t.Fatalf("add --system Curl: %v\n%s", err, stderr)
	}
	if _, _, err := run("remove", "--system", "nosuch"); err == nil || !strings.Contains(err.Error(), "nosuch is not a system package in env/ukernel.env; it lists: curl") {
		t.Errorf("remove --system nosuch: %v", err)
	}
	if _, stderr, err := run("remove", "--system", "CURL"); err != nil || !strings.Contains(stderr, "Removed curl from env/ukernel.env") {
		t.Fatalf("remove --system CURL: %v\n%s", err, stderr)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "env/ukernel.env")); strings.Contains(string(got), "curl") {
		t.Fatalf("curl still requested:\n%s", got)
	}
}

// `env add` of a version that does not exist says so, with the nearest ones, and adds nothing;
// --json prints one document per command; `env show` puts a wheel's size in SIZE, reports a
// malformed env/ukernel.env by line, and flags a request the lock was not made for.
func TestEnvPythonShowJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("network: resolves against the Debian archive and the Python package index")
	}
	dir := writeProjectOn(t, "python-3.11", "system = []\npython = []\n")
	run := func(json bool, args ...string) (string, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		return runEnvWith(ctx, dir, json, args...)
	}
	envPath := filepath.Join(dir, "env/ukernel.env")
	before, _ := os.ReadFile(envPath)
	_, stderr, err := run(false, "add", "requests==99")
	if err == nil || !strings.Contains(err.Error(), "has no version 99") || !strings.Contains(err.Error(), "nearest versions: 2.") || strings.Contains(stderr, "Added") {
		t.Fatalf("add requests==99: %v\n%s", err, stderr)
	}
	if got, _ := os.ReadFile(envPath); string(got) != string(before) {
		t.Fatalf("a failed add changed env/ukernel.env:\n%s", got)
	}

	var res struct {
		Added       []string `json:"added"`
		Removed     []string `json:"removed"`
		LockChanged bool     `json:"lock_changed"`
		Lock        struct {
			File, Digest, Kernel string
			Base                 string
			Size                 int64
			Packages             int
			Wheels               int `json:"python_wheels"`
		} `json:"lock"`
	}
	decode := func(what, out string) {
		t.Helper()
		res.Added, res.Removed = nil, nil
		dec := json.NewDecoder(strings.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&res); err != nil || dec.More() {
			t.Fatalf("%s --json: not one JSON document (%v):\n%s", what, err, out)
		}
	}
	out, stderr, err := run(true, "add", "six==1.16.0")
	if err != nil || !strings.Contains(stderr, "Added six==1.16.0 to env/ukernel.env") {
		t.Fatalf("add six: %v\n%s", err, stderr)
	}
	decode("add", out)
	if len(res.Added) != 1 || res.Added[0] != "six==1.16.0" || !res.LockChanged || res.Lock.Wheels != 1 || res.Lock.Packages == 0 || !strings.HasPrefix(res.Lock.Digest, "sha256:") {
		t.Errorf("add --json: %+v", res)
	}
	for _, args := range [][]string{{"lock"}, {"upgrade"}} {
		out, _, err := run(true, args...)
		if err != nil {
			t.Fatalf("%s: %v", args[0], err)
		}
		decode(args[0], out)
		if res.LockChanged || res.Lock.Wheels != 1 || res.Lock.File != "env/ukernel.lock" {
			t.Errorf("%s --json on an up-to-date lock: %+v", args[0], res)
		}
	}

	out, _, err = run(false, "show")
	if err != nil {
		t.Fatal(err)
	}
	var row []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "six" {
			row = f
		}
	}
	if len(row) != 5 || row[2] != "python" || !strings.HasSuffix(row[4], "kB") || !strings.Contains(out, "Lock:     up to date") {
		t.Errorf("show: six row %q, want NAME VERSION python SIZE\n%s", row, out)
	}

	os.WriteFile(envPath, []byte("system = [\"jq\"]\npython = [\"six==1.16.0\"]\n"), 0o644)
	out, _, err = run(false, "show")
	if err != nil || !strings.Contains(out, "lock out of date (env/ukernel.env changed: system: + jq); run ukernel env lock") {
		t.Errorf("show after an edit: %v\n%s", err, out)
	}
	out, _, err = run(true, "show")
	var sh struct {
		UpToDate  bool     `json:"up_to_date"`
		OutOfDate []string `json:"out_of_date"`
		Digest    string   `json:"digest"`
	}
	if err != nil || json.Unmarshal([]byte(out), &sh) != nil || sh.UpToDate || len(sh.OutOfDate) != 1 || sh.Digest == "" {
		t.Errorf("show --json after an edit: %v %+v\n%s", err, sh, out)
	}
	os.WriteFile(envPath, []byte("system = [\"jq\"]\npython = [\"six==1.16.0\"\n"), 0o644)
	if _, _, err := run(false, "show"); err == nil || !strings.Contains(err.Error(), "env/ukernel.env:2") {
		t.Errorf("show with a malformed env/ukernel.env: %v", err)
	}

	os.WriteFile(envPath, []byte("system = []\npython = [\"six==1.16.0\"]\n"), 0o644)
	out, stderr, err = run(true, "remove", "SIX")
	if err != nil || !strings.Contains(stderr, "Removed six==1.16.0 from env/ukernel.env") {
		t.Fatalf("remove: %v\n%s", err, stderr)
	}
	decode("remove", out)
	if len(res.Removed) != 1 || res.Lock.Wheels != 0 || !res.LockChanged {
		t.Errorf("remove --json: %+v", res)
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
