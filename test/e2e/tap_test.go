package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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

// TestRunTapWithoutAddress: on a tap device without a host address the guest gets no address,
// but its link is up for the workload to configure.
func TestRunTapWithoutAddress(t *testing.T) {
	skipShort(t)
	if os.Geteuid() != 0 {
		t.Skip("creating a tap device needs root (CI runs as root)")
	}
	const tap = "uke2etap1"
	for _, args := range [][]string{{"tuntap", "add", "dev", tap, "mode", "tap"}, {"link", "set", tap, "up"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	defer exec.Command("ip", "link", "del", tap).Run()

	dir := newProject(t, "tap-bare", "--lang", "shell", "--template", "minimal")
	entry := "#!/bin/sh\necho \"eth0 flags $(cat /sys/class/net/eth0/flags)\"\n"
	writeFile(t, filepath.Join(dir, "src", "main.sh"), entry)
	r := mustUK(t, dir, 15*time.Minute, "run", "--net", "tap:"+tap)
	if !strings.Contains(r.stderr, "Guest address: none") {
		t.Errorf("run did not say the guest has no address:\n%s", r.stderr)
	}
	m := regexp.MustCompile(`eth0 flags 0x([0-9a-f]+)`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("the guest has no eth0:\n%s\n%s", r.stdout, r.stderr)
	}
	if flags, _ := strconv.ParseUint(m[1], 16, 32); flags&1 == 0 {
		t.Errorf("eth0 is down (flags 0x%s)", m[1])
	}
	noQEMULeft(t, dir)
}
