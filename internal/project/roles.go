package project

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// Role is a [roles.NAME] table: one way to run the project, so that one codebase gives several
// images (an API, a worker). Unset fields keep the project's own settings.
type Role struct {
	// Entry replaces [project] entry; "" runs no entry (the role's services only).
	Entry *string `toml:"entry,omitempty"`
	// Services names the [services] the role runs; unset: all of them.
	Services *[]string `toml:"services,omitempty"`
	Run      RoleRun   `toml:"run,omitempty"`
}

// RoleRun overrides [run]; Env is merged over [run.env].
type RoleRun struct {
	VCPU     *int              `toml:"vcpu,omitempty"`
	MemoryMB *int              `toml:"memory_mb,omitempty"`
	Net      *string           `toml:"net,omitempty"`
	Publish  *[]string         `toml:"publish,omitempty"`
	Env      map[string]string `toml:"env,omitempty"`
}

// RoleNames lists the roles ukernel.toml defines, sorted; none means the project has one
// implicit role, its own settings.
func (c *Config) RoleNames() []string {
	return slices.Sorted(maps.Keys(c.Roles))
}

// WithRole returns a copy of the config as role name runs it: its entry, services and run
// settings applied, health checks of services it does not run left out, and SelectedRole set
// (the image records it and the workload sees it as UKERNEL_ROLE). An empty name returns the
// config as it is.
func (c *Config) WithRole(name string) (*Config, error) {
	if name == "" {
		return c, nil
	}
	r, ok := c.Roles[name]
	if !ok {
		if len(c.Roles) == 0 {
			return nil, fmt.Errorf("role %q: %s defines no roles; add a [roles.%s] table, or leave the role out", name, c.fileName(), name)
		}
		return nil, fmt.Errorf("role %q is not defined in %s; its roles: %s", name, c.fileName(), strings.Join(c.RoleNames(), ", "))
	}
	out := *c
	out.SelectedRole = name
	if r.Entry != nil {
		out.Project.Entry = *r.Entry
	}
	if r.Services != nil {
		out.Services = map[string]Service{}
		for _, s := range *r.Services {
			out.Services[s] = c.Services[s]
		}
	}
	if r.Run.VCPU != nil {
		out.Run.VCPU = *r.Run.VCPU
	}
	if r.Run.MemoryMB != nil {
		out.Run.MemoryMB = *r.Run.MemoryMB
	}
	if r.Run.Net != nil {
		out.Run.Net = *r.Run.Net
	}
	if r.Run.Publish != nil {
		out.Run.Publish = slices.Clone(*r.Run.Publish)
	}
	if len(r.Run.Env) > 0 {
		out.Run.Env = maps.Clone(c.Run.Env)
		if out.Run.Env == nil {
			out.Run.Env = map[string]string{}
		}
		maps.Copy(out.Run.Env, r.Run.Env)
	}
	out.Health = map[string]Health{}
	for n, h := range c.Health {
		if _, ok := out.Services[n]; ok || (n == EntryService && out.Project.Entry != "") {
			out.Health[n] = h
		}
	}
	return &out, nil
}

func (c *Config) fileName() string {
	if c.file == "" {
		return ConfigFile
	}
	return c.file
}

// validateRoles checks every [roles.NAME] table; add reports a problem at a key.
func (c *Config) validateRoles(add func(key, format string, args ...any)) {
	for _, name := range c.RoleNames() {
		r := c.Roles[name]
		key := "roles." + name
		if !nameRe.MatchString(name) {
			add(key, "invalid role name %q: use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit (it names the role's template, NAME-%s)", name, name)
		}
		entry := c.Project.Entry
		if r.Entry != nil {
			entry = *r.Entry
			if entry != "" {
				if err := ValidateEntry(entry); err != nil {
					add(key+".entry", "%v", err)
				}
			}
		}
		services := len(c.Services)
		if r.Services != nil {
			services = len(*r.Services)
			seen := map[string]bool{}
			for _, s := range *r.Services {
				if _, ok := c.Services[s]; !ok {
					known := "none are declared"
					if len(c.Services) > 0 {
						known = "declared: " + strings.Join(slices.Sorted(maps.Keys(c.Services)), ", ")
					}
					add(key+".services", "no service %q; a role runs services of [services.NAME] (%s)", s, known)
				}
				if seen[s] {
					add(key+".services", "service %q is listed twice", s)
				}
				seen[s] = true
			}
		}
		if entry == "" && services == 0 {
			add(key, "role %q runs nothing: give it an entry = \"src/...\" or services = [...]", name)
		}
		if v := r.Run.VCPU; v != nil {
			if err := CheckVCPU(*v); err != nil {
				add(key+".run.vcpu", "%v", err)
			}
		}
		if v := r.Run.MemoryMB; v != nil {
			if err := CheckMemoryMB(*v); err != nil {
				add(key+".run.memory_mb", "%v", err)
			}
		}
		if v := r.Run.Net; v != nil {
			if _, err := abi.ParseNet(*v); err != nil {
				add(key+".run.net", "%v", err)
			}
		}
		if v := r.Run.Publish; v != nil {
			for _, p := range *v {
				if _, _, err := ParsePublish(p); err != nil {
					add(key+".run.publish", "%v", err)
				}
			}
		}
		for k := range r.Run.Env {
			if !envKeyRe.MatchString(k) {
				add(key+".run.env", "%q is not a valid environment variable name", k)
			} else if k == abi.RoleEnv {
				add(key+".run.env", "%s is set by ukernel to the role's name", k)
			}
		}
	}
}
