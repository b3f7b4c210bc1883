package bootfiles

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tinyVmlinux is the smallest kernel CheckELF accepts: an x86-64 executable ELF with an entry
// point and one loadable segment.
func tinyVmlinux() []byte {
	var b bytes.Buffer
	h := elf.Header64{Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Entry: 0x1000000, Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: 1}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS], h.Ident[elf.EI_DATA], h.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	binary.Write(&b, binary.LittleEndian, h)
	binary.Write(&b, binary.LittleEndian, elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Vaddr: 0x1000000, Filesz: 120, Memsz: 120, Align: 0x1000})
	return b.Bytes()
}

// bzImage lays out a kernel as the boot protocol does: one setup sector after the boot sector,
// the header's payload offset and length pointing at payload in the protected-mode code, a CRC.
func bzImage(payload []byte) []byte {
	const setupSects, payloadOffset = 1, 16
	d := make([]byte, (setupSects+1)*512+payloadOffset)
	d[0x1f1] = setupSects
	copy(d[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(d[0x206:], 0x020f)
	binary.LittleEndian.PutUint32(d[0x248:], payloadOffset)
	binary.LittleEndian.PutUint32(d[0x24c:], uint32(len(payload)))
	return append(append(d, payload...), 0, 0, 0, 0)
}

// FuzzVmlinux: the kernel of an image (a pulled one is anyone's) decompressed on the host for
// Firecracker and QEMU's PVH entry: an error or an ELF kernel CheckELF accepts, never a panic.
func FuzzVmlinux(f *testing.F) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tinyVmlinux())
	zw.Close()
	f.Add(bzImage(gz.Bytes()))
	f.Add(tinyVmlinux())
	f.Add(bzImage([]byte{0x1f, 0x8b, 0x08}))
	f.Add(bzImage(nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "vmlinuz")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := Vmlinux(p, "", filepath.Join(dir, "cache"))
		if err != nil {
			return
		}
		if err := CheckELF(out); err != nil {
			t.Fatalf("Vmlinux gave %s: %v", out, err)
		}
	})
}

// TestPayloadFitsBoundsDecompression: a payload that decompresses to more than the limit is
// refused after reading limit+1 bytes of it (u-root would decompress it all into memory before
// comparing with the size it declares), in each format u-root decodes in process.
func TestPayloadFitsBoundsDecompression(t *testing.T) {
	const limit = 1 << 20
	zeros := make([]byte, 2*limit)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(zeros)
	zw.Close()
	bomb := append(gz.Bytes(), 0xe8, 0x03, 0, 0) // declares 1000 bytes
	if err := payloadFits(bomb, limit); err == nil || !strings.Contains(err.Error(), "decompresses to more than") {
		t.Errorf("gzip bomb: %v", err)
	}
	if err := payloadFits(bomb, 4*limit); err != nil {
		t.Errorf("within the limit: %v", err)
	}
	if err := payloadFits([]byte("\x89LZO\x00\r\n\x1a\n...."), limit); err == nil {
		t.Error("an lzop payload (u-root runs lzop on the host) was accepted")
	}
}
