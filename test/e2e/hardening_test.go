package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/runlog"
)

// forgeEvents is an entry that tries what an attacker's workload would: write a poweroff event
// with code 0 to each virtio-serial port to the host (events, control, output and exec ports: a
// port opens only once, and one the workload opens before init does is the workload's), and an
// output frame in the db service's name to the second UART (the output channel of a workload
// without a root process), then exit 3. With WAIT set it first waits up to
// that many seconds for the ports to appear (init loads their module once the workload's start
// is over, unless a root process must be kept from them).
const forgeEvents = `#!/bin/sh
i=0
while [ "$i" -lt "${WAIT:-0}" ] && ! ls /dev/vport*p* >/dev/null 2>&1; do sleep 1; i=$((i+1)); done
tried=
for n in /dev/vport*p*; do
  [ -e "$n" ] || continue
  tried=yes
  if printf '{"type":"poweroff","t_ns":1,"code":0}\n' 2>/dev/null >"$n"; then echo "forged $n"; else echo "refused $n"; fi
done
echo "ports tried: ${tried:-none}"
printf 'O\001\002\000\015dbforged-frame\n' 2>/dev/null >/dev/ttyS1 && echo "wrote ttyS1" || echo "refused ttyS1"
exit 3
`

// TestEntryCannotForgeEvents: no workload process can write to the ports to the host. A root
// entry finds them claimed by init before it started (it cannot race init to them, as one that
// loads virtio_console itself could); any other user is refused by the nodes' mode, so there
// init loads the ports after the workload's start, off the cold start's path.
func TestEntryCannotForgeEvents(t *testing.T) {
	skipShort(t)
	for _, tc := range []struct{ user, wait string }{
		{"root", "0"},
		{"app", "20"},
	} {
		t.Run(tc.user, func(t *testing.T) {
			dir := newProject(t, "forge-ev-"+tc.user, "--lang", "shell", "--template", "minimal")
			cfg := filepath.Join(dir, "ukernel.toml")
			data, _ := os.ReadFile(cfg)
			writeFile(t, cfg, strings.Replace(string(data), "entry = 'src/main.sh'", "entry = 'src/main.sh'\nuser = '"+tc.user+"'", 1))
			writeFile(t, filepath.Join(dir, "src", "main.sh"), forgeEvents)
			r := uk(t, dir, 15*time.Minute, "run", "--accel", "tcg", "-e", "WAIT="+tc.wait)
			if !strings.Contains(r.stdout, "ports tried: yes") || !strings.Contains(r.stdout, "refused /dev/vport") {
				t.Errorf("the entry found no port to the host, or was not refused:\n%s\n%s", r.stdout, r.stderr)
			}
			if strings.Contains(r.stdout+r.stderr, "forged-frame") {
				t.Errorf("the %s entry's forged output frame reached the host as a service's output:\n%s\n%s", tc.user, r.stdout, r.stderr)
			}
			if tc.user == "root" && strings.Count(r.stdout, "refused /dev/vport") < 7 {
				t.Errorf("the root entry was not refused on each of the 7 ports (events, control, output, 4 exec):\n%s", r.stdout)
			}
			if strings.Contains(r.stdout, "forged /dev") || r.code != 3 {
				t.Errorf("the %s entry wrote to a port to the host (exit %d, want 3):\n%s\n%s", tc.user, r.code, r.stdout, r.stderr)
			}
			run, err := runlog.LatestRun(dir)
			if err != nil {
				t.Fatal(err)
			}
			if ev, _ := os.ReadFile(run.Events()); strings.Contains(string(ev), `"t_ns":1,`) {
				t.Errorf("the forged event reached the host's events:\n%s", ev)
			}
			noQEMULeft(t, dir)
		})
	}
}
