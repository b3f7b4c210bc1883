package guest_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// waitFile waits until the file at path holds want.
func waitFile(ctx context.Context, t *testing.T, path, want string) bool {
	t.Helper()
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return true
		}
		select {
		case <-ctx.Done():
			t.Errorf("%s never showed %q: %v\n%s", path, want, ctx.Err(), b)
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestBootFreezeRestore sends a running guest what a snapshot's save and restore send it: a
// freeze stops the workload, a restore reseeds, sets the clock, renames the guest, writes the
// secret and continues the workload, which sees all of it (/etc's name files soon after).
func TestBootFreezeRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM under QEMU")
	}
	script := `echo ready; i=0
while :; do
	if [ -f /run/secrets/token ]; then
		j=0; while [ "$(cat /etc/hostname)" != clone-7 ] && [ $j -lt 50 ]; do sleep 0.1; j=$((j+1)); done
		echo "secret=$(cat /run/secrets/token) host=$(/bin/busybox hostname) etc=$(cat /etc/hostname) hosts=$(/bin/busybox grep -c clone-7 /etc/hosts) year=$(/bin/busybox date +%Y)"; exit 3
	fi
	i=$((i+1)); echo "tick $i"; sleep 0.1
done`
	g := buildGuest(t, abi.Manifest{Name: "restore", Entry: []string{"/bin/sh", "-c", script}, Secrets: []string{"token"}})
	future := time.Date(2031, 6, 1, 12, 0, 0, 0, time.UTC)
	r := boot(t, g, "", true, func(p runPaths) {
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		defer cancel()
		if !waitFile(ctx, t, p.console, "tick 3") {
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", p.ctlSock)
		if err != nil {
			t.Errorf("connect control socket: %v", err)
			return
		}
		go func() { _, _ = io.Copy(io.Discard, c); c.Close() }() // held until QEMU exits
		send := func(m abi.Control) {
			line, _ := json.Marshal(m)
			if _, err := c.Write(append(line, '\n')); err != nil {
				t.Errorf("send %s: %v", m.Type, err)
			}
		}
		send(abi.Control{Type: abi.ControlFreeze})
		if !waitFile(ctx, t, p.events, `"type":"frozen"`) {
			return
		}
		before, _ := os.ReadFile(p.console)
		time.Sleep(time.Second)
		if after, _ := os.ReadFile(p.console); strings.Count(string(after), "tick") != strings.Count(string(before), "tick") {
			t.Errorf("the workload ran on while frozen:\n%s", after[len(before):])
		}
		entropy := make([]byte, 64)
		rand.Read(entropy)
		send(abi.Control{Type: abi.ControlRestore, Restore: &abi.Restore{Entropy: entropy, TimeNS: future.UnixNano(),
			Hostname: "clone-7", MachineID: "0123456789abcdef0123456789abcdef", Secrets: map[string][]byte{"token": []byte("t0k")}}})
	})
	if !strings.Contains(r.console, "secret=t0k host=clone-7 etc=clone-7 hosts=1 year=2031") {
		t.Errorf("the workload did not see the restore:\n%s", r.console)
	}
	if c := r.code(t, abi.EventPowerOff); c != 3 {
		t.Errorf("poweroff code %d, want 3", c)
	}
	ev := r.find(abi.EventReseeded)
	if len(ev) != 1 || ev[0].Message != "" || ev[0].Values["clock_step_ns"] < int64(4*365*24*time.Hour) {
		t.Errorf("want one reseeded event without problems and a clock step of years: %+v", ev)
	}
	if len(r.find(abi.EventFrozen)) != 1 {
		t.Errorf("want one frozen event:\n%s", r.raw)
	}
}
