package runstate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/guest"
	"github.com/ukernel-dev/ukernel/internal/guestlog"
	"github.com/ukernel-dev/ukernel/internal/vmm"
)

func TestConfigDriveRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "g.config")
	cfg := &abi.BootConfig{ABI: abi.Version, RunID: "r1", Hostname: "g", Env: map[string]string{"SECRET": "s3cr3t"},
		Network: abi.Network{Mode: "user", Address: "10.0.2.15/24"}}
	if err := WriteConfigDrive(p, cfg); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size()%4096 != 0 {
		t.Errorf("config drive mode %v size %d, want 0600 and a multiple of 4096", fi.Mode().Perm(), fi.Size())
	}
	f, _ := os.Open(p)
	defer f.Close()
	got, err := guest.ReadConfig(f) // the guest's own reader
	if err != nil {
		t.Fatal(err)
	}
	if got.Env["SECRET"] != "s3cr3t" || got.RunID != "r1" || got.Network.Address != "10.0.2.15/24" {
		t.Errorf("guest read %+v", got)
	}
}

func TestParseEnv(t *testing.T) {
	file := filepath.Join(t.TempDir(), "env")
	os.WriteFile(file, []byte("# comment\n\nA=1\nB=from file\nC=x=y\n"), 0o600)
	t.Setenv("UKTEST_HOST", "host value")
	env, err := ParseEnv([]string{"B=flag", "UKTEST_HOST", "EMPTY="}, []string{file})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"A": "1", "B": "flag", "C": "x=y", "UKTEST_HOST": "host value", "EMPTY": ""}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}
	os.WriteFile(file, []byte("GOOD=1\nnot a pair secretvalue\n"), 0o600)
	_, err = ParseEnv(nil, []string{file})
	if err == nil || !strings.Contains(err.Error(), file+":2") || strings.Contains(err.Error(), "secretvalue") {
		t.Errorf("bad env file: %v (want file:line, without the value)", err)
	}
	if _, err := ParseEnv([]string{"UKTEST_UNSET_VAR"}, nil); err == nil {
		t.Error("-e of an unset variable accepted")
	}
}

func writeRun(t *testing.T, events, console string) Run {
	t.Helper()
	r := Run{ID: "20261122T000000Z-abcdef", Dir: t.TempDir()}
	os.WriteFile(r.Events(), []byte(events), 0o644)
	os.WriteFile(r.Console(), []byte(console), 0o644)
	return r
}

func TestReadOutcome(t *testing.T) {
	cases := []struct {
		name, events, console string
		code                  int
		reported              bool
		reason                string
	}{
		{"poweroff", `{"type":"hello","abi":"0.3.0"}` + "\n" + `{"type":"entry.exit","code":2}` + "\n" + `{"type":"poweroff","code":3}` + "\n", "", 3, true, ""},
		{"entry exit only", `{"type":"entry.exit","code":0}` + "\n", "", 0, true, ""},
		{"panic", "", "[ 1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\n", 125, false, "kernel panic: Kernel panic - not syncing: VFS: Unable to mount root fs"},
		{"guest error", `{"type":"error","message":"ABI mismatch: peer speaks 9.0.0"}` + "\n", "", 125, false, "ABI mismatch: peer speaks 9.0.0"},
		{"old guest", `{"type":"hello","abi":"0.1.0"}` + "\n", "", 125, false, "guest init: ABI mismatch"},
		{"nothing", "", "booting\n", 125, false, "guest stopped without reporting an exit code; see logs/runs/20261122T000000Z-abcdef/console.log"},
		{"torn line", `{"type":"poweroff","code":7}` + "\n" + `{"type":"pow`, "", 7, true, ""},
	}
	for _, c := range cases {
		out := ReadOutcome(writeRun(t, c.events, c.console))
		if out.Code != c.code || out.Reported != c.reported || !strings.Contains(out.Reason, c.reason) {
			t.Errorf("%s: %+v, want code %d reported %v reason containing %q", c.name, out, c.code, c.reported, c.reason)
		}
	}
}

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
	s.Finish(st, Outcome{Code: 1, Reported: true})
	if cur, err := s.Load("web"); err != nil || cur.RunID != "r2" || cur.Exited {
		t.Errorf("release removed another run's state: %v %v", cur, err)
	}
	// Nor a fresh reservation (no run id yet) of the same name made after the old guest died.
	os.Remove(s.statePath("web"))
	if err := s.Reserve("web"); err != nil {
		t.Fatal(err)
	}
	s.Finish(st, Outcome{Code: 1, Reported: true})
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

func TestNewRunAndLatest(t *testing.T) {
	dir := t.TempDir()
	r1, err := NewRun(dir, time.Unix(100, 0))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := NewRun(dir, time.Unix(200, 0))
	if err != nil {
		t.Fatal(err)
	}
	if r1.ID >= r2.ID {
		t.Errorf("run ids do not sort by time: %s, %s", r1.ID, r2.ID)
	}
	os.WriteFile(r2.Console(), []byte("hello\n"), 0o644)
	b, err := os.ReadFile(filepath.Join(dir, "logs", "console.log"))
	if err != nil || string(b) != "hello\n" {
		t.Errorf("logs/console.log reads %q, %v", b, err)
	}
	latest, err := LatestRun(dir)
	if err != nil || latest.ID != r2.ID {
		t.Errorf("latest %+v %v, want %s", latest, err, r2.ID)
	}
	if _, err := LatestRun(t.TempDir()); err == nil || !strings.Contains(err.Error(), "ukernel run") {
		t.Errorf("no runs: %v", err)
	}
}

func TestFollow(t *testing.T) {
	p := filepath.Join(t.TempDir(), "console.log")
	done := make(chan struct{})
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- Follow(ctx, p, &out, done) }()
	time.Sleep(50 * time.Millisecond)
	os.WriteFile(p, []byte("one\n"), 0o644)
	time.Sleep(100 * time.Millisecond)
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("two\n")
	f.Close()
	close(done)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if out.String() != "one\ntwo\n" {
		t.Errorf("followed %q", out.String())
	}
}

func TestWatchWrites(t *testing.T) {
	p := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c, stop, err := watchWrites(p)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	select {
	case <-c:
		t.Fatal("a signal before any write")
	case <-time.After(50 * time.Millisecond):
	}
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("line\n")
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatal("no signal after a write")
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
	if err := s.Finish(st, Outcome{Code: 7, Reported: true}); err != nil {
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

// TestReadLargeRunFlatMemory: ps and a failed run read a run's outcome, health and console
// tail; with a 300 MB console and 20 MB of events they allocate a bounded amount (ps used to
// read both whole: 818 MB of RSS on a 300 MB console).
func TestReadLargeRunFlatMemory(t *testing.T) {
	r := writeRun(t, "", "")
	if err := os.Truncate(r.Console(), 300<<20); err != nil { // sparse: its size is what counts
		t.Fatal(err)
	}
	cf, _ := os.OpenFile(r.Console(), os.O_WRONLY|os.O_APPEND, 0)
	cf.WriteString("\n[ 9.0] Kernel panic - not syncing: Attempted to kill init!\n")
	cf.Close()
	ev, _ := os.OpenFile(r.Events(), os.O_WRONLY|os.O_APPEND, 0)
	line := `{"type":"health","name":"db","status":"healthy"}` + "\n"
	ev.WriteString(strings.Repeat(line, (20<<20)/len(line)))
	ev.WriteString(`{"type":"health","name":"db","status":"unhealthy"}` + "\n")
	ev.Close()

	var out Outcome
	var health map[string]string
	var tail string
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	out = ReadOutcome(r)
	health = ReadHealth(r)
	tail = ConsoleTail(r, 10)
	runtime.ReadMemStats(&after)
	if !strings.Contains(out.Reason, "Attempted to kill init") || health["db"] != "unhealthy" || !strings.Contains(tail, "Kernel panic") {
		t.Fatalf("outcome %+v, health %v, tail %q", out, health, tail)
	}
	// Events are parsed a line at a time (each allocates a little, soon collected); nothing
	// holds a file: the memory taken from the system (the peak's bound) barely grows.
	if grew := int64(after.Sys) - int64(before.Sys); grew > 32<<20 {
		t.Errorf("memory from the system grew by %d MB reading a 300 MB console and 20 MB of events", grew>>20)
	}
}

// TestFollowAcrossRotation: a follow of a log that rotates while it is read gets every line,
// in order: the old file to its end, then the new one from its start.
func TestFollowAcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "output.jsonl")
	w, err := guestlog.OpenRotating(path, guestlog.Limits{MaxSize: 2000, MaxFiles: 2})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	got := &lockedBuffer{}
	followed := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() { followed <- Follow(ctx, path, got, done) }()
	var want strings.Builder
	// Batches of less than a file: the follower, waited for after each, sees every rotation
	// (with two files kept, a reader that falls two rotations behind loses the removed one).
	for i := 0; i < 3000; i++ {
		line := fmt.Sprintf("line %d\n", i)
		want.WriteString(line)
		w.Write([]byte(line))
		if i%150 == 149 {
			pollFor(t, 10*time.Second, func() bool { return got.Len() >= want.Len() })
		}
	}
	w.Close()
	close(done)
	if err := <-followed; err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Errorf("followed %d bytes, want %d; first difference near %q", got.Len(), want.Len(), firstDiff(got.String(), want.String()))
	}
}

func firstDiff(a, b string) string {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[max(0, i-20):min(len(a), i+20)]
		}
	}
	return ""
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func pollFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
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
	if err := WriteConfigDrive(s.ConfigDrive("web"), &abi.BootConfig{ABI: abi.Version, Secrets: map[string][]byte{"K": []byte("v")}}); err != nil {
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

// TestConfigDriveRefusesPlantedLink: the config drive's temporary file is created anew: a link
// planted in its place is refused, and its target is not written.
func TestConfigDriveRefusesPlantedLink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "victim")
	if err := os.WriteFile(target, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	drive := filepath.Join(dir, "web.config")
	if err := os.Symlink(target, drive+".tmp"); err != nil {
		t.Fatal(err)
	}
	cfg := &abi.BootConfig{ABI: abi.Version, Secrets: map[string][]byte{"K": []byte("s3cret")}}
	if err := WriteConfigDrive(drive, cfg); err == nil {
		t.Fatal("the config drive was written through a planted link")
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Errorf("the link's target was written: %q", b)
	}
	if _, err := os.Stat(drive); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a config drive appeared: %v", err)
	}
	os.Remove(drive + ".tmp")
	if err := WriteConfigDrive(drive, cfg); err != nil {
		t.Fatal(err)
	}
}
