package logs

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/guestlog"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                     {},
		"10m":                  now.Add(-10 * time.Minute),
		"1h30m":                now.Add(-90 * time.Minute),
		"2026-01-02T14:59:00Z": time.Date(2026, 1, 2, 14, 59, 0, 0, time.UTC),
	} {
		got, err := ParseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"-5m", "yesterday", "2026-13-01"} {
		if _, err := ParseSince(bad, now); err == nil {
			t.Errorf("ParseSince(%q) accepted", bad)
		}
	}
}

// TestJSONArray: records printed one at a time make the document PrintJSON makes of the slice.
func TestJSONArray(t *testing.T) {
	recs := []guestlog.Record{
		{Time: time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC), Stream: "stdout", Log: "one\n"},
		{Time: time.Date(2026, 1, 2, 15, 0, 1, 0, time.UTC), Stream: "stderr", Service: "db", Log: "two\n"},
	}
	for n := 0; n <= len(recs); n++ {
		var got, want bytes.Buffer
		emit, end := jsonArray(&got)
		for _, r := range recs[:n] {
			emit(r)
		}
		end()
		enc := json.NewEncoder(&want)
		enc.SetIndent("", "  ")
		enc.Encode(append([]guestlog.Record{}, recs[:n]...))
		if got.String() != want.String() {
			t.Errorf("%d records:\n%s\nwant\n%s", n, got.String(), want.String())
		}
	}
}

// Flags and the guest name are parsed and checked without reading any log.
func TestNewCmdLogs(t *testing.T) {
	parse := func(asJSON bool, args ...string) (*Options, error) {
		ios, _, _, _ := iostreams.Test()
		var got *Options
		cmd := NewCmdLogs(&cmdutil.Factory{IO: ios, JSON: asJSON}, func(o *Options) error { got = o; return nil })
		cmd.SetArgs(args)
		cmd.SetOut(ios.Out)
		cmd.SetErr(ios.ErrOut)
		return got, cmd.Execute()
	}
	o, err := parse(false)
	if err != nil || o.Name != "" || o.Tail != -1 || o.Follow || !o.since.IsZero() {
		t.Errorf("logs: %v %+v; want the latest run, every line", err, o)
	}
	before := time.Now()
	o, err = parse(false, "-f", "--service", "db", "--kernel", "-n", "20", "--since", "10m", "-t", "api")
	if err != nil || o.Name != "api" || !o.Follow || o.Service != "db" || !o.Kernel || o.Tail != 20 || !o.Timestamps ||
		o.since.After(before.Add(-10*time.Minute+time.Second)) || o.since.Before(before.Add(-11*time.Minute)) {
		t.Errorf("logs with every flag: %v %+v", err, o)
	}
	for _, tc := range []struct {
		json bool
		args []string
		want string
	}{
		{false, []string{"--since", "yesterday"}, "expected a duration"},
		{false, []string{"--tail", "-2"}, "--tail -2"},
		{true, []string{"-f"}, "does not go with --follow"},
		{false, []string{"a", "b"}, "accepts at most 1 arg"},
	} {
		if o, err := parse(tc.json, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) || o != nil {
			t.Errorf("logs %q: %v; want %q before running", tc.args, err, tc.want)
		}
	}
}
