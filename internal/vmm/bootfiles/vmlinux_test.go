package bootfiles

import (
	"debug/elf"
	"os"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/testenv"
)

// TestVmlinuxFromDebianKernel decompresses the real Debian cloud kernel and checks the result
// with debug/elf, then that the second call is served from the cache.
func TestVmlinuxFromDebianKernel(t *testing.T) {
	k := testenv.DebianKernel(t)
	cache := t.TempDir()
	start := time.Now()
	out, err := Vmlinux(k.Vmlinuz, "", cache)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("extracted %s in %s", out, time.Since(start))
	f, err := elf.Open(out)
	if err != nil {
		t.Fatalf("debug/elf: %v", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC || f.Class != elf.ELFCLASS64 {
		t.Fatalf("vmlinux: machine %v type %v class %v", f.Machine, f.Type, f.Class)
	}
	if f.Entry == 0 {
		t.Fatal("vmlinux has no entry point")
	}
	var text bool
	for _, s := range f.Sections {
		if s.Name == ".text" && s.Size > 1<<20 {
			text = true
		}
	}
	if !text {
		t.Fatal("vmlinux has no .text section of a kernel's size")
	}
	fi1, _ := os.Stat(out)
	out2, err := Vmlinux(k.Vmlinuz, "", cache)
	if err != nil || out2 != out {
		t.Fatalf("second call: %s, %v", out2, err)
	}
	fi2, _ := os.Stat(out2)
	if !fi1.ModTime().Equal(fi2.ModTime()) {
		t.Fatal("second call rewrote the cached vmlinux")
	}
	if err := CheckELF(k.Vmlinuz); err == nil {
		t.Fatal("CheckELF accepted a bzImage")
	}
}
