package debian

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/cache"
)

// A parsed index edited in the cache (coreutils pinned to dash's hash) is parsed again from the
// verified index, never used.
func TestParsedIndexEditedIsRejected(t *testing.T) {
	c, err := cache.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	coreutils, dash := strings.Repeat("c0", 32), strings.Repeat("da", 32)
	index := strings.Repeat("ab", 32)
	pkgs := []Package{
		{Name: "coreutils", Version: "9.1-1", Architecture: "amd64", SHA256: coreutils},
		{Name: "dash", Version: "0.5.12-2", Architecture: "amd64", SHA256: dash},
	}
	if err := storeParsed(c, index, pkgs); err != nil {
		t.Fatal(err)
	}
	if got, err := loadParsed(c, index); err != nil || got[0].SHA256 != coreutils {
		t.Fatalf("read back: %+v, %v", got, err)
	}
	raw, err := c.ReadState(parsedKey(index))
	if err != nil {
		t.Fatal(err)
	}
	edited := bytes.Replace(raw, []byte(coreutils), []byte(dash), 1)
	if bytes.Equal(edited, raw) {
		t.Fatal("the parsed index does not hold coreutils' hash as text")
	}
	if err := c.WriteState(parsedKey(index), edited); err != nil {
		t.Fatal(err)
	}
	if got, err := loadParsed(c, index); err == nil {
		t.Fatalf("an edited parsed index was used: coreutils pinned to %s", got[0].SHA256)
	}
}
