package project

import (
	"errors"
	"strings"
	"testing"
)

const rolesConfig = goodConfig + `
[roles.api]
services = ["app"]
[roles.api.run]
vcpu = 4
publish = ["9090:8080"]
[roles.api.run.env]
MODE = "api"

[roles.worker]
entry = "src/worker.py"
services = []
[roles.worker.run]
memory_mb = 512
net = "none"
`

func TestRoles(t *testing.T) {
	c, err := Parse("ukernel.toml", []byte(rolesConfig))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.RoleNames(), ","); got != "api,worker" {
		t.Fatalf("roles: %s", got)
	}
	api, err := c.WithRole("api")
	if err != nil {
		t.Fatal(err)
	}
	if api.SelectedRole != "api" || api.Project.Entry != "src/main.py" || len(api.Services) != 1 || api.Services["app"].Command == nil ||
		api.Run.VCPU != 4 || api.Run.MemoryMB != DefaultMemoryMB || api.Run.Publish[0] != "9090:8080" || api.Run.Env["MODE"] != "api" || len(api.Health) != 1 {
		t.Fatalf("api: %+v", api)
	}
	w, err := c.WithRole("worker")
	if err != nil {
		t.Fatal(err)
	}
	if w.Project.Entry != "src/worker.py" || len(w.Services) != 0 || len(w.Health) != 0 || w.Run.Net != "none" || w.Run.MemoryMB != 512 || w.Run.VCPU != 2 {
		t.Fatalf("worker: %+v", w)
	}
	// The project itself is untouched.
	if c.SelectedRole != "" || len(c.Services) != 2 || c.Run.VCPU != 2 || c.Run.Env != nil {
		t.Fatalf("WithRole changed the project's config: %+v", c)
	}
	if same, _ := c.WithRole(""); same != c {
		t.Fatal("the implicit role is not the config itself")
	}
	if _, err := c.WithRole("web"); err == nil || !strings.Contains(err.Error(), "its roles: api, worker") {
		t.Fatalf("unknown role: %v", err)
	}
	plain, _ := Parse("ukernel.toml", []byte(goodConfig))
	if _, err := plain.WithRole("api"); err == nil || !strings.Contains(err.Error(), "defines no roles") {
		t.Fatalf("no roles: %v", err)
	}
	// A round trip through Marshal keeps the roles.
	data, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if c2, err := Parse("ukernel.toml", data); err != nil || *c2.Roles["worker"].Entry != "src/worker.py" {
		t.Fatalf("round trip: %v\n%s", err, data)
	}
}

func TestRoleErrors(t *testing.T) {
	base := strings.Count(goodConfig, "\n") + 1 // the line of [roles.api] in rolesConfig
	for _, tt := range []struct {
		name, edit, want string
		line             int
	}{
		{"unknown service", strings.Replace(rolesConfig, `services = ["app"]`, `services = ["ap"]`, 1), `roles.api.services: no service "ap"; a role runs services of [services.NAME] (declared: app, side)`, base + 2},
		{"twice", strings.Replace(rolesConfig, `services = ["app"]`, `services = ["app", "app"]`, 1), `service "app" is listed twice`, base + 2},
		{"vcpu", strings.Replace(rolesConfig, "vcpu = 4", "vcpu = 40", 1), "roles.api.run.vcpu: 40 is out of range; expected 1-32", base + 4},
		{"net", strings.Replace(rolesConfig, `net = "none"`, `net = "bridge"`, 1), "roles.worker.run.net:", base + 14},
		{"entry", strings.Replace(rolesConfig, `entry = "src/worker.py"`, `entry = "/bin/sh"`, 1), "roles.worker.entry:", base + 10},
		{"nothing", strings.Replace(rolesConfig, `entry = "src/worker.py"`, `entry = ""`, 1), `role "worker" runs nothing`, base + 9},
		{"name", strings.Replace(rolesConfig, "roles.worker", "roles.Worker_1", -1), `invalid role name "Worker_1"`, base + 9},
		{"env", strings.Replace(rolesConfig, `MODE = "api"`, `UKERNEL_ROLE = "x"`, 1), "UKERNEL_ROLE is set by ukernel", base + 6},
		{"unknown key", strings.Replace(rolesConfig, "memory_mb = 512", "memory_md = 512", 1), "roles.worker.run.memory_md: unknown key; did you mean memory_mb?", base + 13},
		{"type", strings.Replace(rolesConfig, `services = ["app"]`, `services = "app"`, 1), `roles.api.services: expected an array of strings, got a string ("app")`, base + 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("ukernel.toml", []byte(tt.edit))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.Line != tt.line {
				t.Errorf("line %d, want %d (%v)", pe.Line, tt.line, err)
			}
		})
	}
}
