package guest

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

func TestDMRequestLayout(t *testing.T) {
	if got := dmIoctlNr(dmDevCreate); got != 0xc138fd03 { // DM_DEV_CREATE from linux/dm-ioctl.h
		t.Fatalf("DM_DEV_CREATE = %#x", got)
	}
	if got := dmIoctlNr(dmTableLoad); got != 0xc138fd09 {
		t.Fatalf("DM_TABLE_LOAD = %#x", got)
	}
	v := &abi.Verity{RootHash: strings.Repeat("ab", 32), Salt: strings.Repeat("cd", 32), DataBlocks: 10, HashOffset: 40960, BlockSize: 4096, HashAlgorithm: "sha256"}
	table := v.Table("/dev/vda2")
	b, err := dmRequest(verityDevName, dmReadonly, table)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if le.Uint32(b[0:]) != 4 || le.Uint32(b[12:]) != uint32(len(b)) || le.Uint32(b[16:]) != dmIoctlSize || le.Uint32(b[20:]) != 1 || le.Uint32(b[28:]) != dmReadonly {
		t.Fatalf("header % x", b[:48])
	}
	if name := string(b[48 : 48+len(verityDevName)+1]); name != verityDevName+"\x00" {
		t.Fatalf("name %q", name)
	}
	spec := b[dmIoctlSize:]
	if le.Uint64(spec[0:]) != 0 || le.Uint64(spec[8:]) != 80 || string(spec[24:30]) != "verity" || spec[30] != 0 {
		t.Fatalf("target spec % x", spec[:dmSpecSize])
	}
	params := string(spec[dmSpecSize:])
	want := "1 /dev/vda2 /dev/vda2 4096 4096 10 10 sha256 " + v.RootHash + " " + v.Salt + "\x00"
	if !strings.HasPrefix(params, want) || len(b)%8 != 0 {
		t.Fatalf("params %q, want %q (8-byte padded)", params, want)
	}
	if _, err := dmRequest("x", 0, "0 8 verity"); err == nil {
		t.Fatal("a table line without parameters was accepted")
	}
	if b, _ := dmRequest("x", 0, ""); len(b) != dmIoctlSize || le.Uint32(b[20:]) != 0 {
		t.Fatalf("request without a table: %d bytes", len(b))
	}
}

func TestCheckVerityParams(t *testing.T) {
	h := strings.Repeat("ab", 32)
	v := &abi.Verity{RootHash: h, Salt: "00", DataBlocks: 10, HashOffset: 40960, BlockSize: 4096, HashAlgorithm: "sha256"}
	base := "console=ttyS0 quiet"
	cases := []struct {
		v       *abi.Verity
		cmdline string
		errSub  string
	}{
		{nil, base, ""},
		{v, base + " ukernel.verity=" + h, ""},
		{v, base, "has no ukernel.verity="},
		{v, base + " ukernel.verity=" + strings.Repeat("cd", 32), "the manifest " + h},
		{nil, base + " ukernel.verity=" + h, "manifest has no verity"},
		{&abi.Verity{RootHash: h, BlockSize: 512, HashAlgorithm: "sha256", DataBlocks: 1}, "ukernel.verity=" + h, "unsupported"},
	}
	for _, c := range cases {
		err := CheckVerityParams(c.v, c.cmdline)
		if (c.errSub == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.errSub)) {
			t.Errorf("%v %q: %v, want %q", c.v != nil, c.cmdline, err, c.errSub)
		}
	}
	if got := VerityRootHash("a ukernel.verity=xyz b"); got != "xyz" {
		t.Errorf("VerityRootHash = %q", got)
	}
}
