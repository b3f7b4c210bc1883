package kvmprobe

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/testenv"
	"github.com/ukernel-dev/ukernel/internal/vmm"
)

// TestProbeKVM boots the probe for real. On this kind of host /dev/kvm opens but a Linux guest
// spins forever: the probe must give up within its deadline. Where KVM works, it must say so.
func TestProbeKVM(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	testenv.RequireTools(t, vmm.QEMUBinary)
	k := testenv.DebianKernel(t)
	var heard []Result
	spec := Spec{Kernel: k.Vmlinuz, CacheDir: t.TempDir(), Timeout: 4 * time.Second,
		Probed: func(res Result, _ time.Time) { heard = append(heard, res) }}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	res, err := Probe(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("probe: %+v in %s", res, took)
	if len(heard) != 1 || heard[0] != res {
		t.Errorf("Probed heard %+v, want the one answer %+v", heard, res)
	}
	if took > spec.Timeout+3*time.Second {
		t.Errorf("probe took %s, its deadline is %s", took, spec.Timeout)
	}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		if res.Usable || !strings.Contains(res.Reason, "/dev/kvm") {
			t.Errorf("without /dev/kvm: %+v", res)
		}
		return
	}
	if reason := vmm.KVMAccess(); vmm.Unprivileged() && reason != "" {
		// QEMU started by root runs as nobody, which may not open this /dev/kvm: KVM is
		// unusable, said without a boot, and not cached (the device's group may change).
		files, _ := filepath.Glob(filepath.Join(spec.CacheDir, "*.json"))
		if res.Usable || res.Reason != reason || !strings.Contains(reason, "uid 65534") || !strings.Contains(reason, "kvm group") || took > time.Second || len(files) != 0 {
			t.Errorf("probe as root with a root-only /dev/kvm: %+v in %s, cache %v", res, took, files)
		}
		return
	}
	if !res.Usable && !strings.Contains(res.Reason, "KVM: ") {
		t.Errorf("reason %q does not say what failed", res.Reason)
	}
	// The second probe comes from the cache, instantly, and marks the entry used.
	files, _ := filepath.Glob(filepath.Join(spec.CacheDir, "*.json"))
	if len(files) != 1 {
		t.Fatalf("cache files %v, want one", files)
	}
	long := time.Now().Add(-48 * time.Hour)
	os.Chtimes(files[0], long, long)
	start = time.Now()
	again, err := Probe(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cached || again.Usable != res.Usable || again.Reason != res.Reason || time.Since(start) > time.Second {
		t.Errorf("second probe %+v (in %s), want the cached %+v", again, time.Since(start), res)
	}
	if fi, err := os.Stat(files[0]); err != nil || time.Since(fi.ModTime()) > time.Hour {
		t.Errorf("a cache hit did not mark the entry used: %v %v", fi.ModTime(), err)
	}
	if !res.Usable {
		// A failure probed long ago is probed again.
		old := res
		old.Checked = time.Now().Add(-FailureTTL - time.Hour)
		b, _ := json.Marshal(old)
		if err := os.WriteFile(files[0], b, 0o644); err != nil {
			t.Fatal(err)
		}
		if again, err := Probe(ctx, spec); err != nil || again.Cached {
			t.Errorf("a failure cached %s ago was not probed again: %+v, %v", FailureTTL, again, err)
		}
	}
}
