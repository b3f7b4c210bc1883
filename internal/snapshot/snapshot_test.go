package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFingerprintMismatch(t *testing.T) {
	base := Fingerprint{Backend: "qemu", VMM: "QEMU emulator version 7.2.22", VMMDigest: strings.Repeat("a", 64), Accel: "tcg",
		CPU: "max,erms=off,fsrm=off", Layout: "-M microvm -m 512 -netdev user,id=n0", Cmdline: "quiet console=ttyS0 tsc_early_khz=X tsc=reliable", VCPU: 1, MemoryMB: 512,
		Kernel: strings.Repeat("b", 64), Initramfs: strings.Repeat("c", 64), Image: strings.Repeat("d", 64)}
	if m := base.Mismatch(base); m != "" {
		t.Fatalf("a fingerprint differs from itself: %s", m)
	}
	for _, tc := range []struct {
		edit func(*Fingerprint)
		want string
	}{
		{func(f *Fingerprint) { f.MemoryMB = 256 }, "memory differs (this run: 256 MiB, the snapshot: 512 MiB)"},
		{func(f *Fingerprint) { f.VCPU = 2 }, "vCPUs differs (this run: 2, the snapshot: 1)"},
		{func(f *Fingerprint) { f.Accel = "kvm" }, "accelerator differs (this run: kvm, the snapshot: tcg)"},
		{func(f *Fingerprint) { f.VMMDigest = strings.Repeat("e", 64) }, "VMM binary differs (this run: eeeeeeeeeeee, the snapshot: aaaaaaaaaaaa)"},
		{func(f *Fingerprint) { f.VMM = "QEMU emulator version 8.2.0" }, "VMM version differs"},
		{func(f *Fingerprint) { f.CPU = "max" }, "CPU differs"},
		{func(f *Fingerprint) { f.Kernel = "x" }, "kernel differs"},
		{func(f *Fingerprint) { f.Initramfs = "x" }, "initramfs differs"},
		{func(f *Fingerprint) { f.Image = "x" }, "image differs"},
		{func(f *Fingerprint) { f.Backend = "firecracker" }, "backend differs"},
		{func(f *Fingerprint) { f.Layout = "-M microvm -m 512" }, "device layout differs (this run: lacks -netdev)"},
		{func(f *Fingerprint) { f.Layout = "-M microvm -m 512 -netdev none" }, "device layout differs (this run: none, the snapshot: user,id=n0)"},
		{func(f *Fingerprint) { f.Cmdline += " quiet" }, "kernel command line differs (this run: adds quiet); take the snapshot again with `ukernel template build NAME --snapshot`"},
	} {
		run := base
		tc.edit(&run)
		if got := run.Mismatch(base); !strings.HasPrefix(got, tc.want) {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	// A snapshot taken before its kernel command line was recorded (under TCG, before
	// tsc=reliable: its guest keeps the jiffies clocksource) is taken again.
	old := base
	old.Cmdline = ""
	if got := base.Mismatch(old); got != "the snapshot does not record the kernel command line it booted with (taken by an older ukernel); take it again with `ukernel template build NAME --snapshot`" {
		t.Errorf("a snapshot without its command line: %q", got)
	}
}

// TestSealPublishVerify: a take replaces the previous one whole, by renames: a restore that
// holds the previous take (Take) sees it replaced, and the previous memory file, mapped
// privately as QEMU maps it, keeps its bytes (it is unlinked, never written).
func TestSealPublishVerify(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "rev", "snapshot")
	if _, err := Read(target); !errors.Is(err, ErrNone) {
		t.Fatalf("Read of no snapshot: %v, want ErrNone", err)
	}
	write := func(st *Staging, mem string) {
		for name, content := range map[string]string{StateFile: "device state", MemoryFile: mem, DataFile: "volume"} {
			if err := os.WriteFile(filepath.Join(st.Dir, name), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	var take *Take
	var mapped []byte
	for _, mem := range []string{"first RAM", "second RAM"} { // the second replaces the first
		st, err := Stage(target)
		if err != nil {
			t.Fatal(err)
		}
		write(st, mem)
		if err := st.Seal(&Meta{Created: time.Now(), Ready: "settled"}, StateFile, MemoryFile, DataFile); err != nil {
			t.Fatal(err)
		}
		if take != nil && take.Replaced() != nil {
			t.Fatal("a sealed take not yet published replaced the snapshot")
		}
		if err := st.Publish(); err != nil {
			t.Fatal(err)
		}
		if take == nil {
			// A restore of the first take: it holds it, and maps its memory file privately.
			if take, err = OpenTake(target); err != nil {
				t.Fatal(err)
			}
			defer take.Close()
			if err := take.Replaced(); err != nil {
				t.Fatalf("a take just opened: %v", err)
			}
			f, err := os.Open(filepath.Join(target, MemoryFile))
			if err != nil {
				t.Fatal(err)
			}
			mapped, err = syscall.Mmap(int(f.Fd()), 0, len(mem), syscall.PROT_READ, syscall.MAP_PRIVATE)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			defer syscall.Munmap(mapped)
		}
	}
	if err := take.Replaced(); err == nil || !strings.Contains(err.Error(), "replaced (taken again)") {
		t.Errorf("the first take once the second is published: %v", err)
	}
	if string(mapped) != "first RAM" {
		t.Errorf("the replaced memory file changed under its mapping: %q", mapped)
	}
	m, err := Read(target)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 3 || !m.Has(MemoryFile) || m.Size() != int64(len("device state")+len("second RAM")+len("volume")) {
		t.Fatalf("meta %+v", m)
	}
	if err := Verify(target, m); err != nil {
		t.Fatalf("a fresh snapshot does not verify: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "rev", stagePrefix+"*")); len(left) != 0 {
		t.Errorf("staging left behind: %v", left)
	}
	// One byte flipped, same size: found by its identity change and the hash.
	mem := filepath.Join(target, MemoryFile)
	b, _ := os.ReadFile(mem)
	b[0] ^= 1
	if err := os.WriteFile(mem, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Verify(target, m); err == nil || !strings.Contains(err.Error(), "snapshot file memory changed since it was saved") {
		t.Fatalf("a flipped byte: %v", err)
	}
	current, err := OpenTake(target)
	if err != nil {
		t.Fatal(err)
	}
	defer current.Close()
	if err := Remove(target); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(target); !errors.Is(err, ErrNone) {
		t.Fatalf("after Remove: %v", err)
	}
	if err := current.Replaced(); err == nil || !strings.Contains(err.Error(), "removed") {
		t.Errorf("a take once removed: %v", err)
	}
	if _, err := OpenTake(target); !errors.Is(err, ErrNone) {
		t.Errorf("OpenTake of no snapshot: %v, want ErrNone", err)
	}
}

func TestCopySparse(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(64 << 20)
	f.WriteAt([]byte("start"), 0)
	f.WriteAt([]byte("middle"), 32<<20)
	f.WriteAt([]byte("end"), 64<<20-3)
	f.Close()
	if err := CopySparse(src, dst); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(src)
	b, _ := os.ReadFile(dst)
	if string(a) != string(b) {
		t.Fatal("the copy differs")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dst, &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 > 4<<20 {
		t.Errorf("the copy of a 64 MiB file with 14 bytes takes %d bytes: holes were filled", st.Blocks*512)
	}
}

// TestIdentifyRecordsVerification: a VMM binary whose identity changed since the snapshot (a
// chmod changes its ctime) is hashed and run for its version once; later restores know it from
// the cache's record under its new identity, and a changed binary is hashed again.
func TestIdentifyRecordsVerification(t *testing.T) {
	dir, cacheDir := t.TempDir(), t.TempDir()
	runs := filepath.Join(dir, "runs")
	bin := filepath.Join(dir, "vmm")
	script := "#!/bin/sh\necho run >> " + runs + "\necho 'VMM version 1'\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		b, _ := os.ReadFile(runs)
		return strings.Count(string(b), "run")
	}
	ctx := t.Context()
	saved, err := Identify(ctx, bin, "--version", nil, cacheDir)
	if err != nil || saved.Version != "VMM version 1" || count() != 1 {
		t.Fatalf("first Identify: %+v, %v, %d runs", saved, err, count())
	}
	if _, err := Identify(ctx, bin, "--version", &saved, cacheDir); err != nil || count() != 1 {
		t.Fatalf("Identify of the known binary: %v, %d runs, want 1", err, count())
	}
	time.Sleep(10 * time.Millisecond) // a ctime the clock tells apart
	if err := os.Chmod(bin, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		b, err := Identify(ctx, bin, "--version", &saved, cacheDir)
		if err != nil || b.SHA256 != saved.SHA256 || b.Version != saved.Version || b.ID == saved.ID {
			t.Fatalf("Identify %d after chmod: %+v, %v", i, b, err)
		}
	}
	if count() != 2 {
		t.Errorf("the binary ran %d times for its version, want 2: once at the snapshot, once after its identity changed", count())
	}
	if err := os.WriteFile(bin, []byte(strings.Replace(script, "version 1", "version 2", 1)), 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := Identify(ctx, bin, "--version", &saved, cacheDir)
	if err != nil || b.SHA256 == saved.SHA256 || b.Version != "VMM version 2" {
		t.Errorf("Identify of a changed binary: %+v, %v", b, err)
	}
}

// TestIdentifyBoundsTheVersionQuery: a VMM binary that does not answer its version query (a
// broken build, a wrapper waiting on something) fails Identify within versionTimeout and a
// second, instead of holding the restore for as long as the run's context (no deadline) lasts.
func TestIdentifyBoundsTheVersionQuery(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "vmm")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nsleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a safety net only
	defer cancel()
	start := time.Now()
	_, err := Identify(ctx, bin, "--version", nil, t.TempDir())
	if took := time.Since(start); err == nil || took > versionTimeout+3*time.Second {
		t.Fatalf("Identify of a binary that never answers: %v after %s, want an error within %s", err, took.Round(time.Millisecond), versionTimeout)
	}
}
