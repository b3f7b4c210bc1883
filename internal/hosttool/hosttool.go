// Package hosttool finds a program on PATH and asks it for its version: one row of `doctor`'s
// report, and how a run learns that a backend's binary is there and runs.
package hosttool

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Check is one thing `ukernel doctor` looks at on this host.
type Check struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"` // backend, accelerator, host, tool
	Found   bool   `json:"found"`
	Version string `json:"version,omitempty"`
	Works   bool   `json:"works"`
	Why     string `json:"why,omitempty"`     // why it does not work, or what it is for
	Install string `json:"install,omitempty"` // how to get it when it is missing or broken
}

// Find looks name up on PATH and asks it for its version (first line of output).
func Find(ctx context.Context, name, kind string, versionArgs []string, install string) Check {
	c := Check{Name: name, Kind: kind}
	p, err := exec.LookPath(name)
	if err != nil {
		c.Install = install
		return c
	}
	c.Found, c.Works = true, true
	if versionArgs != nil {
		vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		out, err := exec.CommandContext(vctx, p, versionArgs...).CombinedOutput()
		if err != nil {
			c.Works = false
			c.Why = fmt.Sprintf("%s %s failed: %v", p, strings.Join(versionArgs, " "), err)
			c.Install = install
		}
		c.Version, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	}
	return c
}
