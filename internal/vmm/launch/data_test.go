package launch

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/snapshot"
)

func TestDataVolume(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not found: install e2fsprogs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	p, err := DataVolume(ctx, dir, 16)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Size() != 16<<20 {
		t.Fatalf("volume %s: %v %v", p, fi, err)
	}
	out, err := exec.CommandContext(ctx, "dumpe2fs", "-h", p).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Filesystem volume name:   "+abi.DataLabel) {
		t.Errorf("dumpe2fs: %v\n%s", err, out)
	}
	if out, err := exec.CommandContext(ctx, "e2fsck", "-fn", p).CombinedOutput(); err != nil {
		t.Errorf("e2fsck: %v\n%s", err, out)
	}
	// A larger size extends the file, keeping its content; a smaller one changes nothing.
	before, _ := os.ReadFile(p)
	if p2, err := DataVolume(ctx, dir, 32); err != nil || p2 != p {
		t.Fatalf("second call: %s %v", p2, err)
	}
	after, _ := os.ReadFile(p)
	if len(after) != 32<<20 || string(after[:len(before)]) != string(before) {
		t.Errorf("grown volume: %d bytes, content kept: %v", len(after), string(after[:len(before)]) == string(before))
	}
	if _, err := DataVolume(ctx, dir, 8); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Size() != 32<<20 {
		t.Errorf("volume shrunk to %d bytes", fi.Size())
	}
	if d, err := dataDisks(ctx, dir, abi.Manifest{}); err != nil || d != nil {
		t.Errorf("no data volume in the manifest: %v %v", d, err)
	}
}

func TestCheckSecrets(t *testing.T) {
	m := abi.Manifest{Name: "x", Secrets: []string{"a"}, Services: []abi.Service{{Name: "s", Secrets: []string{"b"}}}}
	if err := checkSecrets(m, map[string][]byte{"a": nil, "b": nil}); err != nil {
		t.Error(err)
	}
	err := checkSecrets(m, map[string][]byte{"c": []byte("value")})
	if err == nil || !strings.Contains(err.Error(), "declared: a, b") || strings.Contains(err.Error(), "value") {
		t.Errorf("undeclared secret: %v", err)
	}
}

// A run that asks for a data volume larger than its snapshot's (or for one the snapshot lacks)
// boots cold: a restored guest keeps the filesystem it had mounted.
func TestDataMismatch(t *testing.T) {
	with := &snapshot.Meta{Files: []snapshot.File{{Name: snapshot.MemoryFile, Size: 256 << 20}, {Name: snapshot.DataFile, Size: 64 << 20}}}
	without := &snapshot.Meta{Files: []snapshot.File{{Name: snapshot.MemoryFile, Size: 256 << 20}}}
	for _, c := range []struct {
		meta   *snapshot.Meta
		dataMB int
		want   string
	}{
		{with, 0, ""},
		{with, 64, ""},
		{with, 32, ""}, // a volume is never shrunk: the larger one serves
		{with, 128, "the run's data volume (128 MiB) is larger than the snapshot's (64 MiB)"},
		{without, 0, ""},
		{without, 64, "the run has a data volume (64 MiB) and the snapshot none"},
	} {
		if got := dataMismatch(c.meta, c.dataMB); got != c.want {
			t.Errorf("dataMismatch(%v, %d) = %q; want %q", c.meta.Files, c.dataMB, got, c.want)
		}
	}
}
