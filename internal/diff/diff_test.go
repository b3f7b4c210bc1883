package diff

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/lock"
)

func writeLock(t *testing.T, dir, name string, l *lock.Lock) string {
	t.Helper()
	data, err := l.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func baseLock() *lock.Lock {
	return &lock.Lock{
		Version: lock.FormatVersion, Base: "python-3.11",
		Request: lock.Request{Base: "python-3.11", System: []string{}, Python: []string{}},
		Packages: []lock.Package{
			{Name: "libc6", Version: "2.36-9+deb12u10", Size: 2_800_000},
			{Name: "python3.11-minimal", Version: "3.11.2-6+deb12u6", Size: 2_000_000},
		},
		Kernel: &lock.Package{Name: "linux-image-6.1.0-56-cloud-amd64", Version: "6.1.192-2", Size: 26_700_000},
	}
}

func TestLocks(t *testing.T) {
	dir := t.TempDir()
	a := writeLock(t, dir, "a.lock", baseLock())
	same := writeLock(t, dir, "same.lock", baseLock())
	l := baseLock()
	l.Request.System = []string{"jq"}
	l.Packages = append([]lock.Package(nil),
		lock.Package{Name: "libc6", Version: "2.36-9+deb12u11", Size: 2_800_100},
		lock.Package{Name: "jq", Version: "1.6-2.1", Size: 64_000},
		lock.Package{Name: "libjq1", Version: "1.6-2.1", Size: 135_000})
	b := writeLock(t, dir, "b.lock", l)

	r, err := Compare(context.Background(), a, same)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Identical {
		t.Fatalf("identical locks reported different: %+v", r)
	}
	r, err = Compare(context.Background(), a, b)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := WriteText(&out, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"+ jq 1.6-2.1", "+ libjq1 1.6-2.1", "- python3.11-minimal", "~ libc6 2.36-9+deb12u10 -> 2.36-9+deb12u11", "request (system): (none) -> jq", "-1.7 MiB"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	notes := filepath.Join(dir, "notes.txt")
	os.WriteFile(notes, []byte("hello\n"), 0o644)
	badJSON := filepath.Join(dir, "x.lock")
	os.WriteFile(badJSON, []byte(`{"version": 1, "bogus": true}`), 0o644)
	l := writeLock(t, dir, "a.lock", baseLock())
	for _, c := range []struct{ a, b, want string }{
		{notes, l, "notes.txt is neither a ukernel image"},
		{l, badJSON, "x.lock is neither a ukernel image"},
		{l, filepath.Join(dir, "missing.img"), "no such file"},
		{dir, l, "is a directory"},
	} {
		_, err := Compare(context.Background(), c.a, c.b)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Compare(%s, %s) = %v, want %q", filepath.Base(c.a), filepath.Base(c.b), err, c.want)
		}
	}
}

// TestImagesWithAddedPackage builds the minimal preset with the real binary, adds jq, builds
// again and compares the two images: the report names jq and the libraries it pulled in, the
// files they added and the root filesystem's growth; two copies of one image are identical.
func TestImagesWithAddedPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds images and fetches packages; runs without -short")
	}
	for _, tool := range []string{"fsck.erofs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install erofs-utils", tool)
		}
	}
	work := t.TempDir()
	bin := filepath.Join(work, "ukernel")
	run := func(timeout time.Duration, args ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("%v: %v", args, err)
		}
		if ctx.Err() != nil {
			t.Fatalf("%v: timed out", args)
		}
		return out.String() + errb.String(), cmd.ProcessState.ExitCode()
	}
	if out, code := run(5*time.Minute, "go", "build", "-o", bin, "../../cmd/ukernel"); code != 0 {
		t.Fatalf("go build: %s", out)
	}
	proj := filepath.Join(work, "proj")
	uk := func(args ...string) (string, int) {
		return run(10*time.Minute, append([]string{bin, "-C", proj}, args...)...)
	}
	mustUK := func(args ...string) string {
		out, code := uk(args...)
		if code != 0 {
			t.Fatalf("ukernel %v: exit %d\n%s", args, code, out)
		}
		return out
	}
	mustUK("init", "--name", "diffmin", "--template", "minimal")
	mustUK("pack")
	img := filepath.Join(proj, "dist", "diffmin.img")
	before := filepath.Join(work, "before.img")
	beforeLock := filepath.Join(work, "before.lock")
	for src, dst := range map[string]string{img: before, filepath.Join(proj, "env", "ukernel.lock"): beforeLock} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(dst, data, 0o644)
	}

	out := mustUK("diff", before, img)
	if !strings.Contains(out, "are identical") {
		t.Errorf("diff of identical images:\n%s", out)
	}
	if out, code := uk("diff", "--exit-code", before, img); code != 0 {
		t.Errorf("diff --exit-code of identical images exited %d:\n%s", code, out)
	}

	mustUK("env", "add", "--system", "jq")
	mustUK("pack")
	out = mustUK("diff", before, img)
	for _, want := range []string{"+ jq ", "+ libjq1 ", "+ libonig5 ", "+ /usr/bin/jq", "root filesystem", "packages: "} {
		if !strings.Contains(out, want) {
			t.Errorf("diff after adding jq lacks %q:\n%s", want, out)
		}
	}
	t.Logf("diff:\n%s", out)
	if _, code := uk("diff", "--exit-code", before, img); code != 1 {
		t.Errorf("diff --exit-code of different images exited %d, want 1", code)
	}
	js, _ := uk("diff", "--json", before, img)
	var r Report
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		t.Fatalf("diff --json: %v\n%s", err, js)
	}
	var grew bool
	for _, s := range r.Sizes {
		if s.What == "root filesystem" && s.B > s.A {
			grew = true
		}
	}
	if !grew || len(r.Added) != 3 || len(r.Removed) != 0 {
		t.Errorf("report: sizes %+v, added %+v, removed %+v", r.Sizes, r.Added, r.Removed)
	}
	out = mustUK("diff", beforeLock, filepath.Join(proj, "env", "ukernel.lock"))
	if !strings.Contains(out, "+ jq ") || !strings.Contains(out, "download size") {
		t.Errorf("lock diff:\n%s", out)
	}
	if out, code := uk("diff", before, filepath.Join(proj, "ukernel.toml")); code != 1 || !strings.Contains(out, "neither a ukernel image") {
		t.Errorf("diff with a non-image: exit %d\n%s", code, out)
	}
}
