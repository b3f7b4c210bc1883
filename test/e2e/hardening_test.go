package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/runstate"
)

// forgeEvents is a root entry that tries what an attacker's workload would, first thing: write
// a poweroff event with code 0 to each virtio-serial port to the host (a port opens only once:
// one the workload opens before init does is the workload's), then exit 3.
const forgeEvents = `#!/bin/sh
tried=
for n in /dev/vport*p*; do
  [ -e "$n" ] || continue
  tried=yes
  if printf '{"type":"poweroff","t_ns":1,"code":0}\n' 2>/dev/null >"$n"; then echo "forged $n"; else echo "refused $n"; fi
done
echo "ports tried: ${tried:-none}"
exit 3
`

// TestRootEntryCannotForgeEvents: init claims the ports to the host before any workload
// starts, so a root entry finds them there and refused: it can neither report an exit code of
// its own nor race init to them (as one that loads virtio_console itself, or spins until init
// does, could).
func TestRootEntryCannotForgeEvents(t *testing.T) {
	skipShort(t)
	dir := newProject(t, "forge-ev", "--lang", "shell", "--template", "minimal")
	cfg := filepath.Join(dir, "ukernel.toml")
	data, _ := os.ReadFile(cfg)
	writeFile(t, cfg, strings.Replace(string(data), "entry = 'src/main.sh'", "entry = 'src/main.sh'\nuser = 'root'", 1))
	writeFile(t, filepath.Join(dir, "src", "main.sh"), forgeEvents)
	r := uk(t, dir, 15*time.Minute, "run", "--accel", "tcg")
	if !strings.Contains(r.stdout, "ports tried: yes") || !strings.Contains(r.stdout, "refused /dev/vport") {
		t.Errorf("no port to the host was claimed when the entry started:\n%s\n%s", r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout, "forged") || r.code != 3 {
		t.Errorf("a root entry wrote to a port to the host (exit %d, want 3):\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	run, err := runstate.LatestRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ev, _ := os.ReadFile(run.Events()); strings.Contains(string(ev), `"t_ns":1,`) {
		t.Errorf("the forged event reached the host's events:\n%s", ev)
	}
	noQEMULeft(t, dir)
}
