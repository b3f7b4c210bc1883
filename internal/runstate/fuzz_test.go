package runstate

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/guest"
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

// FuzzConfigDrive: the guest's reader of the config drive accepts a drive or refuses it without
// quoting it (it carries secrets), and what it accepts, written again by the host's writer,
// reads back the same.
func FuzzConfigDrive(f *testing.F) {
	cfg := &abi.BootConfig{ABI: abi.Version, Env: map[string]string{"A": "1"}, Secrets: map[string][]byte{"token": []byte("hunter2-secret")}}
	dir := f.TempDir()
	if err := WriteConfigDrive(dir+"/seed", cfg); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(dir + "/seed")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(append([]byte(abi.ConfigMagic), 3, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' '))
	f.Add(append([]byte(abi.ConfigMagic), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := guest.ReadConfig(bytes.NewReader(data))
		if err != nil {
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error quotes a secret: %v", err)
			}
			return
		}
		p := t.TempDir() + "/config"
		if err := WriteConfigDrive(p, got); err != nil {
			t.Fatalf("accepted config does not write: %v", err)
		}
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		again, err := guest.ReadConfig(fh)
		if err != nil {
			t.Fatalf("written again, the drive does not read: %v", err)
		}
		if !reflect.DeepEqual(again, got) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", again, got)
		}
	})
}
