package qemu

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/vmmtest"
)

// TestSaveRestore saves a counting guest with its RAM in a shared file and restores it from the
// device state and a private mapping of that file: the count goes on from where it was, the
// state holds no RAM, and the memory file is left as it was saved.
func TestSaveRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	initrd := filepath.Join(t.TempDir(), "initrd")
	if err := vmmtest.WriteInitrd(initrd, vmmtest.Preamble+"i=0; while :; do i=$((i+1)); echo \"n=$i\"; sleep 0.2; done\n", nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	memPath, statePath := filepath.Join(dir, "memory"), filepath.Join(dir, "state")
	if err := os.WriteFile(memPath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(memPath, 256<<20); err != nil {
		t.Fatal(err)
	}
	g := newGuest(t, initrd)
	g.spec.Memory = &vmm.MemoryFile{Path: memPath, Shared: true}
	vm := startGuest(t, g)
	waitConsole(t, g, vm, "n=5\r", 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := New(nil)
	if err := b.Save(ctx, vm.Handle, statePath, memPath); err != nil {
		t.Fatal(err)
	}
	saved := lastCount(t, g.run.Console())
	if err := b.Quit(ctx, vm.Handle); err != nil {
		t.Fatal(err)
	}
	vm.Wait(ctx)
	if fi, err := os.Stat(statePath); err != nil || fi.Size() > 1<<20 {
		t.Fatalf("device state: %v, %d bytes (RAM should stay in the memory file)", err, fi.Size())
	}
	memSum, err := cache.FileSHA256(memPath)
	if err != nil {
		t.Fatal(err)
	}

	r := newGuest(t, initrd)
	r.spec.Memory = &vmm.MemoryFile{Path: memPath}
	r.spec.Incoming = statePath
	begin := time.Now()
	rvm := startGuest(t, r)
	loaded := time.Since(begin)
	if err := b.Resume(ctx, rvm.Handle); err != nil {
		t.Fatal(err)
	}
	want := "n=" + strconv.Itoa(saved+2) + "\r"
	waitConsole(t, r, rvm, want, 30*time.Second)
	t.Logf("state loaded %s after QEMU's start; %q %s after", loaded, want, time.Since(begin))
	if first := firstCount(t, r.run.Console()); first != saved+1 {
		t.Errorf("the restored guest's first count is %d, want %d (saved at %d)", first, saved+1, saved)
	}
	if _, err := vmm.Stop(ctx, b, rvm.Handle, time.Second, nil); err != nil {
		t.Fatal(err)
	}
	if sum, err := cache.FileSHA256(memPath); err != nil || sum != memSum {
		t.Errorf("the memory file changed under a private mapping: %v", err)
	}
}

var countRE = regexp.MustCompile(`n=(\d+)\r?\n`)

func counts(t *testing.T, path string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, m := range countRE.FindAllStringSubmatch(string(b), -1) {
		n, _ := strconv.Atoi(m[1])
		out = append(out, n)
	}
	if len(out) == 0 {
		t.Fatalf("no count in %s:\n%s", path, b)
	}
	return out
}

func lastCount(t *testing.T, path string) int  { c := counts(t, path); return c[len(c)-1] }
func firstCount(t *testing.T, path string) int { return counts(t, path)[0] }

func TestSnapshotArgs(t *testing.T) {
	spec := vmm.Spec{Kernel: "/k", APISocket: "/s/q", ConsolePath: "/c", MemoryMB: 512, Accel: vmm.AccelTCG,
		Memory: &vmm.MemoryFile{Path: "/snap/a,b/memory"}, Incoming: "/snap/state"}
	a, err := Args(spec)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(a, " ")
	for _, want := range []string{
		"-object memory-backend-file,id=ram,size=512M,mem-path=/snap/a,,b/memory,share=off -machine memory-backend=ram",
		"-incoming defer", "-cpu " + CPUModelTCG,
	} {
		if !strings.Contains(line, want) {
			t.Errorf("args lack %q:\n%s", want, line)
		}
	}
	if strings.Contains(line, "memory-backend-memfd") {
		t.Errorf("a file-backed guest also has a memfd backend:\n%s", line)
	}
	spec.Memory.Shared, spec.Incoming = true, ""
	a, _ = Args(spec)
	if line = strings.Join(a, " "); !strings.Contains(line, ",share=on ") || strings.Contains(line, "-incoming") {
		t.Errorf("a save boot: shared memory, no -incoming:\n%s", line)
	}
}

func TestLayout(t *testing.T) {
	spec := func(dir string, port int, mem int, net abi.NetMode) vmm.Spec {
		s := vmm.Spec{Kernel: dir + "/k", Initrd: dir + "/i", Cmdline: "quiet tsc_early_khz=1", APISocket: dir + "/q", ConsolePath: dir + "/c",
			EventsPath: dir + "/e", ControlSocket: dir + "/s", OutputSocket: dir + "/o", MemoryMB: mem, Accel: vmm.AccelTCG,
			Disks:  []vmm.Disk{{ID: "root", Path: dir + "/root", ReadOnly: true}, {ID: "data", Path: dir + "/data"}},
			Memory: &vmm.MemoryFile{Path: dir + "/memory", Shared: port == 1}, Net: vmm.Net{Mode: net}}
		if net == abi.NetUser {
			s.Net.Publish = []vmm.Port{{Host: port, Guest: 80}}
		}
		if port != 1 {
			s.Incoming = dir + "/state"
		}
		return s
	}
	b := New(nil)
	layout := func(s vmm.Spec) string {
		l, err := b.Layout(s)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	saved := layout(spec("/snap", 1, 512, abi.NetUser))
	if got := layout(spec("/run/x", 8080, 512, abi.NetUser)); got != saved {
		t.Errorf("paths, ports and the save/restore mode changed the layout:\n%s\n%s", got, saved)
	}
	if strings.Contains(saved, "/snap") || strings.Contains(saved, "tsc_early_khz") {
		t.Errorf("the layout holds a path or the command line: %s", saved)
	}
	for _, other := range []vmm.Spec{spec("/snap", 1, 256, abi.NetUser), spec("/snap", 1, 512, abi.NetNone)} {
		if layout(other) == saved {
			t.Errorf("memory or network did not change the layout: %s", saved)
		}
	}
	// The kernel command line is the fingerprint's apart: the one the guest boots with, the
	// host's measured TSC rate masked.
	cmdline := b.BootCmdline(spec("/snap", 1, 512, abi.NetUser))
	if want := "quiet tsc_early_khz=X console=ttyS0 tsc_early_khz=X tsc=reliable"; hostTSCKHz() > 0 && cmdline != want {
		t.Errorf("BootCmdline under TCG: %q, want %q", cmdline, want)
	}
	if !strings.HasSuffix(cmdline, " tsc=reliable") || b.BootCmdline(spec("/run/x", 8080, 512, abi.NetUser)) != cmdline {
		t.Errorf("BootCmdline: %q, or it differs between a save and a restore", cmdline)
	}
}

// TestLoadStateHasDeadline: a restore whose device state never arrives (here a FIFO nobody
// writes to; a stalled network filesystem in life) fails within LoadTimeout, QEMU killed, instead
// of waiting as long as the run's context (which has no deadline) lasts.
func TestLoadStateHasDeadline(t *testing.T) {
	if testing.Short() {
		t.Skip("starts QEMU")
	}
	dir := t.TempDir()
	fifo := filepath.Join(dir, "state")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	go func() {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0) // held open, silent
		if err == nil {
			t.Cleanup(func() { w.Close() })
		}
	}()
	memPath := filepath.Join(dir, "memory")
	if err := os.WriteFile(memPath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(memPath, 256<<20); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(t.TempDir(), "initrd")
	if err := vmmtest.WriteInitrd(initrd, vmmtest.Preamble+"sleep 100\n", nil); err != nil {
		t.Fatal(err)
	}
	g := newGuest(t, initrd)
	g.spec.Memory = &vmm.MemoryFile{Path: memPath}
	g.spec.Incoming = fifo
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a safety net only
	defer cancel()
	start := time.Now()
	vm, err := New(nil).Start(ctx, g.spec)
	took := time.Since(start)
	if err == nil {
		vmm.Stop(ctx, New(nil), vm.Handle, time.Second, nil)
		t.Fatal("a state that never arrives was loaded")
	}
	if took > LoadTimeout+StartTimeout {
		t.Errorf("Start returned after %s (%v); want within LoadTimeout (%s) of QEMU's start", took.Round(time.Second), err, LoadTimeout)
	}
	t.Logf("after %s: %v", took.Round(time.Millisecond), err)
}
