package cache

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A sealed file is trusted by identity while untouched; an edit is caught even when the mtime
// is set back (the ctime moves), a copy with the same content is accepted and resealed.
func TestSealedFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "initrd.cpio")
	if err := os.WriteFile(p, []byte(`{"user": "app"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Seal(p, ""); err != nil {
		t.Fatal(err)
	}
	digest, err := CheckSealed(p, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CheckSealed(p, digest); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckSealed(p, "00"+digest[2:]); !errors.Is(err, ErrSealBroken) {
		t.Fatalf("another expected digest: %v", err)
	}

	fi, _ := os.Stat(p)
	if err := os.WriteFile(p, []byte(`{"user": "abc"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(p, fi.ModTime(), fi.ModTime())
	if _, err := CheckSealed(p, ""); !errors.Is(err, ErrSealBroken) {
		t.Fatalf("edited file (same size, mtime set back): %v", err)
	}

	// A restored copy: new inode, same content.
	os.WriteFile(p+".new", []byte(`{"user": "app"}`), 0o644)
	os.Rename(p+".new", p)
	if got, err := CheckSealed(p, digest); err != nil || got != digest {
		t.Fatalf("restored content: %s, %v", got, err)
	}
	var s Sealed
	id, _ := StatID(p)
	if data, _ := os.ReadFile(sealPath(p)); json.Unmarshal(data, &s) != nil || s.ID != id {
		t.Fatalf("the seal did not take the restored file's identity: %+v vs %+v", s.ID, id)
	}

	os.Remove(sealPath(p))
	if _, err := CheckSealed(p, ""); !errors.Is(err, ErrSealBroken) {
		t.Fatalf("no seal: %v", err)
	}
}

func TestSealedState(t *testing.T) {
	c, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("parsed index: coreutils 9.1-1 sha256 aaaa")
	if err := c.WriteSealedState("parsed/x.gob", data); err != nil {
		t.Fatal(err)
	}
	if got, err := c.ReadSealedState("parsed/x.gob"); err != nil || string(got) != string(data) {
		t.Fatalf("read back: %q, %v", got, err)
	}
	raw, _ := c.ReadState("parsed/x.gob")
	raw[len(raw)-1] = 'b'
	c.WriteState("parsed/x.gob", raw)
	if _, err := c.ReadSealedState("parsed/x.gob"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("edited state: %v", err)
	}
	if _, err := os.Stat(c.statePath("parsed/x.gob")); !os.IsNotExist(err) {
		t.Fatal("the edited state file was kept")
	}
	// One written before seals existed is derived again.
	c.WriteState("parsed/old.gob", data)
	if _, err := c.ReadSealedState("parsed/old.gob"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unsealed state: %v", err)
	}
}
