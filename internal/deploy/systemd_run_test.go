package deploy

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/testenv"
)

// TestUnitUnderSystemd runs the unit startGuest installs under a real systemd user manager and
// reads back what systemd gave the program it names: the exact run command line (paths with
// spaces, % and $ in them), the environment, a restart after a failed start (Restart=
// on-failure), and the stop command stopGuest's `systemctl stop` runs. The program is a
// script that records them (the deploy e2e runs the real ukernel and a guest under it).
func TestUnitUnderSystemd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts systemd")
	}
	base := t.TempDir()
	home, rt := filepath.Join(base, "home"), filepath.Join(base, "rt")
	sd := testenv.StartUserSystemd(t, home, rt)
	t.Setenv("HOME", home)
	t.Setenv("XDG_RUNTIME_DIR", rt)
	t.Setenv("XDG_STATE_HOME", filepath.Join(base, "state 100%$HOME"))
	rec := filepath.Join(base, "rec")
	bin := filepath.Join(base, "bin 50% $x")
	for _, d := range []string{rec, bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The first start fails; the next records its arguments and runs until stopped.
	exe := filepath.Join(bin, "ukernel")
	script := `#!/bin/sh
R='` + rec + `'
if [ "$1" = stop ]; then printf '%s\n' "$@" > "$R/stop"; kill "$(cat "$R/pid")"; exit 0; fi
echo x >> "$R/starts"
[ "$(wc -l < "$R/starts")" -ge 2 ] || exit 1
env > "$R/env"
echo $$ > "$R/pid"
printf '%s\n' "$@" > "$R/args.tmp"; mv "$R/args.tmp" "$R/args"
exec sleep 300
`
	if err := os.WriteFile(exe, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	a := &Agent{Exe: exe, dirs: hostDirs{State: filepath.Join(base, "st ate"), Run: filepath.Join(rt, "ukernel-deploy")},
		systemd: pickSystemd(0, home, "", rt, func(p string) bool { return p == "/run/systemd/system" || p == filepath.Join(rt, "systemd", "private") })}
	if a.systemd == nil || !a.systemd.user {
		t.Fatalf("root with only its user manager: %+v", a.systemd)
	}
	rev := &Revision{ID: "r1", Digest: strings.Repeat("ab", 32), VCPU: 2, DataMB: 16, Publish: []string{"8080:80"},
		EnvNames: []string{"A"}, Secrets: []string{"tok"}}
	app := &App{Name: "web", Supervisor: SupervisorSystemd, Dir: filepath.Join(base, "apps 100% $y", "web"), Current: rev}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := a.startGuest(ctx, app); err != nil {
		t.Fatal(err)
	}
	var args []byte
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if args, _ = os.ReadFile(filepath.Join(rec, "args")); len(args) > 0 {
			break
		}
		if time.Now().After(deadline) {
			out, _ := sd.Ctl("status", UnitName("web"))
			t.Fatalf("the unit's program did not run again after its failed start within a minute:\n%s", out)
		}
	}
	if got, want := strings.Split(strings.TrimSuffix(string(args), "\n"), "\n"), a.runArgs(app, rev); !slices.Equal(got, want) {
		t.Errorf("the command line systemd ran:\n got %q\nwant %q", got, want)
	}
	env, _ := os.ReadFile(filepath.Join(rec, "env"))
	for _, kv := range []string{"HOME=" + home, "XDG_RUNTIME_DIR=" + rt, "XDG_STATE_HOME=" + filepath.Join(base, "state 100%$HOME")} {
		if !slices.Contains(strings.Split(string(env), "\n"), kv) {
			t.Errorf("the unit's environment lacks %s:\n%s", kv, env)
		}
	}
	if err := a.stopGuest(ctx, app); err != nil {
		t.Fatal(err)
	}
	if stop, _ := os.ReadFile(filepath.Join(rec, "stop")); string(stop) != "stop\n--timeout\n10s\nweb\n" {
		t.Errorf("ExecStop ran with %q", stop)
	}
	if out, _ := sd.Ctl("is-active", UnitName("web")); out != "inactive\n" {
		t.Errorf("after stopGuest the unit is %q", out)
	}
}
