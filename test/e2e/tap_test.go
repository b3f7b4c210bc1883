package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestRunTapNetwork: with --net tap:IFACE the guest takes the address after the host's on the
// tap device and answers the host there directly.
func TestRunTapNetwork(t *testing.T) {
	skipShort(t)
	if os.Geteuid() != 0 {
		t.Skip("creating a tap device needs root (CI runs as root)")
	}
	const tap, host, guest = "uke2etap0", "172.31.251.1/24", "172.31.251.2"
	for _, args := range [][]string{
		{"tuntap", "add", "dev", tap, "mode", "tap"},
		{"addr", "add", host, "dev", tap},
		{"link", "set", tap, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	defer exec.Command("ip", "link", "del", tap).Run()

	dir := newProject(t, "tap-web", "--lang", "python", "--template", "http")
	r := mustUK(t, dir, 15*time.Minute, "run", "-d", "--net", "tap:"+tap)
	if !strings.Contains(r.stderr, "Guest address: "+guest+"/24 on "+tap) {
		t.Errorf("run did not say the guest's address:\n%s", r.stderr)
	}
	defer func() {
		uk(t, dir, 2*time.Minute, "stop", "tap-web")
		noQEMULeft(t, dir)
	}()
	client := &http.Client{Timeout: 3 * time.Second}
	waitFor(t, "HTTP 200 from the guest on the tap network", 2*time.Minute, func() (bool, string) {
		resp, err := client.Get(fmt.Sprintf("http://%s:8080/", guest))
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
}
