package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func testUnitSpec(exe string, user bool) UnitSpec {
	a := &Agent{Exe: exe, dirs: hostDirs{State: "/var/lib/x y", Run: "/run/ukernel-deploy"}}
	app := &App{Name: "web", Dir: "/var/lib/x y/apps/web"}
	rev := &Revision{ID: "20261203T101500000Z-0123456789ab", Digest: strings.Repeat("ab", 32), Publish: []string{"8080:80"},
		DataMB: 64, EnvNames: []string{"PORT"}, Secrets: []string{"db_password"}}
	return UnitSpec{Name: "web", Exe: exe, RunArgs: a.runArgs(app, rev), User: user,
		Env: map[string]string{"HOME": "/home/deploy", "XDG_RUNTIME_DIR": "/run/user/1000 100%$x"}}
}

// TestUnitFile: the exact unit deploy installs, for the system manager (root) and a user's.
// Every word is quoted for systemd (spaces, and % and $, which systemd would expand, doubled).
func TestUnitFile(t *testing.T) {
	d := strings.Repeat("ab", 32)
	run := `"/opt/uk" "-C" "/var/lib/x y/apps/web" "run" "--name" "web" "--image" "/var/lib/x y/images/` + d + `.img" "--data-mb" "64" "--publish" "8080:80" "--env-file" "/run/ukernel-deploy/web/20261203T101500000Z-0123456789ab/env" "--secret" "db_password=@/run/ukernel-deploy/web/20261203T101500000Z-0123456789ab/secrets/db_password"`
	service := `
[Service]
Type=simple
Environment="HOME=/home/deploy"
Environment="XDG_RUNTIME_DIR=/run/user/1000 100%%$x"
ExecStart=` + run + `
ExecStop="/opt/uk" "stop" "--timeout" "10s" "web"
Restart=on-failure
RestartSec=2s
TimeoutStopSec=40s
KillMode=mixed
`
	head := "# Written by ukernel deploy; deploy again rather than editing it.\n[Unit]\nDescription=ukernel guest web\n"
	if got, want := UnitFile(testUnitSpec("/opt/uk", false)), head+"After=network-online.target\nWants=network-online.target\n"+service+"\n[Install]\nWantedBy=multi-user.target\n"; got != want {
		t.Errorf("system unit:\n%s\nwant:\n%s", got, want)
	}
	if got, want := UnitFile(testUnitSpec("/opt/uk", true)), head+service+"\n[Install]\nWantedBy=default.target\n"; got != want {
		t.Errorf("user unit:\n%s\nwant:\n%s", got, want)
	}
	// Variables are substituted in the arguments only: the executable's $ stays single.
	if got, want := unitCommand([]string{"/opt/a$b %c", "d$e %f"}), `"/opt/a$b %%c" "d$$e %%f"`; got != want {
		t.Errorf("unitCommand = %s; want %s", got, want)
	}
}

// TestSystemdCommands: the manager deploy talks to, and the exact systemctl command lines it
// runs there to start and stop a deployment.
func TestSystemdCommands(t *testing.T) {
	for _, c := range []struct {
		name            string
		uid             int
		runtime, config string
		present         []string
		want            *systemd
	}{
		{"not systemd", 0, "", "", nil, nil},
		{"root", 0, "/run/user/0", "", []string{"/run/systemd/system", "/run/systemd/private", "/run/user/0/systemd/private"}, &systemd{unitDir: "/etc/systemd/system"}},
		{"root, no runtime dir", 0, "", "", []string{"/run/systemd/system"}, &systemd{unitDir: "/etc/systemd/system"}},
		{"root with only its user manager", 0, "/run/user/0", "", []string{"/run/systemd/system", "/run/user/0/systemd/private"}, &systemd{user: true, unitDir: "/root/.config/systemd/user"}},
		{"a user", 1000, "/run/user/1000", "", []string{"/run/systemd/system", "/run/systemd/private"}, &systemd{user: true, unitDir: "/root/.config/systemd/user"}},
		{"a user's XDG_CONFIG_HOME", 1000, "", "/cfg", []string{"/run/systemd/system"}, &systemd{user: true, unitDir: "/cfg/systemd/user"}},
	} {
		got := pickSystemd(c.uid, "/root", c.config, c.runtime, func(p string) bool { return slices.Contains(c.present, p) })
		if (got == nil) != (c.want == nil) || got != nil && *got != *c.want {
			t.Errorf("%s: %+v; want %+v", c.name, got, c.want)
		}
	}
	unit := UnitName("web")
	sys, user := &systemd{unitDir: "/etc/systemd/system"}, &systemd{user: true}
	for _, c := range []struct {
		got, want [][]string
	}{
		{sys.startCommands(unit), [][]string{{"systemctl", "daemon-reload"}, {"systemctl", "enable", "ukernel-web.service"}, {"systemctl", "restart", "ukernel-web.service"}}},
		{user.startCommands(unit), [][]string{{"systemctl", "--user", "daemon-reload"}, {"systemctl", "--user", "enable", "ukernel-web.service"}, {"systemctl", "--user", "restart", "ukernel-web.service"}}},
		{[][]string{sys.argv("stop", unit), user.argv("stop", unit)}, [][]string{{"systemctl", "stop", "ukernel-web.service"}, {"systemctl", "--user", "stop", "ukernel-web.service"}}},
	} {
		if !slices.EqualFunc(c.got, c.want, slices.Equal) {
			t.Errorf("systemctl commands: %q; want %q", c.got, c.want)
		}
	}
}

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
	for _, user := range []bool{false, true} {
		if out, err := verify(testUnitSpec(exe, user)); err != nil {
			t.Errorf("systemd-analyze verify (user %v): %v: %s\n%s", user, err, out, UnitFile(testUnitSpec(exe, user)))
		}
	}
	if out, err := verify(UnitSpec{Name: "gone", Exe: "/nonexistent/ukernel", RunArgs: []string{"run"}}); err == nil {
		t.Errorf("systemd-analyze verify accepted a unit whose binary does not exist: %s", out)
	}
}
