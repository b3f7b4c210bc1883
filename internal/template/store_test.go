package template

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/crashpoint"
	"github.com/ukernel-dev/ukernel/internal/image"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/snapshot"
)

// testImage packs a small real image (a stand-in kernel and init, a tiny root) whose content
// depends on role and seed, and returns its path.
func testImage(t *testing.T, role string, seed int) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{
		"vmlinuz":            pseudo(1, 64<<10),
		"init":               pseudo(2, 32<<10),
		"root/app/main.sh":   []byte(fmt.Sprintf("echo %s %d\n", role, seed)),
		"modules/6.1.0-t/.k": nil,
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := filepath.Join(dir, "out.img")
	_, err := image.Pack(ctx, image.Input{
		Manifest: abi.Manifest{
			Name: "tpl", Role: role, Adapter: abi.Adapter{Name: "shell", Runtime: "debian-12"},
			Entry: []string{"/bin/sh", "/app/main.sh"}, Run: abi.RunDefaults{VCPU: 1, MemoryMB: 256, Net: "none"},
			Kernel: abi.Kernel{Package: "linux-image-test", Version: "1", Release: "6.1.0-t"},
			Lock:   abi.LockRef{Digest: "sha256:" + strings.Repeat("ab", 32), Packages: 7},
			Build:  abi.BuildInfo{Ukernel: "0.1.0-test", Go: "go1.26"},
		},
		KernelPath: filepath.Join(dir, "vmlinuz"), ModulesDir: filepath.Join(dir, "modules/6.1.0-t"),
		InitPath: filepath.Join(dir, "init"), RootDir: filepath.Join(dir, "root"), Output: out, SourceDateEpoch: 1700000000,
	})
	if err != nil {
		t.Fatalf("pack: %v", err)
	}
	return out
}

func pseudo(seed uint64, n int) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed)}))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func newStore(t *testing.T) *Store {
	t.Helper()
	return At(filepath.Join(t.TempDir(), "templates"))
}

func create(t *testing.T, s *Store, name string) {
	t.Helper()
	if err := s.Create(&Spec{Name: name, Source: "/src/" + name, Role: "api", VCPU: 2}); err != nil {
		t.Fatal(err)
	}
}

func add(t *testing.T, s *Store, name, img, key string) *Revision {
	t.Helper()
	r, err := s.AddImage(name, img, Revision{InputKey: key, Sizes: Sizes{Closure: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetCurrent(name, r.ID); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestOpenHonoursEnvironment(t *testing.T) {
	t.Setenv(EnvDir, "")
	t.Setenv("XDG_DATA_HOME", "/xdg")
	s, err := Open()
	if err != nil || s.Dir() != "/xdg/ukernel/templates" {
		t.Fatalf("XDG_DATA_HOME: %v %v", s, err)
	}
	t.Setenv(EnvDir, "/elsewhere/t")
	if s, err = Open(); err != nil || s.Dir() != "/elsewhere/t" {
		t.Fatalf("%s: %v %v", EnvDir, s, err)
	}
}

func TestCreateGetList(t *testing.T) {
	s := newStore(t)
	if _, err := s.Get("api"); err == nil || !strings.Contains(err.Error(), "no templates yet") {
		t.Fatalf("empty store: %v", err)
	}
	create(t, s, "api")
	create(t, s, "worker")
	var ex *ExistsError
	if err := s.Create(&Spec{Name: "api"}); !errors.As(err, &ex) {
		t.Fatalf("second create: %v", err)
	}
	if err := s.Create(&Spec{Name: "Bad_Name"}); err == nil || !strings.Contains(err.Error(), "invalid template name") {
		t.Fatalf("bad name: %v", err)
	}
	var nf *NotFoundError
	if _, err := s.Get("apu"); !errors.As(err, &nf) || !strings.Contains(err.Error(), "templates: api, worker") {
		t.Fatalf("unknown: %v", err)
	}
	got, err := s.Get("api")
	if err != nil || got.Source != "/src/api" || got.Role != "api" || got.VCPU != 2 || got.Created.IsZero() {
		t.Fatalf("get: %+v %v", got, err)
	}
	list, err := s.List()
	if err != nil || len(list) != 2 || list[0].Name != "api" || list[1].Name != "worker" {
		t.Fatalf("list: %+v %v", list, err)
	}
	got.MemoryMB = 512
	if err := s.Save(got); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.Get("api"); again.MemoryMB != 512 {
		t.Fatalf("saved: %+v", again)
	}
	if err := s.Delete("api"); err != nil {
		t.Fatal(err)
	}
	if names, _ := s.Names(); len(names) != 1 || names[0] != "worker" {
		t.Fatalf("after delete: %v", names)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), trashDir)); len(ents) != 0 {
		t.Fatalf("trash left: %v", ents)
	}
	// A directory without a spec (logs written after a delete) is no template: not listed, and
	// its name can be taken.
	os.MkdirAll(filepath.Join(s.TemplateDir("ghost"), "logs", "runs"), 0o755)
	if names, _ := s.Names(); len(names) != 1 {
		t.Fatalf("a directory without a spec is listed: %v", names)
	}
	if err := s.Create(&Spec{Name: "ghost"}); err != nil {
		t.Fatalf("create over a directory without a spec: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.TemplateDir("ghost"), "logs")); err == nil {
		t.Fatal("the old directory's content was kept")
	}
}

func TestRevisions(t *testing.T) {
	s := newStore(t)
	create(t, s, "api")
	if _, err := s.Resolve("api"); err == nil || !strings.Contains(err.Error(), "no revision yet") {
		t.Fatalf("never built: %v", err)
	}
	img1, img2 := testImage(t, "api", 1), testImage(t, "api", 2)
	r1 := add(t, s, "api", img1, "k1")
	r2 := add(t, s, "api", img2, "k2")
	if r1.ID == r2.ID || r1.Role != "api" || r1.Sizes.Total == 0 || r1.Sizes.Kernel != 64<<10 || r1.Sizes.Root == 0 || r1.Sizes.Packages != 7 || r1.Sizes.Closure != 1000 {
		t.Fatalf("revisions: %+v %+v", r1, r2)
	}
	if err := checkDigest(s.ImagePath("api", r1.ID), r1.ID); err != nil {
		t.Fatalf("id is not the image's digest: %v", err)
	}
	res, err := s.Resolve("api")
	if err != nil || res.Revision.ID != r2.ID || res.Image != s.ImagePath("api", r2.ID) || res.Spec.VCPU != 2 {
		t.Fatalf("resolve current: %+v %v", res, err)
	}
	if res, err = s.Resolve("api@" + r1.ID[:8]); err != nil || res.Revision.ID != r1.ID {
		t.Fatalf("resolve by prefix: %+v %v", res, err)
	}
	if _, err := s.Resolve("api@abcdabcd"); err == nil || !strings.Contains(err.Error(), r1.Short()) || !strings.Contains(err.Error(), r2.Short()) {
		t.Fatalf("unknown revision lists none: %v", err)
	}
	if _, err := s.Resolve("api@xyz"); err == nil {
		t.Fatal("a revision that is not hex was taken")
	}
	revs, _ := s.Revisions("api")
	if len(revs) != 2 || revs[0].ID != r2.ID {
		t.Fatalf("newest first: %+v", revs)
	}
	prev, err := s.Previous("api")
	if err != nil || prev.ID != r1.ID {
		t.Fatalf("previous: %+v %v", prev, err)
	}
	if err := s.SetCurrent("api", r1.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Previous("api"); err == nil || !strings.Contains(err.Error(), "oldest") {
		t.Fatalf("previous of the oldest: %v", err)
	}
	// The same image again is the same revision.
	if again, err := s.AddImage("api", img1, Revision{InputKey: "k1"}); err != nil || again.ID != r1.ID {
		t.Fatalf("same image: %+v %v", again, err)
	}
	// Keep 1: the current one (r1, the older) stays, r2 goes.
	// A revision a guest runs is never pruned.
	if removed, err := s.Prune(context.Background(), "api", 1, func() ([]string, error) { return []string{r2.ID}, nil }); err != nil || len(removed) != 0 {
		t.Fatalf("prune of a revision in use: %v %v", removed, err)
	}
	removed, err := s.Prune(context.Background(), "api", 1, nil)
	if err != nil || len(removed) != 1 || removed[0] != r2.ID {
		t.Fatalf("prune: %v %v", removed, err)
	}
	if err := s.Verify("api", r1.ID); err != nil {
		t.Fatalf("verify intact: %v", err)
	}
	// One flipped byte in the middle of the stored image.
	p := s.ImagePath("api", r1.ID)
	os.Chmod(p, 0o644)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	b := make([]byte, 1)
	f.ReadAt(b, fi.Size()/2)
	f.WriteAt([]byte{b[0] ^ 0xff}, fi.Size()/2)
	f.Close()
	var dmg *DamagedError
	if err := s.Verify("api", r1.ID); !errors.As(err, &dmg) || !strings.Contains(err.Error(), "template build --force api") {
		t.Fatalf("damaged image: %v", err)
	}
}

// A second template with the same input key takes the first one's revision, sharing its bytes;
// deleting the first leaves the second whole.
func TestFindKeySharesImages(t *testing.T) {
	s := newStore(t)
	create(t, s, "api")
	create(t, s, "api-big")
	r := add(t, s, "api", testImage(t, "api", 1), "key-1")
	if got, err := s.FindKey("api-big", "key-other"); err != nil || got != nil {
		t.Fatalf("unknown key: %+v %v", got, err)
	}
	got, err := s.FindKey("api-big", "key-1")
	if err != nil || got == nil || got.ID != r.ID {
		t.Fatalf("shared key: %+v %v", got, err)
	}
	a, _ := os.Stat(s.ImagePath("api", r.ID))
	b, _ := os.Stat(s.ImagePath("api-big", r.ID))
	if !os.SameFile(a, b) {
		t.Fatal("the shared revision's image is a copy, not the same file")
	}
	if err := s.Delete("api"); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify("api-big", r.ID); err != nil {
		t.Fatalf("after deleting the other template: %v", err)
	}
	// Its own revision now: found without the other template.
	if got, err := s.FindKey("api-big", "key-1"); err != nil || got == nil || got.ID != r.ID {
		t.Fatalf("own key: %+v %v", got, err)
	}
}

// Concurrent holders of one template's lock never overlap, and the one that waits is told who
// holds it.
func TestLockSerialises(t *testing.T) {
	s := newStore(t)
	create(t, s, "api")
	ctx := context.Background()
	counter := filepath.Join(t.TempDir(), "n")
	os.WriteFile(counter, []byte("0"), 0o644)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var holders []string
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := s.Lock(ctx, "api", fmt.Sprintf("test %d", i), func(h string) {
				mu.Lock()
				holders = append(holders, h)
				mu.Unlock()
			})
			if err != nil {
				t.Error(err)
				return
			}
			defer release()
			data, _ := os.ReadFile(counter)
			n, _ := strconv.Atoi(string(data))
			time.Sleep(5 * time.Millisecond)
			os.WriteFile(counter, []byte(strconv.Itoa(n+1)), 0o644)
		}()
	}
	wg.Wait()
	if data, _ := os.ReadFile(counter); string(data) != "8" {
		t.Fatalf("lost updates: counter %s, want 8", data)
	}
	if !slices.ContainsFunc(holders, func(h string) bool { return strings.Contains(h, "PID "+strconv.Itoa(os.Getpid())+" (test ") }) {
		t.Fatalf("waiters were not told the holder: %q", holders)
	}
	t.Setenv("UKERNEL_LOCK_WAIT", "200ms")
	release, err := s.Lock(ctx, "api", "ukernel template build", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	var le *LockedError
	if _, err := s.Lock(ctx, "api", "ukernel template edit", nil); !errors.As(err, &le) || !strings.Contains(err.Error(), "(ukernel template build)") {
		t.Fatalf("held lock: %v", err)
	}
	if _, err := s.Lock(ctx, "nosuch", "x", nil); err == nil {
		t.Fatal("locked a template that does not exist")
	}
	if _, err := os.Stat(s.TemplateDir("nosuch")); err == nil {
		t.Fatal("locking an unknown template created its directory")
	}
}

// TestPinHoldsPrune: a run that resolved an old revision pins the template until its guest's
// record names the revision; a build's prune meanwhile waits, then sees the record and keeps the
// revision. Pins are shared, and a build holding the template's lock does not hold them up.
func TestPinHoldsPrune(t *testing.T) {
	s := newStore(t)
	create(t, s, "api")
	old := add(t, s, "api", testImage(t, "api", 1), "k1")
	add(t, s, "api", testImage(t, "api", 2), "k2")
	ctx := context.Background()
	release, err := s.Lock(ctx, "api", "ukernel template build", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	unpin, err := s.Pin(ctx, "api") // the run: a build in progress does not hold it up
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.Pin(ctx, "api") // another run at once
	if err != nil {
		t.Fatal(err)
	}
	other()
	res, err := s.Resolve("api@" + old.ID[:12])
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var recorded []string // the revisions guests' records name
	pruned := make(chan []string, 1)
	go func() {
		removed, err := s.Prune(ctx, "api", 1, func() ([]string, error) {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(recorded), nil
		})
		if err != nil {
			t.Error(err)
		}
		pruned <- removed
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case removed := <-pruned:
		t.Fatalf("the prune ran while a run was starting from %s: removed %v", old.Short(), removed)
	default:
	}
	if _, err := os.Stat(res.Image); err != nil {
		t.Fatalf("the run's image went while it started: %v", err)
	}
	mu.Lock()
	recorded = append(recorded, res.Revision.ID) // the guest's record now names it
	mu.Unlock()
	unpin()
	if removed := <-pruned; len(removed) != 0 {
		t.Errorf("a revision a guest runs was pruned: %v", removed)
	}
	if removed, err := s.Prune(ctx, "api", 1, nil); err != nil || !slices.Equal(removed, []string{old.ID}) {
		t.Errorf("once no guest runs it: removed %v (%v), want %s", removed, err, old.Short())
	}
	if _, err := s.Pin(ctx, "nosuch"); err == nil {
		t.Error("pinned a template that does not exist")
	}
	if _, err := os.Stat(s.TemplateDir("nosuch")); err == nil {
		t.Error("pinning an unknown template created its directory")
	}
}

// The crash helper: a child of the test binary that runs one store operation with
// crashpoint.Env set, and so dies by SIGKILL at that step.
const helperEnv = "UKERNEL_TEMPLATE_TEST_HELPER"

func TestMain(m *testing.M) {
	if op := os.Getenv(helperEnv); op != "" {
		if err := helper(op); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helper(op string) error {
	s := At(os.Getenv("STORE"))
	switch op {
	case "create":
		return s.Create(&Spec{Name: "new", Source: "/src"})
	case "add":
		r, err := s.AddImage("api", os.Getenv("IMAGE"), Revision{InputKey: "k2"})
		if err != nil {
			return err
		}
		return s.SetCurrent("api", r.ID)
	case "delete":
		return s.Delete("api")
	}
	return fmt.Errorf("unknown op %q", op)
}

// A store operation killed at each of its write steps leaves the previous state whole: the
// current revision is the one before, nothing half-written is visible, and the next operation
// sweeps what the killed one left and succeeds.
func TestKillAtEachStep(t *testing.T) {
	img1, img2 := testImage(t, "api", 1), testImage(t, "api", 2)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range []struct {
		op, step string
		kills    bool // the operation reaches the step
	}{
		{"create", "atomic:" + SpecFile, true},
		{"create", "template-create", true},
		{"add", "atomic:" + RevisionFile, true},
		{"add", "template-revision", true},
		{"add", "atomic:k2", true}, // the input key, recorded after the revision is published
		{"add", "atomic:" + CurrentFile, true},
		{"delete", "atomic:*", false}, // delete is one rename
	} {
		t.Run(row.op+"/"+row.step, func(t *testing.T) {
			s := newStore(t)
			create(t, s, "api")
			r1 := add(t, s, "api", img1, "k1")
			cmd := exec.Command(exe, "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"="+row.op, crashpoint.Env+"="+row.step, "STORE="+s.Dir(), "IMAGE="+img2)
			out, err := cmd.CombinedOutput()
			killed := err != nil && strings.Contains(err.Error(), "signal: killed")
			if err != nil && !killed {
				t.Fatalf("helper: %v\n%s", err, out)
			}
			if killed != row.kills {
				t.Fatalf("killed at %s: %v, want %v", row.step, killed, row.kills)
			}
			// What must hold whether or not the step was reached.
			cur, err := s.Current("api")
			if row.op == "delete" && !killed {
				if _, err := s.Get("api"); err == nil {
					t.Fatal("delete left the template")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			revs, err := s.Revisions("api")
			if err != nil {
				t.Fatal(err)
			}
			if killed {
				if cur != r1.ID {
					t.Fatalf("current after a kill at %s: %s, want the previous %s", row.step, ShortID(cur), r1.Short())
				}
				if row.op == "create" {
					if _, err := s.Get("new"); err == nil {
						t.Fatal("a killed create left a template")
					}
					if err := s.Create(&Spec{Name: "new"}); err != nil {
						t.Fatalf("create after the kill: %v", err)
					}
				}
			} else if row.op == "add" && (cur == r1.ID || len(revs) != 2) {
				t.Fatalf("add not killed: current %s, %d revisions", ShortID(cur), len(revs))
			}
			for _, r := range revs {
				if err := s.Verify("api", r.ID); err != nil {
					t.Fatal(err)
				}
			}
			// The next writer sweeps what the killed one left, then succeeds.
			r2 := add(t, s, "api", img2, "k2")
			for _, dir := range []string{filepath.Join(s.TemplateDir("api"), RevisionsDir), filepath.Join(s.Dir(), trashDir)} {
				ents, _ := os.ReadDir(dir)
				for _, e := range ents {
					if strings.HasPrefix(e.Name(), ".") {
						t.Errorf("left behind: %s", filepath.Join(dir, e.Name()))
					}
				}
			}
			if cur, _ := s.Current("api"); cur != r2.ID {
				t.Fatalf("after the rerun: current %s", ShortID(cur))
			}
		})
	}
}

// Every input changes the key.
func TestInputKey(t *testing.T) {
	base := Inputs{Lock: "l", Source: "s", Role: "api", Ukernel: "u"}
	seen := map[string]string{base.Key(): "base"}
	for name, in := range map[string]Inputs{
		"lock": {Lock: "l2", Source: "s", Role: "api", Ukernel: "u"}, "source": {Lock: "l", Source: "s2", Role: "api", Ukernel: "u"},
		"role": {Lock: "l", Source: "s", Role: "worker", Ukernel: "u"}, "release": {Lock: "l", Source: "s", Role: "api", Ukernel: "u", Release: true},
		"ukernel": {Lock: "l", Source: "s", Role: "api", Ukernel: "u2"}, "epoch": {Lock: "l", Source: "s", Role: "api", Ukernel: "u", Epoch: "1"},
		"go": {Lock: "l", Source: "s", Role: "api", Ukernel: "u", Go: "go1.26"},
	} {
		if prev, ok := seen[in.Key()]; ok {
			t.Errorf("%s gives the key of %s", name, prev)
		}
		seen[in.Key()] = name
	}
	if base.Key() != (Inputs{Lock: "l", Source: "s", Role: "api", Ukernel: "u"}).Key() {
		t.Error("equal inputs, different keys")
	}
}

// stageSnapshot stages a sealed snapshot of revision id of template name, its memory file
// holding mem, to be published.
func stageSnapshot(t *testing.T, s *Store, name, id, mem string) *snapshot.Staging {
	t.Helper()
	st, err := snapshot.Stage(filepath.Join(s.RevisionDir(name, id), SnapshotDir))
	if err != nil {
		t.Fatal(err)
	}
	for f, content := range map[string]string{snapshot.StateFile: "state of " + mem, snapshot.MemoryFile: mem} {
		if err := os.WriteFile(filepath.Join(st.Dir, f), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Seal(&snapshot.Meta{Created: time.Now(), Ready: "settled"}, snapshot.StateFile, snapshot.MemoryFile); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestPublishSnapshotWaitsForPins: a snapshot taken again replaces the previous one only once
// no run is starting from the template (they hold the pin while their VMM opens the previous
// take's files); a pin held past the lock wait leaves the previous snapshot in place and says so.
func TestPublishSnapshotWaitsForPins(t *testing.T) {
	s := newStore(t)
	create(t, s, "api")
	r := add(t, s, "api", testImage(t, "api", 1), "k1")
	ctx := context.Background()
	dir := filepath.Join(s.RevisionDir("api", r.ID), SnapshotDir)
	if err := s.PublishSnapshot(ctx, "api", stageSnapshot(t, s, "api", r.ID, "first RAM")); err != nil {
		t.Fatal(err)
	}
	// A restore is starting from the first take.
	unpin, err := s.Pin(ctx, "api")
	if err != nil {
		t.Fatal(err)
	}
	take, err := snapshot.OpenTake(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer take.Close()
	published := make(chan error, 1)
	go func() { published <- s.PublishSnapshot(ctx, "api", stageSnapshot(t, s, "api", r.ID, "second RAM")) }()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-published:
		t.Fatalf("the snapshot was replaced while a restore was starting from it (%v)", err)
	default:
	}
	if err := take.Replaced(); err != nil {
		t.Fatalf("while the restore starts: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, snapshot.MemoryFile)); string(b) != "first RAM" {
		t.Fatalf("while the restore starts, the memory file holds %q", b)
	}
	unpin()
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	if err := take.Replaced(); err == nil {
		t.Error("the first take is still in place once the restore started")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, snapshot.MemoryFile)); string(b) != "second RAM" {
		t.Errorf("the published memory file holds %q", b)
	}

	// perf --template pins the template for all its boots: past the lock wait, the build gives up
	// and the snapshot in place stays.
	t.Setenv(project.LockWaitEnv, "200ms")
	unpin, err = s.Pin(ctx, "api")
	if err != nil {
		t.Fatal(err)
	}
	defer unpin()
	st := stageSnapshot(t, s, "api", r.ID, "third RAM")
	defer st.Abort()
	if err := s.PublishSnapshot(ctx, "api", st); err == nil || !strings.Contains(err.Error(), "the new snapshot is not published: runs kept starting from the template") {
		t.Errorf("publish past the lock wait: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, snapshot.MemoryFile)); string(b) != "second RAM" {
		t.Errorf("after a publish given up, the memory file holds %q", b)
	}
}
