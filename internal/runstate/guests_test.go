package runstate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/runlog"
	"github.com/ukernel-dev/ukernel/internal/vmm"
)

// A guest whose VMM is gone (here: a pid that is this test, not a QEMU) is recorded as exited,
// with the code its events reported, and stays so when listed again.
func TestGuestsRecordsTheVanished(t *testing.T) {
	store, err := OpenAt(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	run := runlog.Run{ID: "r1", Dir: t.TempDir()}
	os.WriteFile(run.Events(), []byte(`{"type":"poweroff","code":3}`+"\n"), 0o644)
	st := &State{Name: "gone", RunID: run.ID, RunDir: run.Dir, Started: time.Now().Add(-time.Minute),
		Handle: vmm.Handle{Backend: "qemu", PID: os.Getpid(), APISocket: store.APISocket("gone")}}
	if err := store.Save(st); err != nil {
		t.Fatal(err)
	}
	// A reservation by this (live) process, with no VMM yet.
	if err := store.Reserve("new"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		gs, err := store.Guests()
		if err != nil {
			t.Fatal(err)
		}
		if len(gs) != 2 || gs[0].Name != "gone" || gs[0].Status != StatusExited || gs[0].ExitCode == nil || *gs[0].ExitCode != 3 ||
			gs[1].Name != "new" || gs[1].Status != StatusStarting {
			t.Fatalf("guests %+v", gs)
		}
	}
	if got, err := store.Load("gone"); err != nil || !got.Exited || got.ExitCode == nil || *got.ExitCode != 3 {
		t.Errorf("the vanished guest is not recorded as finished: %+v %v", got, err)
	}
}

func TestStartedAndGuestOf(t *testing.T) {
	store, err := OpenAt(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Reserve("web"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Started("web"); err == nil || !strings.Contains(err.Error(), `guest "web" has not started yet`) {
		t.Errorf("Started before the run directory is known: %v", err)
	}
	if _, _, err := store.Started("../x"); err == nil {
		t.Error("Started took a name with a slash")
	}
	dir := t.TempDir()
	st, _ := store.Load("web")
	st.RunID, st.RunDir = "r1", dir
	if err := store.Save(st); err != nil {
		t.Fatal(err)
	}
	got, run, err := store.Started("web")
	if err != nil || got.Name != "web" || run.ID != "r1" || run.Dir != dir {
		t.Errorf("Started(web) = %+v %+v %v", got, run, err)
	}
	if g := store.GuestOf(runlog.Run{Dir: dir + "/"}); g == nil || g.Name != "web" {
		t.Errorf("GuestOf the run's directory: %+v", g)
	}
	if g := store.GuestOf(runlog.Run{Dir: t.TempDir()}); g != nil {
		t.Errorf("GuestOf another directory: %+v", g)
	}
}
