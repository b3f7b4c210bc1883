package guestlog

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// TestRecordAndRead: frames from the output channel and console bytes become per-line records
// with the host's time; reading them back selects by stream, service and time, and prints
// each stream where it belongs.
func TestRecordAndRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "output.jsonl")
	w, err := Create(path, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var live bytes.Buffer
	w.SetLive(func(stream string, data []byte) { live.WriteString(stream + ":" + string(data) + "|") })
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := t0
	w.now = func() time.Time { return clock }

	cw := NewConsoleWriter(w)
	seen := 0
	cw.Seen = func() { seen++ }
	cw.Write([]byte("[    0.3] PCI: Fatal\r\n[    0.4] par"))
	var stream []byte
	for _, f := range []abi.Frame{
		{Kind: abi.FrameHello, Data: []byte(abi.Version)},
		{Kind: abi.FrameStdout, Data: []byte("one\ntwo\npart")},
		{Kind: abi.FrameStderr, Service: "db", Data: []byte("db says\n")},
	} {
		stream, _ = abi.AppendFrames(stream, f)
	}
	hello := ""
	if err := CopyFrames(bytes.NewReader(stream), w, func(v string) { hello = v }); err != nil {
		t.Fatal(err)
	}
	clock = t0.Add(time.Minute)
	stream, _ = abi.AppendFrames(nil, abi.Frame{Kind: abi.FrameStdout, Data: []byte("ial\n")})
	CopyFrames(bytes.NewReader(stream), w, nil)
	cw.Write([]byte("t\r\n"))
	cw.Flush()
	w.Close()
	if hello != abi.Version || seen != 1 {
		t.Errorf("hello %q, console seen %d times", hello, seen)
	}
	// Live gets each piece as it comes, a partial line too; records hold whole lines.
	if want := "kernel:[    0.3] PCI: Fatal\n|stdout:one\ntwo\npart|stderr:db says\n|stdout:ial\n|kernel:[    0.4] part\n|"; live.String() != want {
		t.Errorf("live\n%q\nwant\n%q", live.String(), want)
	}

	all, _, err := Read(path, Filter{Kernel: true})
	if err != nil {
		t.Fatal(err)
	}
	var logs []string
	for _, r := range all {
		logs = append(logs, r.Stream+":"+r.Service+":"+r.Log)
	}
	want := []string{"kernel::[    0.3] PCI: Fatal\n", "stdout::one\n", "stdout::two\n",
		"stderr:db:db says\n", "stdout::partial\n", "kernel::[    0.4] part\n"}
	if strings.Join(logs, "|") != strings.Join(want, "|") {
		t.Errorf("records\n%q\nwant\n%q", logs, want)
	}
	workload, _, _ := Read(path, Filter{})
	if len(workload) != 4 {
		t.Errorf("without --kernel: %d records, want 4", len(workload))
	}
	db, _, _ := Read(path, Filter{Service: "db", Kernel: true})
	if len(db) != 1 || db[0].Log != "db says\n" {
		t.Errorf("service db: %+v", db)
	}
	// A line takes the time of its first piece.
	if late, _, _ := Read(path, Filter{Since: t0.Add(30 * time.Second)}); len(late) != 0 {
		t.Errorf("since: %+v", late)
	}
	fi, _ := os.Stat(path)
	for n := 0; n <= 5; n++ {
		got, off, err := TailRecords(path, Filter{}, n)
		want := workload[max(0, len(workload)-n):]
		if err != nil || !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) || off != fi.Size() {
			t.Errorf("tail %d: %+v at %d (%v), want %+v at %d", n, got, off, err, want, fi.Size())
		}
	}

	var out, errOut bytes.Buffer
	p := &Printer{Out: &out, Err: &errOut, Timestamps: true}
	for _, r := range workload {
		p.Print(r)
	}
	ts0, ts1 := t0.Format(time.RFC3339Nano), t0.Add(time.Minute).Format(time.RFC3339Nano)
	if want := ts0 + " one\n" + ts0 + " two\n" + ts0 + " partial\n"; out.String() != want {
		t.Errorf("stdout with timestamps\n%q\nwant\n%q (not the continuation's time, %s)", out.String(), want, ts1)
	}
	if errOut.String() != ts0+" db says\n" {
		t.Errorf("stderr %q", errOut.String())
	}
}

func TestFilterCheck(t *testing.T) {
	if err := (Filter{Service: "db", Services: []string{"web", "db"}}).Check(); err != nil {
		t.Error(err)
	}
	err := (Filter{Service: "nosuch", Services: []string{"web"}}).Check()
	if !errors.Is(err, ErrNoService) || !strings.Contains(err.Error(), "web") {
		t.Errorf("nosuch: %v", err)
	}
	if err := (Filter{Service: "x"}).Check(); !errors.Is(err, ErrNoService) {
		t.Errorf("a run without services: %v", err)
	}
}

// TestRecordReader: records appended in pieces (as a follow reads them) come out whole, once.
func TestRecordReader(t *testing.T) {
	var got []string
	rr := &RecordReader{Filter: Filter{}, Fn: func(r Record) error { got = append(got, r.Log); return nil }}
	data := `{"time":"2026-01-02T03:04:05Z","stream":"stdout","log":"a\n"}` + "\n" +
		`{"time":"2026-01-02T03:04:05Z","stream":"kernel","log":"k\n"}` + "\n" +
		`{"time":"2026-01-02T03:04:05Z","stream":"stderr","service":"s","log":"b\n"}` + "\n"
	for i := 0; i < len(data); i += 7 {
		rr.Write([]byte(data[i:min(i+7, len(data))]))
	}
	if strings.Join(got, "") != "a\nb\n" {
		t.Errorf("%q", got)
	}
}

// TestUnfinishedLine: a last line without its newline is recorded at Close; a very long line
// is recorded in pieces rather than held.
func TestUnfinishedLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "output.jsonl")
	w, _ := Create(path, Limits{})
	w.Add(Stdout, "", []byte(strings.Repeat("x", maxPartial+10)))
	w.Add(Stderr, "svc", []byte("no newline"))
	w.Close()
	recs, _, err := Read(path, Filter{})
	if err != nil || len(recs) != 2 || len(recs[0].Log) != maxPartial+10 || recs[1].Log != "no newline" || recs[1].Service != "svc" {
		t.Errorf("%v %+v", err, recs)
	}
}
