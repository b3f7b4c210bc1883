package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// runtimeLine makes a project print its runtime's version and the guest kernel's release on a
// line of its own, beside the preset's greeting: appended to the entry, or for Go a second file
// of package main.
var runtimeLine = map[string]struct{ file, code string }{
	"python": {"main.py", "\nimport os, sys\nprint('runtime: python %d.%d.%d on %s' % (sys.version_info[:3] + (os.uname().release,)), flush=True)\n"},
	"node":   {"main.js", "console.log(`runtime: node ${process.version} on ${require('os').release()}`);\n"},
	"shell":  {"main.sh", "echo \"runtime: sh on $(uname -r)\"\n"},
	"go": {"runtime.go", `package main

import (
	"fmt"
	"os"
	"strings"
)

func init() {
	release, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Println("runtime: go on", strings.TrimSpace(string(release)))
}
`},
}

// The kernels the bases lock: Debian 12's cloud kernel keeps its modules under lib/modules,
// Debian 13's under usr/lib/modules.
const (
	bookwormKernel = `6\.1\.0-\d+-cloud-amd64`
	trixieKernel   = `6\.12\.\d+\+deb13-cloud-amd64`
)

// TestBasesBoot: every base docs/CONFIG.md lists locks, builds, packs and boots, and its entry's
// lines reach run's stdout, showing the base's runtime on the base's own kernel. One boot per
// base, and every language once: debian-12 runs the Go adapter (its shell adapter boots in
// other tests), debian-13 the shell adapter.
func TestBasesBoot(t *testing.T) {
	skipShort(t)
	for _, tc := range []struct {
		base, lang string
		runtime    string // what runtimeLine prints, as a regexp
	}{
		{"python-3.11", "python", `python 3\.11\.\d+ on ` + bookwormKernel},
		{"python-3.13", "python", `python 3\.13\.\d+ on ` + trixieKernel},
		{"node-18", "node", `node v18\.\d+\.\d+ on ` + bookwormKernel},
		{"debian-12", "go", `go on ` + bookwormKernel},
		{"debian-13", "shell", `sh on ` + trixieKernel},
	} {
		t.Run(tc.base, func(t *testing.T) {
			name := "base-" + strings.ReplaceAll(tc.base, ".", "-")
			dir := newProject(t, name, "--lang", tc.lang, "--template", "minimal")
			setBase(t, dir, tc.base)
			rl := runtimeLine[tc.lang]
			appendFile(t, filepath.Join(dir, "src", rl.file), rl.code)

			mustUK(t, dir, 10*time.Minute, "env", "lock")
			mustUK(t, dir, 15*time.Minute, "build")
			mustUK(t, dir, 10*time.Minute, "pack")
			r := uk(t, dir, 10*time.Minute, "run")
			if r.code != 0 || !strings.Contains(r.stdout, "Hello from "+name+"!") {
				t.Fatalf("run: exit %d, want 0 and the greeting on stdout\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
			if !regexp.MustCompile(`(?m)^runtime: ` + tc.runtime + `\r?$`).MatchString(r.stdout) {
				t.Errorf("run's stdout has no line matching %q:\n%s", "runtime: "+tc.runtime, r.stdout)
			}
			insp := mustUK(t, dir, time.Minute, "inspect", "dist/"+name+".img")
			if !strings.Contains(insp.stdout, "Verified: ok") {
				t.Errorf("inspect:\n%s", insp.stdout)
			}
			noQEMULeft(t, dir)
		})
	}
}

// setBase sets the project's base, ukernel.toml's [env] base.
func setBase(t *testing.T, dir, base string) {
	t.Helper()
	p := filepath.Join(dir, "ukernel.toml")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^base = ['"][^'"\n]*['"]`)
	if !re.Match(data) {
		t.Fatalf("%s names no base:\n%s", p, data)
	}
	writeFile(t, p, re.ReplaceAllString(string(data), `base = "`+base+`"`))
}

// appendFile appends content to the file at path, creating it if need be.
func appendFile(t *testing.T, path, content string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
