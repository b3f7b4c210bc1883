package runstate

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/runlog"
	"github.com/ukernel-dev/ukernel/internal/vmm"
)

func TestReserveLiveAndStale(t *testing.T) {
	s, err := OpenAt(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reserve("../x"); err == nil {
		t.Error("a name with a slash was accepted")
	}
	if err := s.Reserve("web"); err != nil {
		t.Fatal(err)
	}
	// A reservation by a live ukernel process (this one) blocks the name.
	var running *ErrRunning
	if err := s.Reserve("web"); !errors.As(err, &running) || !strings.Contains(err.Error(), "ukernel stop web") {
		t.Errorf("second reserve: %v", err)
	}
	// A recorded VMM whose pid is alive but is not our QEMU (here: the test itself) is stale.
	st := &State{Name: "web", RunID: "r1", Handle: vmm.Handle{Backend: "qemu", PID: os.Getpid(), APISocket: s.APISocket("web")}}
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(s.ConfigDrive("web"), []byte("secret"), 0o600)
	if st.Live() {
		t.Fatal("the test process was taken for a live QEMU")
	}
	if err := s.Reserve("web"); err != nil {
		t.Fatalf("reserve over stale state: %v", err)
	}
	if _, err := os.Stat(s.ConfigDrive("web")); !errors.Is(err, os.ErrNotExist) {
		t.Error("stale config drive left behind")
	}
	// Finish leaves a newer run's state alone.
	if err := s.Save(&State{Name: "web", RunID: "r2"}); err != nil {
		t.Fatal(err)
	}
	s.Finish(st, runlog.Outcome{Code: 1, Reported: true})
	if cur, err := s.Load("web"); err != nil || cur.RunID != "r2" || cur.Exited {
		t.Errorf("release removed another run's state: %v %v", cur, err)
	}
	// Nor a fresh reservation (no run id yet) of the same name made after the old guest died.
	os.Remove(s.statePath("web"))
	if err := s.Reserve("web"); err != nil {
		t.Fatal(err)
	}
	s.Finish(st, runlog.Outcome{Code: 1, Reported: true})
	if cur, err := s.Load("web"); err != nil || cur.Owner != os.Getpid() || cur.Exited {
		t.Errorf("release removed a newer reservation: %v %v", cur, err)
	}
	// Abandon removes this process's own reservation.
	if err := s.Abandon("web"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load("web"); err == nil {
		t.Error("abandon left the reservation")
	}
}

// TestPlaceholderLiveness: a reservation stays live as long as its owner runs, however long the
// start takes, and not once its pid belongs to another process.
func TestPlaceholderLiveness(t *testing.T) {
	start, ok := ProcessStart(os.Getpid())
	if !ok || start == 0 {
		t.Fatalf("ProcessStart of this process: %d %v", start, ok)
	}
	long := &State{Name: "db", Owner: os.Getpid(), OwnerStart: start, Started: time.Now().Add(-time.Hour)}
	if !long.Live() {
		t.Error("a reservation whose owner still runs an hour later is not live")
	}
	reused := &State{Name: "db", Owner: os.Getpid(), OwnerStart: start + 1, Started: time.Now()}
	if reused.Live() {
		t.Error("a reservation whose pid now belongs to another process is live")
	}
	old := &State{Name: "db", Owner: os.Getpid(), Started: time.Now().Add(-2 * time.Minute)}
	if old.Live() {
		t.Error("an old-style reservation (no owner start) is live after a minute")
	}
	if _, ok := ProcessStart(1 << 30); ok {
		t.Error("ProcessStart of a pid that cannot exist")
	}
}

// A VMM whose ukernel died while it was starting (only its pid file names it) is stopped when
// the name is taken again, not left running where neither ps nor stop can reach it.
func TestReserveStopsOrphanedVMM(t *testing.T) {
	s, err := OpenAt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Stands in for a VMM: its command line names the guest's API socket, as QEMU's does.
	orphan := exec.Command("/bin/sh", "-c", "sleep 600; : "+s.APISocket("web"))
	orphan.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { orphan.Wait(); close(exited) }()
	defer orphan.Process.Kill()
	if err := os.WriteFile(s.PIDFile("web"), []byte(strconv.Itoa(orphan.Process.Pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Its owner's placeholder: a pid that cannot exist, so the state is stale.
	if err := s.Save(&State{Name: "web", Owner: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	if err := s.Reserve("web"); err != nil {
		t.Fatalf("Reserve over a stale placeholder: %v", err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the orphaned VMM still runs after its name was taken again")
	}
	if _, err := os.Stat(s.PIDFile("web")); !os.IsNotExist(err) {
		t.Errorf("pid file left behind: %v", err)
	}

	// An unrelated process that reused the pid (its command line does not name the socket)
	// is left alone.
	other := exec.Command("sleep", "600")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer other.Process.Kill()
	os.WriteFile(s.PIDFile("db"), []byte(strconv.Itoa(other.Process.Pid)+"\n"), 0o600)
	if err := s.Reserve("db"); err != nil {
		t.Fatal(err)
	}
	if err := other.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("an unrelated process was killed: %v", err)
	}
}

// TestFinishAndRemove: a finished guest's record keeps its exit code for ps -a, is not live,
// frees the name for a new run, and rm removes it; a running guest cannot be removed.
func TestFinishAndRemove(t *testing.T) {
	s, err := OpenAt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reserve("job"); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Load("job")
	if err := s.Remove("job"); err == nil {
		t.Error("a guest being started (its owner alive) was removed")
	}
	os.WriteFile(s.ControlSocket("job"), nil, 0o600)
	if err := s.Finish(st, runlog.Outcome{Code: 7, Reported: true}); err != nil {
		t.Fatal(err)
	}
	cur, err := s.Load("job")
	if err != nil || !cur.Exited || cur.ExitCode == nil || *cur.ExitCode != 7 || cur.Live() {
		t.Fatalf("finished record %+v %v", cur, err)
	}
	if _, err := os.Stat(s.ControlSocket("job")); !errors.Is(err, os.ErrNotExist) {
		t.Error("the finished guest's socket is left")
	}
	for _, bad := range []string{"../x", "a/b", ""} {
		if err := s.Remove(bad); err == nil {
			t.Errorf("rm %q accepted", bad)
		}
	}
	if err := s.Remove("job"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load("job"); err == nil {
		t.Error("record left after rm")
	}
	if err := s.Remove("job"); err == nil {
		t.Error("rm of a name with no record succeeded")
	}
}

// TestOpenSweepsDeadOwners: opening the store (what every command does) cleans what a killed
// ukernel left: the config drive (with its secrets), a VMM only its pid file names, the pid file,
// and records the guest as finished. A live owner's guest is left alone.
func TestOpenSweepsDeadOwners(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenAt(dir)
	if err != nil {
		t.Fatal(err)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadStart, _ := ProcessStart(os.Getpid()) // any start time: the pid is gone
	orphan := exec.Command("/bin/sh", "-c", "sleep 600; : "+s.APISocket("web"))
	orphan.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { orphan.Wait(); close(exited) }()
	defer orphan.Process.Kill()
	if err := s.Save(&State{Name: "web", Owner: dead.Process.Pid, OwnerStart: deadStart, Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(s.PIDFile("web"), []byte(strconv.Itoa(orphan.Process.Pid)+"\n"), 0o600)
	drive, err := abi.EncodeConfigDrive(&abi.BootConfig{ABI: abi.Version, Secrets: map[string][]byte{"K": []byte("v")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.ConfigDrive("web"), drive, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reserve("mine"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(s.ConfigDrive("mine"), []byte("x"), 0o600)

	if _, err := OpenAt(dir); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the dead run's unrecorded VMM still runs after the store was opened")
	}
	for _, p := range []string{s.ConfigDrive("web"), s.PIDFile("web")} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
	if st, err := s.Load("web"); err != nil || !st.Exited {
		t.Errorf("the dead run's guest is not recorded as finished: %+v %v", st, err)
	}
	if _, err := os.Stat(s.ConfigDrive("mine")); err != nil {
		t.Errorf("a live owner's config drive was removed: %v", err)
	}
}

// TestStateDirMode: a state directory made too open (another umask, another tool) is made 0700
// again; one that is a link is refused.
func TestStateDirMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	if _, err := OpenAt(dir); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("state directory is mode %04o, want 0700", fi.Mode().Perm())
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenAt(link); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a link as state directory: %v", err)
	}
}

// TestRemoveTakesRestoredData: a restored guest's copy of its snapshot's data volume outlives
// the guest (Finish keeps it) and goes with its record (rm).
func TestRemoveTakesRestoredData(t *testing.T) {
	s, err := OpenAt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	proj := t.TempDir()
	data := RestoredData(proj, "clone")
	os.MkdirAll(filepath.Dir(data), 0o755)
	if err := os.WriteFile(data, []byte("its writes"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reserve("clone"); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Load("clone")
	st.ProjectDir = proj
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(st, runlog.Outcome{Code: 0, Reported: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(data); err != nil {
		t.Fatalf("the finished guest's data copy is gone before rm: %v", err)
	}
	if err := s.Remove("clone"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("rm left the data copy: %v", err)
	}
}

// TestRemoveFinishedTakesRestoredData: a record removed once its guest finished (perf's
// restores) takes the guest's data copy with it: no record is left for rm to find it by.
func TestRemoveFinishedTakesRestoredData(t *testing.T) {
	s, err := OpenAt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	proj := t.TempDir()
	data := RestoredData(proj, "perf")
	os.MkdirAll(filepath.Dir(data), 0o755)
	if err := os.WriteFile(data, []byte("its writes"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reserve("perf"); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Load("perf")
	st.ProjectDir = proj
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(st, runlog.Outcome{Code: 0, Reported: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveFinished(st); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load("perf"); err == nil {
		t.Error("the record is left")
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the data copy is left: %v", err)
	}
}

// TestTemplateRevisions: the revisions a template's live guests (running, or being started by a
// live ukernel) boot from are in use, and a finished one's whose monitor still runs (it restarts
// it); a finished guest's whose owner is gone, or another template's, are not.
func TestTemplateRevisions(t *testing.T) {
	s, err := OpenAt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	start, _ := ProcessStart(os.Getpid())
	for _, st := range []*State{
		{Name: "api-1", Template: "api", Revision: "aaaa", Owner: os.Getpid(), OwnerStart: start, Started: time.Now()},
		{Name: "api-2", Template: "api", Revision: "bbbb", Started: time.Now(), Exited: true},
		{Name: "api-3", Template: "api", Revision: "dddd", Owner: os.Getpid(), OwnerStart: start, Started: time.Now(), Exited: true, Detached: true},
		{Name: "web-1", Template: "web", Revision: "cccc", Owner: os.Getpid(), OwnerStart: start, Started: time.Now()},
	} {
		if err := s.Save(st); err != nil {
			t.Fatal(err)
		}
	}
	if revs, err := s.TemplateRevisions("api"); err != nil || !slices.Equal(revs, []string{"aaaa", "dddd"}) {
		t.Errorf("in use: %v (%v), want [aaaa dddd]", revs, err)
	}
}
