package logs

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/guestlog"
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
