package guestlog

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzTailRecords feeds an output log (the guest's lines, as the host recorded them, cut or
// damaged anywhere) to the backward reader: its last n records and offset are those the forward
// reader finds.
func FuzzTailRecords(f *testing.F) {
	f.Add([]byte(`{"time":"2026-12-03T11:00:00Z","stream":"stdout","log":"a\n"}`+"\n"+`{"time":"2026-12-03T11:00:01Z","stream":"kernel","log":"k"}`+"\n"+`{"stream":"std`), uint8(1))
	f.Add([]byte("\n\nnot json\n{}\n{\"stream\":\"stderr\",\"service\":\"db\",\"log\":\"x\"}"), uint8(0))
	f.Add([]byte(`{"stream":"stdout","log":"only, no newline"}`), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, n uint8) {
		path := filepath.Join(t.TempDir(), "output.jsonl")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		filter := Filter{Kernel: true}
		all, off, err := Read(path, filter)
		if err != nil {
			t.Fatal(err)
		}
		tail, toff, err := TailRecords(path, filter, int(n))
		if err != nil {
			t.Fatal(err)
		}
		want := all[max(0, len(all)-int(n)):]
		if len(want) == 0 && len(tail) == 0 {
			want, tail = nil, nil
		}
		if !reflect.DeepEqual(tail, want) || toff != off {
			t.Fatalf("last %d: %+v at %d; the forward reader's %+v at %d", n, tail, toff, want, off)
		}
	})
}
