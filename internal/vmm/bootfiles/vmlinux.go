package bootfiles

import (
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/therootcompany/xz"
	"github.com/u-root/u-root/pkg/boot/bzimage"
	"github.com/ulikunitz/xz/lzma"

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
	if err := unmarshalBzImage(&bz, data); err != nil {
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

// maxVmlinux bounds the uncompressed kernel a bzImage may declare (a distribution's is 30-70 MB).
const maxVmlinux = 512 << 20

// unmarshalBzImage decodes a bzImage, the kernel of an image that may come from anywhere. u-root
// allocates what the header's payload offset and length say (up to 4 GiB each) and slices by
// them and by the payload's declared size unchecked: those are checked here first, against the
// file, and a panic left in its decoder is an error.
func unmarshalBzImage(bz *bzimage.BzImage, d []byte) (err error) {
	const hdrEnd = 0x250 // through payload_offset and payload_length
	if len(d) < hdrEnd || string(d[0x202:0x206]) != "HdrS" || binary.LittleEndian.Uint16(d[0x206:]) < 0x0208 {
		return errors.New("no boot protocol 2.08+ header")
	}
	setup := int64(d[0x1f1])
	if setup == 0 {
		setup = 4
	}
	start := (setup+1)*512 + int64(binary.LittleEndian.Uint32(d[0x248:]))
	end := start + int64(binary.LittleEndian.Uint32(d[0x24c:]))
	if end-start < 16 || end+4 > int64(len(d)) { // the payload, then its CRC
		return fmt.Errorf("payload at %d-%d does not fit the %d-byte file", start, end, len(d))
	}
	if n := binary.LittleEndian.Uint32(d[end-4:]); n < 64 || n > maxVmlinux {
		return fmt.Errorf("payload declares a %d-byte kernel", n)
	}
	if err := payloadFits(d[start:end], maxVmlinux); err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed bzImage (%v)", r)
		}
	}()
	return bz.UnmarshalBinary(d)
}

// payloadFits decompresses a bzImage's payload to nowhere, limit bytes at most: u-root
// decompresses into memory with no bound and compares the result with the declared size only
// after. A decoding error is left for u-root to report; lzop, which u-root would run as a
// program on the host, is refused.
func payloadFits(p []byte, limit int64) error {
	var r io.Reader
	var err error
	switch br := bytes.NewReader(p); {
	case bytes.HasPrefix(p, []byte{0x1f, 0x8b}):
		r, err = gzip.NewReader(br)
	case bytes.HasPrefix(p, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		r, err = xz.NewReader(br, 0) // u-root's decoder, with the x86 BCJ filter kernels use
	case bytes.HasPrefix(p, []byte{0x5d, 0, 0}):
		r, err = lzma.NewReader(br)
	case bytes.HasPrefix(p, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, zerr := zstd.NewReader(br)
		if zerr != nil {
			return nil
		}
		defer zr.Close()
		r = zr
	case bytes.HasPrefix(p, []byte("BZh")):
		r = bzip2.NewReader(br)
	case bytes.HasPrefix(p, []byte{0x02, 0x21, 0x4c, 0x18}), bytes.HasPrefix(p, []byte{0x04, 0x22, 0x4d, 0x18}):
		r = lz4.NewReader(br)
	default:
		return fmt.Errorf("payload compression %x is not gzip, xz, lzma, zstd, bzip2 or lz4", p[:min(len(p), 4)])
	}
	if err != nil {
		return nil
	}
	if n, _ := io.Copy(io.Discard, io.LimitReader(r, limit+1)); n > limit {
		return fmt.Errorf("payload decompresses to more than %d bytes", limit)
	}
	return nil
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
