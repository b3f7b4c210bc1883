package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/filelock"
)

// snapshotDir is the current revision's snapshot directory of template name in store.
func snapshotDir(t *testing.T, store, name string) string {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(store, name, "revisions", "*", "snapshot"))
	if len(dirs) != 1 {
		t.Fatalf("want one snapshot of %s, found %v", name, dirs)
	}
	return dirs[0]
}

// flip inverts one byte of path at off; flipping it again restores the content (not the file's
// identity: its seal has to hash it again).
func flip(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// randClock is what the test app's /rand answers: random bytes and the guest's wall clock.
type randClock struct {
	Rand string  `json:"rand"`
	Time float64 `json:"time"`
}

func getRand(port int) (randClock, error) {
	var rc randClock
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/rand", port))
	if err != nil {
		return rc, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return rc, fmt.Errorf("status %d", resp.StatusCode)
	}
	return rc, json.NewDecoder(resp.Body).Decode(&rc)
}

// TestSnapshotPython: one Python template's snapshot (taken once), restored twice at once:
// each clone serves its own random bytes and the host's time; ps, logs, stop and rm work on a
// restored guest, and its workload's exit code is the run's; trace and perf --template show a
// restore's phases; a fingerprint mismatch, other -e values and a flipped byte in the device
// state are refused by --restore with the reason, before any boot; a flipped byte in the memory
// file boots cold, saying why; the snapshot taken again while a restore is starting is
// published once that restore has started. Five boots in all (two snapshots', two restores,
// perf's restore) and one cold start that is not waited for.
func TestSnapshotPython(t *testing.T) {
	skipShort(t)
	store := filepath.Join(t.TempDir(), "templates")
	t.Setenv("UKERNEL_TEMPLATES", store)
	dir := newProject(t, "snapy", "--lang", "python", "--template", "python")
	mainPy := filepath.Join(dir, "src", "main.py")
	src, err := os.ReadFile(mainPy)
	if err != nil {
		t.Fatal(err)
	}
	routes := `ROUTES = {"/": index, HEALTH_PATH: health}`
	if !strings.Contains(string(src), routes) {
		t.Fatalf("the python preset's routes changed: %s lacks %q", mainPy, routes)
	}
	writeFile(t, mainPy, strings.Replace(string(src), routes,
		"import time\n"+`ROUTES = {"/": index, HEALTH_PATH: health, "/rand": lambda: {"rand": os.urandom(16).hex(), "time": time.time()}, "/exit": lambda: os._exit(3)}`, 1))
	mustUK(t, dir, time.Minute, "template", "create", "snapy", "--from", dir)
	defer noQEMULeft(t, "snapy")
	b := mustUK(t, dir, 15*time.Minute, "template", "build", "snapy", "--snapshot", "--accel", "tcg")
	if !strings.Contains(b.stdout, "snapshot taken (ready: healthy: main") {
		t.Fatalf("template build --snapshot: %s\n%s", b.stdout, b.stderr)
	}
	var info struct {
		Snapshot string `json:"snapshot"`
	}
	if err := json.Unmarshal([]byte(mustUK(t, dir, time.Minute, "--json", "template", "info", "snapy").stdout), &info); err != nil || info.Snapshot != "present" {
		t.Fatalf("template info: %v %+v", err, info)
	}
	snap := snapshotDir(t, store, "snapy")

	// Two restores at once, each with its own port.
	ports := []int{freePort(t), freePort(t)}
	var wg sync.WaitGroup
	starts := make([]result, 2)
	for i := range ports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			starts[i] = uk(t, dir, 2*time.Minute, "run", "--template", "snapy", "--name", fmt.Sprintf("snapy-%d", i),
				"-d", "--restore", "--accel", "tcg", "--publish", fmt.Sprintf("%d:8080", ports[i]))
		}()
	}
	wg.Wait()
	for i, r := range starts {
		name := fmt.Sprintf("snapy-%d", i)
		defer uk(t, dir, time.Minute, "rm", name)
		defer uk(t, dir, time.Minute, "stop", name)
		if r.code != 0 || !strings.Contains(r.stderr, "Restored from the snapshot of") {
			t.Fatalf("run --restore %s: exit %d\n%s", name, r.code, r.stderr)
		}
	}
	var answers []randClock
	for _, port := range ports {
		var rc randClock
		pollUntil(t, time.Minute, fmt.Sprintf("GET /rand on %d", port), func() bool {
			before := time.Now()
			var err error
			rc, err = getRand(port)
			after := time.Now()
			if err != nil {
				return false
			}
			// The guest's clock is the host's, give or take the request's time and 2 s.
			guest := time.Unix(0, int64(rc.Time*1e9))
			if guest.Before(before.Add(-2*time.Second)) || guest.After(after.Add(2*time.Second)) {
				t.Fatalf("guest clock %s, host %s..%s", guest.Format(time.RFC3339Nano), before.Format(time.RFC3339Nano), after.Format(time.RFC3339Nano))
			}
			return true
		})
		answers = append(answers, rc)
	}
	if len(answers[0].Rand) != 32 || answers[0].Rand == answers[1].Rand {
		t.Errorf("two restores of one snapshot gave the random bytes %q and %q", answers[0].Rand, answers[1].Rand)
	}
	t.Logf("clones: %+v", answers)

	// ps, logs, stop and rm as for a cold boot.
	running := 0
	for _, e := range ps(t, dir) {
		if strings.HasPrefix(e.Name, "snapy-") && e.Status == "running" {
			running++
		}
	}
	if running != 2 {
		t.Errorf("ps lists %d running restored guests, want 2: %+v", running, ps(t, dir))
	}
	// trace shows the latest restore's phases.
	var tr struct {
		Root traceSpan `json:"root"`
	}
	if err := json.Unmarshal([]byte(mustUK(t, dir, time.Minute, "--json", "trace", "--template", "snapy").stdout), &tr); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vmm.start", "restore.load", "restore.resume", "restore.reseed", "restore.first-output", "reseed"} {
		if !tr.Root.has(name) {
			t.Errorf("trace --template of a restore lacks the %s span: %+v", name, tr.Root)
		}
	}
	if l := mustUK(t, dir, time.Minute, "logs", "snapy-0"); !strings.Contains(l.stdout, "GET /rand") {
		t.Errorf("logs snapy-0 lacks the request:\n%s", l.stdout)
	}
	mustUK(t, dir, time.Minute, "stop", "snapy-0")
	if r := mustUK(t, dir, time.Minute, "ps", "-a"); !strings.Contains(r.stdout, "exited") {
		t.Errorf("ps -a after stop:\n%s", r.stdout)
	}
	mustUK(t, dir, time.Minute, "rm", "snapy-0")

	// A restored workload's exit code is the guest's, as at a cold boot.
	if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/exit", ports[1])); err == nil { // it exits before answering
		resp.Body.Close()
	}
	pollUntil(t, time.Minute, "snapy-1 exited with code 3", func() bool {
		var all []struct {
			Name     string `json:"name"`
			Status   string `json:"status"`
			ExitCode *int   `json:"exit_code"`
		}
		if json.Unmarshal([]byte(mustUK(t, dir, 30*time.Second, "--json", "ps", "-a").stdout), &all) != nil {
			return false
		}
		for _, e := range all {
			if e.Name == "snapy-1" && e.Status == "exited" && e.ExitCode != nil {
				if *e.ExitCode != 3 {
					t.Fatalf("the restored guest whose workload exited 3 exited with %d", *e.ExitCode)
				}
				return true
			}
		}
		return false
	})

	// perf --template measures a restore of its own.
	var pf struct {
		Restores bool `json:"restores"`
		Phases   []struct {
			Name string `json:"name"`
			N    int    `json:"n"`
		} `json:"phases"`
		ToReady struct {
			N int `json:"n"`
		} `json:"to_ready"`
	}
	if err := json.Unmarshal([]byte(mustUK(t, dir, 3*time.Minute, "--json", "perf", "--template", "snapy", "--runs", "1").stdout), &pf); err != nil {
		t.Fatal(err)
	}
	var phases []string
	for _, p := range pf.Phases {
		phases = append(phases, p.Name)
	}
	if got := strings.Join(phases, " "); !pf.Restores || pf.ToReady.N != 1 || !strings.HasPrefix(got, "qemu restore.load restore.resume restore.reseed") || !strings.Contains(got, " reseed") {
		t.Errorf("perf --template: restores %v, phases %q, to-ready n=%d", pf.Restores, got, pf.ToReady.N)
	}

	// Refused by --restore before any boot, each with its one-line reason.
	refuse := func(why string, args ...string) {
		t.Helper()
		r := uk(t, dir, time.Minute, append([]string{"run", "--template", "snapy", "--name", "snapy-x", "--restore", "--accel", "tcg"}, args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, why) {
			t.Errorf("run --restore %v: exit %d, want a failure saying %q:\n%s", args, r.code, why, r.stderr)
		}
	}
	refuse("memory differs (this run: 512 MiB, the snapshot: 256 MiB)", "--memory", "512")
	refuse("the run's -e values differ from the snapshot's", "-e", "GREETING=hi")
	flip(t, filepath.Join(snap, "state"), 100)
	refuse("snapshot file state changed since it was saved")
	flip(t, filepath.Join(snap, "state"), 100)

	// Taken again while a restore is starting (the test holds the template's pin, as a run
	// --template does until its VMM has opened the snapshot's files, from the moment the build
	// boots the guest to save): the build seals the new take beside the snapshot and publishes
	// it only once no restore is starting.
	before, err := os.ReadFile(filepath.Join(snap, "snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	retake := make(chan result, 1)
	go func() {
		retake <- uk(t, dir, 15*time.Minute, "template", "build", "snapy", "--snapshot", "--accel", "tcg")
	}()
	unpin := func() {}
	waitBuild := func(what, glob string) {
		t.Helper()
		pollUntil(t, 10*time.Minute, what, func() bool {
			select {
			case r := <-retake:
				unpin()
				t.Fatalf("template build --snapshot ended before %s (exit %d):\n%s", what, r.code, r.stderr)
			default:
			}
			found, _ := filepath.Glob(filepath.Join(filepath.Dir(snap), ".snapshot-*", glob))
			return len(found) == 1
		})
	}
	waitBuild("the new take's boot", "")
	if unpin, err = filelock.AcquireShared(t.Context(), filepath.Join(store, "snapy", "pin"), 0); err != nil {
		t.Fatal(err)
	}
	waitBuild("the new take sealed, waiting to be published", "snapshot.json")
	time.Sleep(time.Second)
	if now, _ := os.ReadFile(filepath.Join(snap, "snapshot.json")); string(now) != string(before) {
		t.Errorf("the snapshot was replaced while a restore was starting from it")
	}
	unpin()
	if r := <-retake; r.code != 0 || !strings.Contains(r.stdout, "snapshot taken") {
		t.Fatalf("template build --snapshot again: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if now, _ := os.ReadFile(filepath.Join(snap, "snapshot.json")); string(now) == string(before) {
		t.Errorf("the snapshot taken again was not published")
	}

	// A flipped byte in the memory file: a cold boot, with the reason.
	flip(t, filepath.Join(snap, "memory"), 1<<20)
	defer flip(t, filepath.Join(snap, "memory"), 1<<20)
	r := uk(t, dir, 2*time.Minute, "run", "--template", "snapy", "--name", "snapy-c", "-d", "--accel", "tcg", "--publish", fmt.Sprintf("%d:8080", freePort(t)))
	defer uk(t, dir, time.Minute, "rm", "snapy-c")
	defer uk(t, dir, time.Minute, "stop", "snapy-c")
	if r.code != 0 || !strings.Contains(r.stderr, "Booting cold: snapshot file memory changed since it was saved") || strings.Contains(r.stderr, "Restored") {
		t.Errorf("run with a flipped byte in the memory file: exit %d, want a cold boot saying why:\n%s", r.code, r.stderr)
	}
}

// traceSpan is a span of trace --json.
type traceSpan struct {
	Name     string      `json:"name"`
	Children []traceSpan `json:"children"`
}

func (s traceSpan) has(name string) bool {
	if s.Name == name {
		return true
	}
	for _, c := range s.Children {
		if c.has(name) {
			return true
		}
	}
	return false
}

// TestSnapshotPostgres: a postgres template's snapshot, taken after a row was written on a cold
// run, restores and answers psql with that row; the restored guest's own writes stay in its copy
// of the data volume, so the next restore does not see them (a snapshot is a point in time).
func TestSnapshotPostgres(t *testing.T) {
	skipShort(t)
	if _, err := exec.LookPath("psql"); err != nil {
		t.Skip("psql not found: install postgresql-client (scripts/deps.sh)")
	}
	store := filepath.Join(t.TempDir(), "templates")
	t.Setenv("UKERNEL_TEMPLATES", store)
	dir := newProject(t, "snapg", "--lang", "shell", "--template", "postgres")
	mustUK(t, dir, time.Minute, "template", "create", "snapg", "--from", dir)
	mustUK(t, dir, 15*time.Minute, "template", "build", "snapg")
	defer noQEMULeft(t, "snapg")

	// A cold run writes the row into the template's data volume (initdb runs on its first boot).
	port := freePort(t)
	mustUK(t, dir, 2*time.Minute, "run", "--template", "snapg", "-d", "--cold", "--accel", "tcg", "--publish", fmt.Sprintf("%d:5432", port))
	pollUntil(t, 4*time.Minute, "psql on the cold run", func() bool {
		out, err := psql(port, "select 1")
		return err == nil && out == "1"
	})
	if out, err := psql(port, "create table kept(v text); insert into kept values ('before the snapshot')"); err != nil {
		t.Fatalf("psql: %v: %s", err, out)
	}
	mustUK(t, dir, time.Minute, "stop", "snapg")
	mustUK(t, dir, time.Minute, "rm", "snapg")

	b := mustUK(t, dir, 10*time.Minute, "template", "build", "snapg", "--snapshot", "--accel", "tcg")
	if !strings.Contains(b.stdout, "snapshot taken (ready: healthy") {
		t.Fatalf("template build --snapshot: %s\n%s", b.stdout, b.stderr)
	}
	restore := func(name string) int {
		port := freePort(t)
		r := mustUK(t, dir, 2*time.Minute, "run", "--template", "snapg", "--name", name, "-d", "--restore", "--accel", "tcg", "--publish", fmt.Sprintf("%d:5432", port))
		if !strings.Contains(r.stderr, "Restored from the snapshot of") {
			t.Fatalf("run --restore: %s", r.stderr)
		}
		return port
	}
	p1 := restore("snapg-1")
	var rows string
	pollUntil(t, time.Minute, "psql on the restored guest", func() bool {
		var err error
		rows, err = psql(p1, "select v from kept order by v")
		return err == nil
	})
	if rows != "before the snapshot" {
		t.Errorf("the restored database holds %q, want the row written before the snapshot", rows)
	}
	if out, err := psql(p1, "insert into kept values ('after the restore')"); err != nil {
		t.Fatalf("psql: %v: %s", err, out)
	}
	mustUK(t, dir, time.Minute, "stop", "snapg-1")
	if _, err := os.Stat(filepath.Join(store, "snapg", ".ukernel", "restored", "snapg-1.img")); err != nil {
		t.Errorf("the restored guest's data copy is gone after stop: %v", err)
	}
	mustUK(t, dir, time.Minute, "rm", "snapg-1")

	p2 := restore("snapg-2")
	defer uk(t, dir, time.Minute, "rm", "snapg-2")
	defer uk(t, dir, time.Minute, "stop", "snapg-2")
	pollUntil(t, time.Minute, "psql on the second restore", func() bool {
		var err error
		rows, err = psql(p2, "select v from kept order by v")
		return err == nil
	})
	if rows != "before the snapshot" {
		t.Errorf("the second restore holds %q: the first restore's write reached the snapshot", rows)
	}
}
