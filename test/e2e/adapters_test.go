package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestAdaptersBoot: the minimal preset of every language boots and prints its greeting: the
// shell adapter (dash and coreutils from the lock), the go adapter (a static binary built with
// the host's toolchain) and the node adapter (Debian's nodejs from the lock).
func TestAdaptersBoot(t *testing.T) {
	skipShort(t)
	for _, lang := range []string{"shell", "go", "node"} {
		t.Run(lang, func(t *testing.T) {
			name := "hello-" + lang
			dir := newProject(t, name, "--lang", lang, "--template", "minimal")
			r := uk(t, dir, 15*time.Minute, "run")
			if r.code != 0 || !strings.Contains(r.stdout, "Hello from "+name) {
				t.Fatalf("run: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
			insp := mustUK(t, dir, time.Minute, "inspect", "dist/"+name+".img")
			if !strings.Contains(insp.stdout, "Verified: ok") {
				t.Errorf("inspect:\n%s", insp.stdout)
			}
			noQEMULeft(t, dir)
		})
	}
}
