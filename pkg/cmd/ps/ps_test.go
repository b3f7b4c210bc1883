package ps

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/runlog"
	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/launch"
)

// A guest whose VMM is gone (here: a pid that is this test, not a QEMU) is recorded as exited,
// with the code its events reported: ps -a lists it, ps does not.
func TestListCleansStale(t *testing.T) {
	store, err := runstate.OpenAt(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	run := runlog.Run{ID: "r1", Dir: t.TempDir()}
	os.WriteFile(run.Events(), []byte(`{"type":"poweroff","code":3}`+"\n"), 0o644)
	st := &runstate.State{Name: "gone", RunID: run.ID, RunDir: run.Dir, Started: time.Now().Add(-time.Minute),
		Handle: vmm.Handle{Backend: "qemu", PID: os.Getpid(), APISocket: store.APISocket("gone")}}
	if err := store.Save(st); err != nil {
		t.Fatal(err)
	}
	if rows, _ := List(store, time.Now(), false); len(rows) != 0 {
		t.Errorf("ps lists a finished guest: %+v", rows)
	}
	for range 2 {
		rows, err := List(store, time.Now(), true)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || rows[0].Status != "exited" || rows[0].ExitCode == nil || *rows[0].ExitCode != 3 {
			t.Fatalf("ps -a rows %+v", rows)
		}
	}
}

// doctor's choice, run -d's report and ps's row name a guest's backend and accelerator alike
// (backend, accel), so a script compares them field by field.
func TestJSONNamesAgree(t *testing.T) {
	for what, v := range map[string]any{
		"doctor --json choice": vmm.Choice{Backend: "qemu", Accel: "tcg"},
		"run -d --json":        launch.Detached{Backend: "qemu", Accel: "tcg"},
		"ps --json":            Guest{Backend: "qemu", Accel: "tcg"},
	} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m["backend"] != "qemu" || m["accel"] != "tcg" || m["accelerator"] != nil {
			t.Errorf("%s: %s; want backend qemu and accel tcg (no second name)", what, b)
		}
	}
}
