package guestlog

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestOutputLogRotates: an output log written past its limits keeps MaxFiles files of about
// MaxSize bytes; reading it, whole or by tail, gives the newest records in order across files.
func TestOutputLogRotates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "output.jsonl")
	l := Limits{MaxSize: 4096, MaxFiles: 3}
	w, err := Create(path, l)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2000; i++ {
		w.Add(Stdout, "", []byte(fmt.Sprintf("line %d\n", i)))
	}
	w.Close()
	files := Files(path)
	if len(files) != 3 || files[0] != path+".2" || files[2] != path {
		t.Fatalf("files %v, want %s.2, .1 and itself", files, path)
	}
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Errorf("%s.3 kept beyond max files 3", path)
	}
	for _, f := range files {
		if fi, _ := os.Stat(f); fi.Size() > l.MaxSize {
			t.Errorf("%s: %d bytes, above the limit %d", f, fi.Size(), l.MaxSize)
		}
	}
	all, off, err := Read(path, Filter{})
	if err != nil || len(all) < 100 {
		t.Fatalf("read %d records: %v", len(all), err)
	}
	first, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(all[0].Log, "line ")))
	for i, r := range all {
		if want := fmt.Sprintf("line %d\n", first+i); r.Log != want {
			t.Fatalf("record %d: %q, want %q (in order, none lost between files)", i, r.Log, want)
		}
	}
	if all[len(all)-1].Log != "line 1999\n" {
		t.Errorf("last record %q", all[len(all)-1].Log)
	}
	for _, n := range []int{0, 1, 10, len(all) - 1, len(all), len(all) + 5} {
		got, toff, err := TailRecords(path, Filter{}, n)
		want := all[max(0, len(all)-n):]
		if err != nil || len(got) != len(want) || toff != off {
			t.Fatalf("tail %d: %d records at %d (%v), want %d at %d", n, len(got), toff, err, len(want), off)
		}
		for i := range got {
			if got[i].Log != want[i].Log {
				t.Fatalf("tail %d: record %d %q, want %q", n, i, got[i].Log, want[i].Log)
			}
		}
	}
}

// TestTruncateCopy: a console the VMM appends to is moved to console.log.1 and emptied once
// it is read past its limit; what came after the last read reaches the reader first, and
// nothing beyond MaxFiles files is kept.
func TestTruncateCopy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	vmm, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer vmm.Close()
	r, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	l := Limits{MaxSize: 1000, MaxFiles: 2}
	var seen bytes.Buffer
	var written []string
	for round := 0; round < 3; round++ {
		block := strings.Repeat(fmt.Sprintf("round %d\n", round), 150) // 1200 bytes
		vmm.WriteString(block)
		buf := make([]byte, 64<<10)
		n, _ := r.Read(buf)
		seen.Write(buf[:n])
		late := fmt.Sprintf("late %d\n", round) // after the reader's last read
		vmm.WriteString(late)
		if err := TruncateCopy(r, path, l, &seen); err != nil {
			t.Fatal(err)
		}
		written = append(written, block+late)
		if fi, _ := os.Stat(path); fi.Size() != 0 {
			t.Fatalf("round %d: %s holds %d bytes after the rotation", round, path, fi.Size())
		}
		if old, _ := os.ReadFile(path + ".1"); string(old) != block+late {
			t.Fatalf("round %d: %s.1 holds %d bytes, want the %d the console had", round, path, len(old), len(block+late))
		}
		if pos, _ := r.Seek(0, 1); pos != 0 {
			t.Fatalf("round %d: the reader is at %d, want 0", round, pos)
		}
	}
	if _, err := os.Stat(path + ".2"); err == nil {
		t.Errorf("%s.2 kept beyond max files 2", path)
	}
	if seen.String() != strings.Join(written, "") {
		t.Errorf("the reader saw %d bytes, want all %d written", seen.Len(), len(strings.Join(written, "")))
	}
	// The VMM's next write lands at the start of the emptied file (O_APPEND), not past a hole.
	vmm.WriteString("after\n")
	if b, _ := os.ReadFile(path); string(b) != "after\n" {
		t.Errorf("after the rotation the console holds %q", b)
	}
	// Below the limit nothing moves.
	r.Seek(0, 2)
	if err := TruncateCopy(r, path, l, &seen); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "after\n" {
		t.Errorf("a console below its limit was rotated: %q", b)
	}
}

// TestReadLargeLogFlatMemory: reading a log of hundreds of MB by its tail allocates about
// what the tail holds, and reading it whole holds one record at a time, as does the
// console's tail (what ps and a failed run read).
func TestReadLargeLogFlatMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 200 MB")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "output.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	const lines = 2_000_000 // about 200 MB
	t0 := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC).Format(time.RFC3339Nano)
	for i := 0; i < lines; i++ {
		fmt.Fprintf(bw, `{"time":%q,"stream":"stdout","log":"line %08d of a workload that prints fast, fast, fast\n"}`+"\n", t0, i)
	}
	bw.Flush()
	f.Close()
	fi, _ := os.Stat(path)
	if fi.Size() < 150<<20 {
		t.Fatalf("wrote only %d bytes", fi.Size())
	}

	var recs []Record
	tailAlloc := allocated(func() {
		recs, _, err = TailRecords(path, Filter{}, 10)
	})
	if err != nil || len(recs) != 10 || recs[9].Log != fmt.Sprintf("line %08d of a workload that prints fast, fast, fast\n", lines-1) {
		t.Fatalf("tail 10: %d records (%v), last %+v", len(recs), err, recs)
	}
	if tailAlloc > 1<<20 {
		t.Errorf("tail 10 of a %d MB log allocated %d bytes; want under 1 MiB", fi.Size()>>20, tailAlloc)
	}

	var peak uint64
	n := 0
	runtime.GC()
	if _, err := Scan(path, Filter{}, func(Record) error {
		if n++; n%50_000 == 0 {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
		}
		return nil
	}); err != nil || n != lines {
		t.Fatalf("scan: %d records (%v), want %d", n, err, lines)
	}
	if peak > 64<<20 {
		t.Errorf("scanning a %d MB log peaked at %d MB of heap; want under 64 MB", fi.Size()>>20, peak>>20)
	}

	// A console of 300 MB (sparse: its size is what counts) whose end says why.
	console := filepath.Join(dir, "console.log")
	if err := os.WriteFile(console, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(console, 300<<20); err != nil {
		t.Fatal(err)
	}
	cf, _ := os.OpenFile(console, os.O_WRONLY|os.O_APPEND, 0)
	cf.WriteString("\nKernel panic - not syncing: test\n")
	cf.Close()
	var tail []byte
	consoleAlloc := allocated(func() { tail = TailBytes(console, 256<<10) })
	if !bytes.Contains(tail, []byte("Kernel panic - not syncing: test")) || consoleAlloc > 1<<20 {
		t.Errorf("the console's tail: %d bytes allocated, panic line found: %v", consoleAlloc, bytes.Contains(tail, []byte("Kernel panic")))
	}
}

// allocated is how many bytes fn allocates.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
