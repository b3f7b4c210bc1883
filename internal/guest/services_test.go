package guest

import (
	"context"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/testenv"
)

func TestShouldRestart(t *testing.T) {
	for _, c := range []struct {
		policy string
		code   int
		forced bool
		want   bool
	}{
		{"no", 1, false, false}, {"no", 0, true, false}, {"", 1, false, false},
		{"on-failure", 0, false, false}, {"on-failure", 3, false, true}, {"on-failure", 0, true, true},
		{"always", 0, false, true}, {"always", 137, false, true},
	} {
		if got := ShouldRestart(c.policy, c.code, c.forced); got != c.want {
			t.Errorf("ShouldRestart(%q, %d, %v) = %v, want %v", c.policy, c.code, c.forced, got, c.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	b := DefaultBackoff()
	now := time.Unix(1000, 0)
	var delays []time.Duration
	for i := 0; i < 7; i++ {
		d, ok := b.Next(now, time.Second)
		if !ok {
			t.Fatalf("gave up after %d restarts", i)
		}
		delays = append(delays, d)
		now = now.Add(d + time.Second)
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30}
	for i := range want {
		if delays[i] != want[i]*time.Second {
			t.Fatalf("delays %v, want %v seconds", delays, want)
		}
	}
	// A run longer than Stable resets the delay.
	if d, _ := b.Next(now, time.Minute); d != time.Second {
		t.Errorf("after a stable run: delay %v, want 1s", d)
	}
	// The limit: 10 restarts within the window, then no more until old ones leave it.
	b = DefaultBackoff()
	now = time.Unix(1000, 0)
	for i := 0; i < 10; i++ {
		if _, ok := b.Next(now, 0); !ok {
			t.Fatalf("gave up at restart %d", i+1)
		}
		now = now.Add(time.Second)
	}
	if _, ok := b.Next(now, 0); ok {
		t.Fatal("11th restart within the window allowed")
	}
	if _, ok := b.Next(now.Add(b.Window), 0); !ok {
		t.Error("no restart allowed once the window has passed")
	}
}

func TestHealthState(t *testing.T) {
	t0 := time.Unix(0, 0)
	h := NewHealthState(abi.HealthCheck{Retries: 3, StartPeriod: 10}, t0)
	step := func(ok bool, at int, want string, changed bool) {
		t.Helper()
		s, c := h.Observe(ok, t0.Add(time.Duration(at)*time.Second))
		if s != want || c != changed {
			t.Fatalf("at %ds ok=%v: status %s changed %v, want %s %v", at, ok, s, c, want, changed)
		}
	}
	if h.Status() != HealthStarting {
		t.Fatalf("initial status %s", h.Status())
	}
	step(false, 1, HealthStarting, false) // within the start period: not counted
	step(false, 5, HealthStarting, false)
	step(false, 11, HealthStarting, false) // 1 of 3
	step(false, 12, HealthStarting, false) // 2 of 3
	step(true, 13, HealthHealthy, true)    // success resets the count
	step(false, 14, HealthHealthy, false)
	step(false, 15, HealthHealthy, false)
	step(false, 16, HealthUnhealthy, true)
	step(false, 17, HealthUnhealthy, false)
	step(true, 18, HealthHealthy, true)
	// Once healthy, the start period no longer hides failures; a restart brings it back.
	if !h.Reset(t0.Add(20 * time.Second)) {
		t.Error("Reset from healthy did not report a change")
	}
	step(false, 21, HealthStarting, false)
	if h.Reset(t0.Add(22 * time.Second)) {
		t.Error("Reset from starting reported a change")
	}
}

func TestLookupUserAndCredential(t *testing.T) {
	users := []abi.User{{Name: "root"}, {Name: "app", UID: 1000, GID: 1000, Home: "/app"}, {Name: "postgres", UID: 101, GID: 101}}
	u, err := LookupUser(users, "postgres")
	if err != nil || u.UID != 101 {
		t.Fatalf("postgres: %+v %v", u, err)
	}
	if c := Credential(u, 0); c == nil || c.Uid != 101 || c.Gid != 101 || c.Groups == nil || len(c.Groups) != 0 {
		t.Errorf("credential %+v: want 101:101 and an empty (not nil) group list", c)
	}
	if c := Credential(u, SecretGroupBase+2); c == nil || c.Gid != 101 || !slices.Equal(c.Groups, []uint32{SecretGroupBase + 2}) {
		t.Errorf("credential with a secret group %+v: want 101:101 and only that group", c)
	}
	if u, err := LookupUser(nil, ""); err != nil || u.UID != 0 || Credential(u, SecretGroupBase) != nil {
		t.Errorf("empty name: %+v %v, want root with no credential change", u, err)
	}
	if _, err := LookupUser(users, "mallory"); err == nil || !strings.Contains(err.Error(), "app, postgres, root") {
		t.Errorf("unknown user: %v", err)
	}
}

// secretsManifest: the entry and the service worker both run as app and declare a secret each;
// db_password is declared by processes of two users.
func secretsManifest() *abi.Manifest {
	return &abi.Manifest{
		Entry: []string{"/bin/true"}, User: "app", Secrets: []string{"api"},
		Users: []abi.User{{Name: "app", UID: 1000, GID: 1000}, {Name: "postgres", UID: 101, GID: 101}},
		Services: []abi.Service{
			{Name: "db", User: "postgres", Secrets: []string{"db_password", "unset"}},
			{Name: "web", User: "app", Secrets: []string{"db_password"}},
			{Name: "quiet", User: "app"},
			{Name: "worker", User: "app", Secrets: []string{"worker_key"}},
		},
	}
}

func TestPlanSecrets(t *testing.T) {
	p, err := PlanSecrets(secretsManifest())
	if err != nil {
		t.Fatal(err)
	}
	const g = SecretGroupBase
	if p.Entry != g || !maps.Equal(p.Services, map[string]uint32{"db": g + 1, "web": g + 2, "worker": g + 4}) {
		t.Errorf("groups: entry %d services %v", p.Entry, p.Services)
	}
	want := map[string][]uint32{"api": {g}, "db_password": {g + 1, g + 2}, "unset": {g + 1}, "worker_key": {g + 4}}
	if !maps.EqualFunc(p.Readers, want, slices.Equal) {
		t.Errorf("readers %v, want %v", p.Readers, want)
	}
	// Without an entry its secrets have no reader; a services-only manifest plans no entry group.
	m := secretsManifest()
	m.Entry = nil
	if p, _ := PlanSecrets(m); p.Entry != 0 || p.Readers["api"] != nil {
		t.Errorf("no entry: entry group %d, api readers %v", p.Entry, p.Readers["api"])
	}
	m = secretsManifest()
	m.Users = append(m.Users, abi.User{Name: "odd", UID: 5, GID: g + 3})
	if _, err := PlanSecrets(m); err == nil || !strings.Contains(err.Error(), "user odd has gid") {
		t.Errorf("a user in the reserved groups: %v", err)
	}
}

func TestWriteSecrets(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	dir := filepath.Join(t.TempDir(), "secrets")
	plan, err := PlanSecrets(secretsManifest())
	if err != nil {
		t.Fatal(err)
	}
	given := map[string][]byte{"api": []byte("k1"), "db_password": []byte("pw"), "worker_key": []byte("k2"), "stray": []byte("x")}
	undeclared, missing, err := WriteSecrets(dir, given, plan.Readers)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(undeclared, ",") != "stray" || strings.Join(missing, ",") != "unset" {
		t.Errorf("undeclared %v missing %v", undeclared, missing)
	}
	fi, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o711 {
		t.Errorf("secrets dir mode %v, want 0711", fi.Mode().Perm())
	}
	for name, gid := range map[string]uint32{"api": plan.Entry, "worker_key": plan.Services["worker"]} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o440 || st.Uid != 0 || st.Gid != gid {
			t.Errorf("%s: mode %v owner %d:%d, want 0440 0:%d", name, fi.Mode().Perm(), st.Uid, st.Gid, gid)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "stray")); err == nil {
		t.Error("an undeclared secret was written")
	}
	for _, d := range []string{filepath.Dir(dir), filepath.Dir(filepath.Dir(dir))} {
		os.Chmod(d, 0o711) // let the test users reach it
	}
	// Each process reads what it declared and nothing else, also when it shares its user with
	// another: the entry and worker both run as app (1000), as does web.
	procs := map[string]struct {
		uid uint32
		gid uint32
	}{
		"entry":  {1000, plan.Entry},
		"worker": {1000, plan.Services["worker"]},
		"web":    {1000, plan.Services["web"]},
		"db":     {101, plan.Services["db"]},
		"quiet":  {1000, plan.Services["quiet"]},
	}
	readable := map[string][]string{"entry": {"api"}, "worker": {"worker_key"}, "web": {"db_password"}, "db": {"db_password"}}
	for proc, id := range procs {
		for _, name := range []string{"api", "db_password", "worker_key"} {
			cmd := exec.Command("cat", filepath.Join(dir, name))
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: Credential(abi.User{UID: int(id.uid), GID: int(id.uid)}, id.gid)}
			out, err := cmd.CombinedOutput()
			got := err == nil && string(out) == string(given[name])
			if want := slices.Contains(readable[proc], name); got != want {
				t.Errorf("%s (uid %d, group %d) reads %s: %v (%v, %q), want %v", proc, id.uid, id.gid, name, got, err, out, want)
			}
		}
	}
}

func TestOutputConsolePrefixed(t *testing.T) {
	var buf testenv.SyncBuffer
	o := NewOutput(nil, &buf)
	w, err := o.Pipe("db", abi.FrameStdout)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString("one\ntwo\npartial")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	o.Close(ctx)
	if got := buf.String(); got != "[db] one\n[db] two\n[db] partial\n" {
		t.Errorf("console %q", got)
	}
}

// TestOutputFramed: on the output channel each stream of each process arrives in frames naming
// its service and stream, after a hello; Close waits until everything was written.
func TestOutputFramed(t *testing.T) {
	var buf testenv.SyncBuffer
	o := NewOutput(&buf, io.Discard)
	entryOut, _ := o.Pipe("", abi.FrameStdout)
	entryErr, _ := o.Pipe("", abi.FrameStderr)
	dbErr, _ := o.Pipe("db", abi.FrameStderr)
	entryOut.WriteString("to stdout\n")
	entryErr.WriteString("to stderr\n")
	dbErr.WriteString(strings.Repeat("x", 100<<10))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !o.Close(ctx) {
		t.Error("Close reported the output cut; the channel took all of it")
	}
	fr := abi.NewFrameReader(strings.NewReader(buf.String()))
	got := map[string]string{}
	first := true
	for {
		f, err := fr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if first && (f.Kind != abi.FrameHello || string(f.Data) != abi.Version) {
			t.Fatalf("first frame %+v, want a hello with the ABI version", f)
		}
		first = false
		got[f.Service+"/"+map[byte]string{abi.FrameHello: "hello", abi.FrameStdout: "stdout", abi.FrameStderr: "stderr"}[f.Kind]] += string(f.Data)
	}
	want := map[string]string{"/hello": abi.Version, "/stdout": "to stdout\n", "/stderr": "to stderr\n", "db/stderr": strings.Repeat("x", 100<<10)}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d bytes %.40q, want %d bytes", k, len(got[k]), got[k], len(v))
		}
	}
	if len(got) != len(want) {
		t.Errorf("streams %v", slices.Sorted(maps.Keys(got)))
	}
}

// TestOutputCloseHostNotReading: a host that stops reading the output channel (its socket
// full, the UART stuck) must not hold power-off. A copier is blocked writing a frame when the
// workload ends; Close returns at its deadline, reports the output cut, and the blocked write
// ends (the copier finishes, dropping the rest).
func TestOutputCloseHostNotReading(t *testing.T) {
	host, channel, err := os.Pipe() // the channel; the host reads only the hello
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	defer channel.Close()
	o := NewOutput(channel, io.Discard)
	hello := make([]byte, 5+len(abi.Version))
	if _, err := io.ReadFull(host, hello); err != nil || hello[0] != abi.FrameMagic || hello[1] != abi.FrameHello {
		t.Fatalf("hello %q, %v", hello, err)
	}
	w, err := o.Pipe("", abi.FrameStdout)
	if err != nil {
		t.Fatal(err)
	}
	// More than the channel (64 KiB), a copier's read (32 KiB) and the workload's pipe (64 KiB)
	// hold: the workload blocks, as does the copier's write.
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		w.Write(make([]byte, 512<<10))
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case <-wrote:
		t.Fatal("512 KiB went into a channel nobody reads")
	default:
	}

	closed := make(chan bool, 1)
	begin := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		closed <- o.Close(ctx)
	}()
	select {
	case complete := <-closed:
		if complete {
			t.Error("Close reported all output delivered; the host read none of it")
		}
		if d := time.Since(begin); d > 2*time.Second {
			t.Errorf("Close took %v with a deadline of 500ms", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close still blocked 10s after its 500ms deadline: power-off would wait for a host that does not read")
	}
	done := make(chan struct{})
	go func() { o.copiers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the copier is still blocked on the channel after Close cut the output")
	}
	<-wrote
}

// TestOutputHelloNotTaken: a channel that does not take the hello frame is given up for the
// console within the hello's deadline, rather than blocking init's boot.
func TestOutputHelloNotTaken(t *testing.T) {
	defer func(d time.Duration) { helloTimeout = d }(helloTimeout)
	helloTimeout = 200 * time.Millisecond
	host, channel, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	defer channel.Close()
	// A full channel: the host has not read for a while.
	channel.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	for {
		if _, err := channel.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	channel.SetWriteDeadline(time.Time{})
	var console testenv.SyncBuffer
	made := make(chan *Output, 1)
	go func() { made <- NewOutput(channel, &console) }()
	var o *Output
	select {
	case o = <-made:
	case <-time.After(5 * time.Second):
		t.Fatal("NewOutput still blocked on the hello 5s later")
	}
	if o.Framed() {
		t.Error("the output stays on a channel that did not take its hello")
	}
	if !strings.Contains(console.String(), "output channel did not take its first frame") {
		t.Errorf("console %q: no word of the channel given up", console.String())
	}
}

func TestDataVolume(t *testing.T) {
	img := filepath.Join(t.TempDir(), "data.img")
	f, _ := os.Create(img)
	f.Truncate(8 << 20)
	f.Close()
	if IsDataVolume(mustOpen(t, img)) {
		t.Fatal("an empty file taken for the data volume")
	}
	if out, err := runCmd("mkfs.ext4", "-F", "-q", "-L", abi.DataLabel, img); err != nil {
		t.Skipf("mkfs.ext4 (install e2fsprogs): %v %s", err, out)
	}
	if !IsDataVolume(mustOpen(t, img)) {
		t.Error("ext4 labelled ukernel-data not recognised")
	}
	// The superblock's size is what GrowData compares with the disk's.
	blocks, bsize, err := ext4Blocks(mustOpen(t, img))
	if err != nil || bsize == 0 || blocks*bsize != 8<<20 {
		t.Errorf("ext4Blocks: %d blocks of %d bytes (%v), want 8 MiB", blocks, bsize, err)
	}
	if _, _, err := ext4Blocks(strings.NewReader(strings.Repeat("\x00", 4096))); err == nil {
		t.Error("ext4Blocks of zeros: no error")
	}
	runCmd("e2label", img, "other")
	if IsDataVolume(mustOpen(t, img)) {
		t.Error("ext4 with another label taken for the data volume")
	}
	owner, shared := DataOwner(&abi.Manifest{Entry: []string{"x"}, User: "postgres"})
	if owner != "postgres" || shared {
		t.Errorf("owner %s shared %v", owner, shared)
	}
	owner, shared = DataOwner(&abi.Manifest{Services: []abi.Service{{User: "app"}, {User: "postgres"}}})
	if owner != "app" || !shared {
		t.Errorf("owner %s shared %v", owner, shared)
	}
}

func TestClaimData(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	dir := t.TempDir()
	os.Chown(dir, 0, 0)
	if err := claimData(dir, abi.User{Name: "postgres", UID: 101, GID: 101}, false); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(dir)
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 101 || fi.Mode().Perm() != 0o755 {
		t.Errorf("after claim: uid %d mode %v", st.Uid, fi.Mode())
	}
	// Claimed once: a later owner change by the workload is kept.
	os.Chown(dir, 102, 102)
	claimData(dir, abi.User{Name: "postgres", UID: 101, GID: 101}, false)
	if fi, _ := os.Stat(dir); fi.Sys().(*syscall.Stat_t).Uid != 102 {
		t.Error("claim changed the owner of a volume already handed over")
	}
}

func mustOpen(t *testing.T, p string) *os.File {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func runCmd(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}
