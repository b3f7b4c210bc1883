package build

import (
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
