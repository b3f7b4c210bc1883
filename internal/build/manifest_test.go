package build

import (
	"errors"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/project"
)

// A role's image records the role, gives it to the workload as UKERNEL_ROLE, and runs only the
// role's entry and services with its run settings.
func TestManifestOfARole(t *testing.T) {
	cfg, err := project.Parse(project.ConfigFile, []byte(`[project]
name = "app"
language = "shell"
entry = "src/main.sh"
[env]
base = "debian-12"
[services.web]
command = "/bin/sh /app/web.sh"
[roles.worker]
entry = "src/worker.sh"
services = []
[roles.worker.run]
vcpu = 2
[roles.worker.run.env]
QUEUE = "jobs"
`))
	if err != nil {
		t.Fatal(err)
	}
	base, _ := project.LookupBase("debian-12")
	res := &Result{Users: []abi.User{AppUser}, RootDir: t.TempDir()}
	plain, err := Manifest(cfg, base, res, "sha256:x", 1)
	if err != nil {
		t.Fatal(err)
	}
	if plain.Role != "" || plain.Env[abi.RoleEnv] != "" || len(plain.Services) != 1 {
		t.Fatalf("no role: %+v", plain)
	}
	w, err := cfg.WithRole("worker")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Manifest(w, base, res, "sha256:x", 1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Role != "worker" || m.Env[abi.RoleEnv] != "worker" || m.Env["QUEUE"] != "jobs" || len(m.Services) != 0 ||
		m.Entry[1] != "/app/worker.sh" || m.Run.VCPU != 2 {
		t.Fatalf("role worker: %+v", m)
	}
}

// What only the built tree can tell (a program or a user it lacks) is a problem at its line of
// ukernel.toml, as every other problem of the file is (and --json gives file, line and key).
func TestManifestProblemsHaveLines(t *testing.T) {
	base, _ := project.LookupBase("debian-12")
	res := &Result{Users: []abi.User{AppUser}, RootDir: t.TempDir()}
	head := "[project]\nname = \"app\"\nlanguage = \"shell\"\nentry = \"src/main.sh\"\n[env]\nbase = \"debian-12\"\n"
	for _, c := range []struct {
		tail, key string
		line      int
	}{
		{"[services.db]\ncommand = \"nosuchprog --flag\"\n", "services.db.command", 8},
		{"[services.db]\ncommand = \"/bin/db\"\nuser = \"postgres\"\n", "services.db.user", 9},
		{"[services.db]\ncommand = \"/bin/db\"\n[health.db]\ncmd = \"pg_isready\"\n", "health.db.cmd", 10},
		{"", "project.user", 0},
	} {
		src := head + c.tail
		if c.key == "project.user" {
			src = strings.Replace(src, "entry =", "user = \"nobody\"\nentry =", 1)
			c.line = 4
		}
		cfg, err := project.Parse(project.ConfigFile, []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		_, err = Manifest(cfg, base, res, "sha256:x", 1)
		var pe *project.Error
		if !errors.As(err, &pe) || pe.Key != c.key || pe.Line != c.line || pe.File != project.ConfigFile {
			t.Errorf("%s: %v (%#v), want a problem at %s:%d", c.key, err, pe, project.ConfigFile, c.line)
		}
	}
}
