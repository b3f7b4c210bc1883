package runlog

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

func eventLine(t *testing.T, ev abi.Event) []byte {
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// FuzzReadEvents: whatever the guest wrote to its events before (half lines, other JSON, binary),
// a poweroff event on a line of its own after it is the run's outcome, and a health event the
// service's latest status: earlier bytes can neither hide nor override them.
func FuzzReadEvents(f *testing.F) {
	f.Add([]byte(`{"type":"hello","abi":1}`+"\n"+`{"type":"entry_start"}`), 3, "healthy")
	f.Add([]byte(`{"type":"poweroff","code":7}`+"\n"+`{"type":"health","name":"db","sta`), 0, "unhealthy")
	f.Add([]byte("\x00\xff{\n"), 255, "")
	f.Fuzz(func(t *testing.T, prefix []byte, code int, status string) {
		r := Run{ID: "r", Dir: t.TempDir()}
		data := append(bytes.Clone(prefix), '\n')
		data = append(data, eventLine(t, abi.Event{Type: abi.EventHealth, Name: "db", Status: status})...)
		data = append(data, eventLine(t, abi.Event{Type: abi.EventPowerOff, Code: &code})...)
		if err := os.WriteFile(r.Events(), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if out := ReadOutcome(r); out.Code != code || !out.Reported {
			t.Fatalf("outcome %+v, want code %d reported", out, code)
		}
		b, _ := json.Marshal(status)
		json.Unmarshal(b, &status) // as JSON carries it: invalid UTF-8 replaced
		if h := ReadHealth(r); h["db"] != status {
			t.Fatalf("health %v, want db %q", h, status)
		}
	})
}
