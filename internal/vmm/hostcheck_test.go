package vmm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A QEMU or Firecracker that is on PATH but does not run is reported as not working, and so is
// TCG, which is QEMU.
func TestCheckHostBrokenBinaries(t *testing.T) {
	bin := t.TempDir()
	for _, name := range []string{QEMUBinary, FirecrackerBinary} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\nexit 127\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin)
	r, err := CheckHost(context.Background(), HostOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]Check{}
	for _, c := range r.Checks {
		checks[c.Name] = c
	}
	for _, name := range []string{QEMUBinary, FirecrackerBinary, "tcg"} {
		c := checks[name]
		if !c.Found || c.Works || c.Why == "" || c.Install == "" {
			t.Errorf("%s: %+v; want found, not working, with why and a fix", name, c)
		}
	}
	if checks["kvm"].Works {
		t.Errorf("kvm works without a working QEMU to probe it: %+v", checks["kvm"])
	}
	if r.Backend.Backend != BackendQEMU || r.Backend.Reason != "firecracker does not run" && !strings.Contains(r.Backend.Reason, "KVM") {
		t.Errorf("backend choice %v", r.Backend)
	}
}

// The doctor's choice follows run's: Firecracker only for a network it has.
func TestRunChoiceNetwork(t *testing.T) {
	kvm := Check{Name: "kvm", Found: true, Works: true}
	for _, tc := range []struct{ net, backend string }{
		{"user", BackendQEMU},
		{"none", BackendFirecracker},
		{"tap", BackendFirecracker},
	} {
		b, a := runChoice(true, true, kvm, tc.net)
		if b.Backend != tc.backend || a.Accel != AccelKVM {
			t.Errorf("net %s: %v, %v; want %s with kvm", tc.net, b, a, tc.backend)
		}
		if tc.net == "user" && !strings.Contains(b.Reason, "user-mode") {
			t.Errorf("net user: reason %q does not say why not firecracker", b.Reason)
		}
	}
	b, a := runChoice(true, true, Check{Why: "no /dev/kvm"}, "none")
	if b.Backend != BackendQEMU || a.Accel != AccelTCG || !strings.Contains(a.Reason, "no /dev/kvm") || !strings.Contains(b.Reason, "needs KVM") {
		t.Errorf("without kvm: %v, %v", b, a)
	}
	if b, _ := runChoice(true, false, kvm, "none"); b.Backend != BackendQEMU || b.Reason != "firecracker does not run" {
		t.Errorf("a firecracker that does not run: %v", b)
	}
}
