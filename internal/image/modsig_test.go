package image

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/testenv"
)

func TestStripModuleSignatureSynthetic(t *testing.T) {
	body := []byte("\x7fELF module body")
	sig := bytes.Repeat([]byte{0xab}, 300)
	info := make([]byte, 12)
	binary.BigEndian.PutUint32(info[8:], uint32(len(sig)))
	signed := append(append(append(append([]byte{}, body...), sig...), info...), moduleSigMagic...)
	if got := stripModuleSignature(signed); !bytes.Equal(got, body) {
		t.Errorf("stripped = %q, want %q", got, body)
	}
	if got := stripModuleSignature(body); !bytes.Equal(got, body) {
		t.Error("an unsigned module was changed")
	}
	broken := append(append([]byte("x"), info...), moduleSigMagic...) // sig_len larger than the file
	if got := stripModuleSignature(broken); !bytes.Equal(got, broken) {
		t.Error("a malformed trailer was cut")
	}
}

func TestStripModuleSignatureRealModule(t *testing.T) {
	if testing.Short() {
		t.Skip("downloads the Debian kernel package")
	}
	k := testenv.DebianKernel(t)
	signed, err := os.ReadFile(filepath.Join(k.ModulesDir, "kernel/fs/erofs/erofs.ko"))
	if err != nil {
		t.Fatal(err)
	}
	plain := stripModuleSignature(signed)
	if len(plain) >= len(signed) || bytes.Contains(plain, []byte(moduleSigMagic)) {
		t.Fatalf("signature not removed: %d -> %d bytes", len(signed), len(plain))
	}
	f, err := elf.NewFile(bytes.NewReader(plain))
	if err != nil {
		t.Fatalf("the stripped module is no longer an ELF file: %v", err)
	}
	if f.Section(".modinfo") == nil {
		t.Error("the stripped module has no .modinfo")
	}
}
