package launch

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/template"
)

// TestRestartHoldsTemplatePin: a detached template guest's restart pins its template, as run
// --template does: while a prune holds the pins off, the restart waits for it (it never starts
// under a prune, which could take its snapshot); once the restarted guest's record names the
// revision, the pin is free again.
func TestRestartHoldsTemplatePin(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	o, _ := testOptions(t, packTestImage(t, "sleep"))
	s := template.At(t.TempDir())
	if err := s.Create(&template.Spec{Name: "api", Source: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	rev := strings.Repeat("a", 64)
	o.Name, o.Detached, o.Restart, o.StopTimeout = "ukt-restart", true, RestartAlways, 2*time.Second
	o.Template, o.Revision, o.Templates = "api", rev, s.Dir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	mctx, stopMonitor := context.WithCancel(ctx)
	defer stopMonitor()
	t.Cleanup(func() {
		for _, pid := range vmmsOf(o.Store.Dir) {
			t.Errorf("VMM pid %d left running", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	// A prune starts while the first guest runs, and lasts.
	started := make(chan monitorResult, 1)
	var releasePrune func()
	report := func(r monitorResult) {
		release, err := s.HoldPins(ctx, "api", "test prune")
		if err != nil {
			t.Errorf("the prune could not start while the first guest ran: %v", err)
		}
		releasePrune = release
		started <- r
	}
	done := make(chan error, 1)
	go func() { done <- monitor(mctx, o, report) }()
	var first monitorResult
	select {
	case first = <-started:
	case <-ctx.Done():
		t.Fatal("the first guest never started")
	}
	if first.Started == nil || releasePrune == nil {
		t.Fatalf("the first start: %+v", first)
	}
	// The guest ends (its VMM killed): --restart always starts it again after restartFirstDelay,
	// but not while the prune runs.
	if err := syscall.Kill(first.Started.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(restartFirstDelay + 3*time.Second)
	runs, _ := os.ReadDir(filepath.Join(o.ProjectDir, "logs", "runs"))
	if len(runs) != 1 || len(vmmsOf(o.Store.Dir)) != 0 {
		t.Errorf("the guest restarted while a prune held the template's pins off: runs %d, VMMs %v", len(runs), vmmsOf(o.Store.Dir))
	}
	releasePrune()

	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		st, err := o.Store.Load(o.Name)
		if err == nil && st.RunID != "" && st.RunID != first.Started.RunID && !st.Exited { // not Reserve's placeholder
			if st.Template != "api" || st.Revision != rev {
				t.Errorf("the restarted guest's record names %s@%s", st.Template, st.Revision)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guest was not restarted within 90s of the prune's end: %+v %v", st, err)
		}
	}
	// Its record names the revision: the restart let prunes run again.
	free, cancelFree := context.WithTimeout(ctx, 2*time.Second)
	defer cancelFree()
	release, err := s.HoldPins(free, "api", "test prune")
	if err != nil {
		t.Errorf("the restarted guest still pins its template: %v", err)
	} else {
		release()
	}
	stopMonitor()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("the monitor did not end once asked to stop")
	}
}
