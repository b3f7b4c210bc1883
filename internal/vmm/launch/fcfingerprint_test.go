package launch

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/bootfiles"
)

// TestFirecrackerFingerprint: a snapshot's fingerprint under Firecracker names the backend and
// its binary (the digest of the firecracker on PATH and its --version line), so a QEMU
// snapshot never fits a Firecracker run nor the other way round, and another firecracker
// binary does not fit either. The binary is the stand-in the backend's tests use.
func TestFirecrackerFingerprint(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a helper binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "firecracker")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "../firecracker/testdata/fakefc")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the stand-in firecracker: %v\n%s", err, out)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	b, err := newBackend("firecracker", nil)
	if err != nil {
		t.Fatal(err)
	}
	spec := vmm.Spec{VCPU: 1, MemoryMB: 256, Accel: vmm.AccelKVM, Net: vmm.Net{Mode: "none"},
		Disks:         []vmm.Disk{{ID: "root", Path: "/a/app.img", ReadOnly: true}, {ID: "data", Path: "/a/data.img"}},
		ControlSocket: "/run/x.ctl"}
	boot := &bootfiles.Boot{KernelDigest: strings.Repeat("k", 64), ImageDigest: strings.Repeat("i", 64)}
	fp, known, err := fingerprint(ctx, b, spec, boot, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := cache.FileSHA256(bin)
	if err != nil {
		t.Fatal(err)
	}
	if fp.Backend != "firecracker" || fp.VMM != "Firecracker v1.17.0-dev" || fp.VMMDigest != sum || known.SHA256 != sum {
		t.Errorf("fingerprint %+v, binary %+v: want the backend, the binary's digest %s and its version", fp, known, sum)
	}
	if again, _, err := fingerprint(ctx, b, spec, boot, &known, ""); err != nil || again.Mismatch(fp) != "" {
		t.Errorf("the same run's fingerprint differs: %v %q", err, again.Mismatch(fp))
	}

	qemu := fp
	qemu.Backend, qemu.VMM, qemu.VMMDigest = "qemu", "QEMU emulator version 7.2.22", strings.Repeat("q", 64)
	if m := fp.Mismatch(qemu); !strings.HasPrefix(m, "backend differs") {
		t.Errorf("a QEMU snapshot under Firecracker: %q", m)
	}
	if m := qemu.Mismatch(fp); !strings.HasPrefix(m, "backend differs") {
		t.Errorf("a Firecracker snapshot under QEMU: %q", m)
	}

	// Another firecracker binary of the same version.
	f, err := os.OpenFile(bin, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("another build"))
	f.Close()
	other, _, err := fingerprint(ctx, b, spec, boot, &known, "")
	if err != nil {
		t.Fatal(err)
	}
	if m := other.Mismatch(fp); !strings.HasPrefix(m, "VMM binary differs") {
		t.Errorf("another firecracker binary: %q", m)
	}
}

// TestFirecrackerWithoutJailer: without the jailer a Firecracker run with a snapshot boots cold
// and says why in one line, before it reads the snapshot.
func TestFirecrackerWithoutJailer(t *testing.T) {
	if _, err := exec.LookPath("jailer"); err == nil && os.Geteuid() == 0 {
		t.Skip("the jailer is on PATH: Firecracker restores here")
	}
	b, err := newBackend("firecracker", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = planRestore(context.Background(), Options{Snapshot: t.TempDir()}, b, vmm.Spec{}, &bootfiles.Boot{})
	nr, ok := err.(*notRestored)
	if !ok || !strings.Contains(nr.why, "snapshots need the jailer") || strings.Contains(nr.why, "\n") {
		t.Errorf("why not restored: %v", err)
	}
}
