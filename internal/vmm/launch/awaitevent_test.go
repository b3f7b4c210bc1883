package launch

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// TestAwaitEventBoundsALineWithoutEnd: the guest writes the events file; a line without end is
// not kept whole (it was, a guest's 3 MiB line was 3 MiB of the host's memory), and the events
// after it are still found.
func TestAwaitEventBoundsALineWithoutEnd(t *testing.T) {
	frozen := func(e abi.Event) bool { return e.Type == abi.EventFrozen }
	junk := bytes.Repeat([]byte("x"), 3*abi.MaxEventLine)
	_, found, rest := takeEvent(append([]byte(nil), junk...), frozen)
	if found || len(rest) > abi.MaxEventLine {
		t.Fatalf("a line without end: found %v, %d bytes kept", found, len(rest))
	}
	path := filepath.Join(t.TempDir(), "events.jsonl")
	data := append(append(junk, "\n{\"type\":\"started\"}\n{\"type\":\"frozen\",\"status\":\"ok\"}\n"...), junk...)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := awaitEvent(ctx, path, nil, frozen)
	if err != nil || e.Type != abi.EventFrozen || e.Status != "ok" {
		t.Fatalf("awaitEvent = %+v, %v", e, err)
	}
}
