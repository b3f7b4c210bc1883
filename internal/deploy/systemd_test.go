package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnitFileVerifies checks the unit deploy installs with systemd's own checker, where
// systemd is installed: a unit for a missing binary fails it, so the check is real.
func TestUnitFileVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	verify := func(spec UnitSpec) (string, error) {
		p := filepath.Join(t.TempDir(), UnitName(spec.Name))
		if err := os.WriteFile(p, []byte(UnitFile(spec)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", p).CombinedOutput()
		return string(out), err
	}
	a := &Agent{Exe: exe, dirs: hostDirs{State: "/var/lib/x y", Run: "/run/ukernel-deploy"}}
	app := &App{Name: "web", Dir: "/var/lib/x y/apps/web"}
	rev := &Revision{ID: "20261203T101500000Z-0123456789ab", Digest: strings.Repeat("ab", 32), Publish: []string{"8080:80"},
		EnvNames: []string{"PORT"}, Secrets: []string{"db_password"}}
	for _, user := range []bool{false, true} {
		spec := UnitSpec{Name: "web", Exe: exe, RunArgs: a.runArgs(app, rev), User: user,
			Env: map[string]string{"HOME": "/home/deploy", "XDG_RUNTIME_DIR": "/run/user/1000 100%$x"}}
		unit := UnitFile(spec)
		if out, err := verify(spec); err != nil {
			t.Errorf("systemd-analyze verify (user %v): %v: %s\n%s", user, err, out, unit)
		}
		for _, want := range []string{
			`ExecStart="` + exe + `" "-C" "/var/lib/x y/apps/web" "run" "--name" "web" "--image" "/var/lib/x y/images/` + rev.Digest + `.img" "--publish" "8080:80" "--env-file" "/run/ukernel-deploy/web/` + rev.ID + `/env" "--secret" "db_password=@/run/ukernel-deploy/web/` + rev.ID + `/secrets/db_password"`,
			`ExecStop="` + exe + `" "stop" "--timeout" "10s" "web"`,
			"Restart=on-failure",
			`Environment="XDG_RUNTIME_DIR=/run/user/1000 100%%$$x"`,
		} {
			if !strings.Contains(unit, want+"\n") {
				t.Errorf("unit lacks %s:\n%s", want, unit)
			}
		}
		if user != strings.Contains(unit, "WantedBy=default.target") {
			t.Errorf("user %v: wrong target:\n%s", user, unit)
		}
	}
	if out, err := verify(UnitSpec{Name: "gone", Exe: "/nonexistent/ukernel", RunArgs: []string{"run"}}); err == nil {
		t.Errorf("systemd-analyze verify accepted a unit whose binary does not exist: %s", out)
	}
}
