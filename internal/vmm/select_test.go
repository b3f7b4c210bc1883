package vmm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestChooseBackendWithoutFirecracker(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	ctx := context.Background()
	c, err := ChooseBackend(ctx, BackendAuto, "user", ProbeSpec{})
	if err != nil || c.String() != "qemu (firecracker not found on PATH)" {
		t.Fatalf("auto: %v %v", c, err)
	}
	start := time.Now()
	_, err = ChooseBackend(ctx, BackendFirecracker, "none", ProbeSpec{})
	if err == nil || !strings.Contains(err.Error(), "firecracker not found on PATH") || !strings.Contains(err.Error(), "release") {
		t.Fatalf("explicit: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("explicit firecracker took %s to fail", d)
	}
	if c, err := ChooseBackend(ctx, BackendQEMU, "user", ProbeSpec{}); err != nil || c.Backend != BackendQEMU {
		t.Fatalf("qemu: %v %v", c, err)
	}
	if _, err := ChooseBackend(ctx, "xen", "user", ProbeSpec{}); err == nil {
		t.Fatal("unknown backend accepted")
	}
}

// A firecracker on PATH is still not chosen for user networking, which it does not have.
func TestChooseBackendUserNet(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FirecrackerBinary), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	c, err := ChooseBackend(context.Background(), BackendAuto, "user", ProbeSpec{})
	if err != nil || c.Backend != BackendQEMU || !strings.Contains(c.Reason, "no user-mode networking") {
		t.Fatalf("auto with --net user: %v %v", c, err)
	}
	if _, err := ChooseBackend(context.Background(), BackendFirecracker, "user", ProbeSpec{}); err == nil || !strings.Contains(err.Error(), "--net tap") {
		t.Fatalf("explicit with --net user: %v", err)
	}
}
