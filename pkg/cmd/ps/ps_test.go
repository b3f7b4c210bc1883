package ps

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/runlog"
	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/launch"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// ps lists the running guests with their uptime; ps -a the finished ones too, without a pid;
// --json prints an empty list as [].
func TestPs(t *testing.T) {
	store, err := runstate.OpenAt(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	run := runlog.Run{ID: "r1", Dir: t.TempDir()}
	os.WriteFile(run.Events(), []byte(`{"type":"poweroff","code":3}`+"\n"), 0o644)
	started := time.Now().Add(-time.Minute)
	// Its VMM is gone (the pid is this test's, not a QEMU's).
	if err := store.Save(&runstate.State{Name: "gone", RunID: run.ID, RunDir: run.Dir, Started: started,
		Handle: vmm.Handle{Backend: "qemu", PID: os.Getpid(), APISocket: store.APISocket("gone")}}); err != nil {
		t.Fatal(err)
	}
	ps := func(all, asJSON bool) string {
		ios, _, out, _ := iostreams.Test()
		var opts *Options
		cmd := NewCmdPs(&cmdutil.Factory{IO: ios, JSON: asJSON}, func(o *Options) error { opts = o; return nil })
		args := []string{}
		if all {
			args = append(args, "-a")
		}
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil || opts.All != all {
			t.Fatalf("ps %q: %v %+v", args, err, opts)
		}
		opts.OpenStore = func() (*runstate.Store, error) { return store, nil }
		if err := psRun(opts); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	if out := ps(false, true); out != "[]\n" {
		t.Errorf("ps --json with no running guest: %q", out)
	}
	if out := ps(false, false); strings.Contains(out, "gone") {
		t.Errorf("ps lists a finished guest:\n%s", out)
	}
	var rows []Guest
	if out := ps(true, true); json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 1 || rows[0].Status != "exited" ||
		rows[0].ExitCode == nil || *rows[0].ExitCode != 3 || rows[0].PID != 0 || rows[0].Backend != "qemu" {
		t.Errorf("ps -a --json:\n%s", out)
	}
	if out := ps(true, false); !strings.Contains(out, "gone  -    qemu") || !strings.Contains(out, "exited (3)") {
		t.Errorf("ps -a:\n%s", out)
	}

	live := []runstate.Guest{{State: &runstate.State{Name: "web", Started: started, Handle: vmm.Handle{PID: 42}}, Status: runstate.StatusRunning}}
	if rows := Rows(live, started.Add(90*time.Second), false); len(rows) != 1 || rows[0].UptimeS != 90 || rows[0].PID != 42 || rows[0].Ports == nil {
		t.Errorf("rows of a running guest: %+v", rows)
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
