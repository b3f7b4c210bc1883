package bootfiles

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/u-root/u-root/pkg/boot/bzimage"

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/cache"
)

// VmlinuxFile is the name of the extracted kernel inside its cache directory.
const VmlinuxFile = "vmlinux"

// Vmlinux returns the uncompressed ELF kernel of the bzImage at bzImagePath. Images carry the
// distribution's bzImage; Firecracker on x86_64 boots only an ELF vmlinux, and QEMU boots one
// through PVH much faster than the bzImage: under TCG the kernel's own LZ4 decompression and
// relocation cost about 1.3 s of a 2.4 s boot. An ELF kernel is returned as it is. The result is
// cached as <cacheDir>/<digest>/vmlinux, where digest is the bzImage's sha256 (computed when
// empty), so each kernel is decompressed once; it is sealed (cache.Seal), and one changed since
// is made again.
func Vmlinux(bzImagePath, digest, cacheDir string) (string, error) {
	if CheckELF(bzImagePath) == nil {
		return bzImagePath, nil // already an ELF kernel
	}
	if digest == "" {
		var err error
		if digest, err = cache.FileSHA256(bzImagePath); err != nil {
			return "", fmt.Errorf("kernel %s: %w", bzImagePath, err)
		}
	}
	out := filepath.Join(cacheDir, digest, VmlinuxFile)
	if _, err := cache.CheckSealed(out, ""); err == nil {
		cache.MarkUsed(filepath.Dir(out))
		return out, nil
	}
	data, err := os.ReadFile(bzImagePath)
	if err != nil {
		return "", fmt.Errorf("kernel %s: %w", bzImagePath, err)
	}
	var bz bzimage.BzImage
	if err := bz.UnmarshalBinary(data); err != nil {
		return "", fmt.Errorf("kernel %s: not a bzImage that can be decompressed: %w", bzImagePath, err)
	}
	if _, err := bz.ELF(); err != nil {
		return "", fmt.Errorf("kernel %s: payload is not an ELF vmlinux: %w", bzImagePath, err)
	}
	if err := atomicfile.WriteFile(out, bz.KernelCode, 0o644); err != nil {
		return "", fmt.Errorf("vmlinux cache: %w", err)
	}
	if err := CheckELF(out); err != nil {
		return "", err
	}
	sum := sha256.Sum256(bz.KernelCode)
	if err := cache.Seal(out, hex.EncodeToString(sum[:])); err != nil {
		return "", fmt.Errorf("vmlinux cache: %w", err)
	}
	return out, nil
}

// CheckELF verifies that path is what Firecracker (and QEMU's PVH entry) boots on x86_64: a 64-bit little-endian
// x86-64 executable ELF with a loadable segment and an entry point.
func CheckELF(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("vmlinux %s: %w", path, err)
	}
	defer f.Close()
	switch {
	case f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB:
		return fmt.Errorf("vmlinux %s: %v %v, want ELFCLASS64 little-endian", path, f.Class, f.Data)
	case f.Machine != elf.EM_X86_64:
		return fmt.Errorf("vmlinux %s: machine %v, want EM_X86_64", path, f.Machine)
	case f.Type != elf.ET_EXEC:
		return fmt.Errorf("vmlinux %s: type %v, want ET_EXEC", path, f.Type)
	case f.Entry == 0:
		return fmt.Errorf("vmlinux %s: no entry point", path)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			return nil
		}
	}
	return fmt.Errorf("vmlinux %s: no PT_LOAD segment", path)
}
