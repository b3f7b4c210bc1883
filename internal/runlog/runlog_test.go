package runlog

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/guestlog"
	"github.com/ukernel-dev/ukernel/internal/project"
)

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

func TestFindNoRunsYet(t *testing.T) {
	_, err := Find(t.TempDir(), "")
	if err == nil || !strings.Contains(err.Error(), "ukernel run") {
		t.Fatalf("no runs: %v", err)
	}
	_, err = Find(t.TempDir(), "nope")
	if err == nil || !strings.Contains(err.Error(), "no runs yet") {
		t.Fatalf("unknown run: %v", err)
	}
	// An unknown id lists the latest runs as ids to copy, not as a Go slice.
	dir := t.TempDir()
	for _, id := range []string{"20261203T200942Z-163930", "20261203T201003Z-370320"} {
		os.MkdirAll(filepath.Join(runsDir(dir), id), 0o755)
	}
	_, err = Find(dir, "example-worker")
	if err == nil || !strings.HasSuffix(err.Error(), "; recent runs: 20261203T200942Z-163930, 20261203T201003Z-370320") {
		t.Fatalf("unknown run: %v", err)
	}
}

// A run's log bounds are its project's [logs], else guestlog's defaults (a run outside a project).
func TestLimits(t *testing.T) {
	if l, err := Limits(t.TempDir()); err != nil || l != guestlog.DefaultLimits {
		t.Errorf("outside a project: %+v %v", l, err)
	}
	dir := t.TempDir()
	cfg := "[project]\nname = \"app\"\nlanguage = \"shell\"\nentry = \"src/main.sh\"\n\n[env]\nbase = \"debian-12\"\n\n[logs]\nmax_size = \"1m\"\nmax_files = 3\n"
	if err := os.WriteFile(filepath.Join(dir, project.ConfigFile), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err := Limits(dir); err != nil || l.MaxSize != 1<<20 || l.MaxFiles != 3 {
		t.Errorf("[logs] max_size 1m, max_files 3: %+v %v", l, err)
	}
}
