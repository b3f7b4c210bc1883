package deploy

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func testAgent(t *testing.T) *Agent {
	t.Helper()
	return &Agent{Exe: "/bin/true", dirs: hostDirs{State: t.TempDir(), Run: t.TempDir()}}
}

// TestPutImage: the host keeps an image only when its bytes hash to the digest deploy named,
// and refuses one changed since.
func TestPutImage(t *testing.T) {
	a := testAgent(t)
	os.MkdirAll(filepath.Join(a.dirs.State, "images"), 0o700)
	data := []byte("an image's bytes")
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	other := strings.Repeat("0", 64)
	if _, err := a.putImage(other, strings.NewReader(string(data))); err == nil || !strings.Contains(err.Error(), "nothing stored") {
		t.Errorf("bytes of another digest: %v", err)
	}
	if left, _ := os.ReadDir(filepath.Join(a.dirs.State, "images")); len(left) != 0 {
		t.Errorf("a refused image left %v", left)
	}
	put, err := a.putImage(digest, strings.NewReader(string(data)))
	if err != nil || put.Bytes != int64(len(data)) {
		t.Fatalf("putImage: %+v, %v", put, err)
	}
	if _, err := a.verifyImage(digest); err != nil {
		t.Errorf("verify the stored image: %v", err)
	}
	p := a.dirs.image(digest)
	os.Chmod(p, 0o644)
	os.WriteFile(p, []byte("changed on the host"), 0o644)
	if _, err := a.verifyImage(digest); err == nil || !strings.Contains(err.Error(), "changed on the host") {
		t.Errorf("a changed image: %v", err)
	}
	if _, err := a.putImage("../x", strings.NewReader("")); err == nil {
		t.Error("a digest that is a path was accepted")
	}
}

// TestRunSettingsOnTmpfs: the environment and secrets land in 0600 files in a 0700 directory
// on tmpfs; a runtime directory that is not tmpfs is passed over.
func TestRunSettingsOnTmpfs(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "ukd-test-")
	if err != nil {
		t.Skip("no /dev/shm")
	}
	defer os.RemoveAll(shm)
	t.Setenv("XDG_RUNTIME_DIR", shm)
	d, err := runDir()
	if err != nil || d != filepath.Join(shm, "ukernel-deploy") {
		t.Fatalf("runDir with a tmpfs XDG_RUNTIME_DIR: %q, %v", d, err)
	}
	disk := t.TempDir() // the test machine's /tmp is on disk; skip the check where it is not
	if isTmpfs(disk) {
		t.Logf("%s is tmpfs here: the disk case is not checked", disk)
	} else {
		t.Setenv("XDG_RUNTIME_DIR", disk)
		d, err := runDir()
		if err == nil && strings.HasPrefix(d, disk) {
			t.Errorf("runDir used %s, which is not tmpfs", d)
		}
		if err == nil {
			os.Remove(d) // the fallback made for the test, when it is empty
		}
	}
	a := &Agent{dirs: hostDirs{Run: filepath.Join(shm, "ukernel-deploy")}}
	rev := &Revision{ID: "r1"}
	if err := a.writeRunSettings("web", rev, map[string]string{"PORT": "8080"}, map[string][]byte{"db_password": []byte("pw")}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"env", "secrets/db_password"} {
		fi, err := os.Stat(filepath.Join(a.dirs.revDir("web", "r1"), f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want 0600", f, fi.Mode(), err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(a.dirs.revDir("web", "r1"), "env")); string(b) != "PORT=8080\n" {
		t.Errorf("env file: %q", b)
	}
	// A value with a line break would be read back by `ukernel run --env-file` as one more
	// variable, or as a name whose value comes from the host's own environment.
	if err := a.writeRunSettings("web", rev, map[string]string{"A": "x\nHOME"}, nil); err == nil {
		t.Error("an env value with a line break was written to the env file")
	}
}

// TestRunArgs: the exact `ukernel run` command line of a revision, as the unit's ExecStart and
// the monitor's start run it: every run setting of the revision (a template's among them), the
// environment and the secrets by their files on tmpfs, never their values.
func TestRunArgs(t *testing.T) {
	a := &Agent{Exe: "/opt/uk", dirs: hostDirs{State: "/st", Run: "/run/ud"}}
	app := &App{Name: "web", Dir: "/st/apps/web"}
	d := strings.Repeat("ab", 32)
	rev := &Revision{ID: "r1", Digest: d, VCPU: 2, MemoryMB: 512, DataMB: 64, Net: "user", Publish: []string{"8080:80", "9090:90"},
		EnvNames: []string{"A", "B"}, Secrets: []string{"db", "tok"}}
	want := []string{"-C", "/st/apps/web", "run", "--name", "web", "--image", "/st/images/" + d + ".img",
		"--vcpu", "2", "--memory", "512", "--data-mb", "64", "--net", "user", "--publish", "8080:80", "--publish", "9090:90",
		"--env-file", "/run/ud/web/r1/env", "--secret", "db=@/run/ud/web/r1/secrets/db", "--secret", "tok=@/run/ud/web/r1/secrets/tok"}
	if got := a.runArgs(app, rev); !slices.Equal(got, want) {
		t.Errorf("runArgs:\n got %q\nwant %q", got, want)
	}
	bare := &Revision{ID: "r2", Digest: d}
	if got, want := a.runArgs(app, bare), []string{"-C", "/st/apps/web", "run", "--name", "web", "--image", "/st/images/" + d + ".img"}; !slices.Equal(got, want) {
		t.Errorf("runArgs of a revision with the image's settings:\n got %q\nwant %q", got, want)
	}
}

// TestKilledPutLeavesNothing: an agent killed while it receives an image (SIGKILL, as a host's
// reboot or an OOM kill would end it) leaves a partial file; the next put removes it, so no
// partial image stays beside the images. The killed agent is this test binary, re-executed.
func TestKilledPutLeavesNothing(t *testing.T) {
	if dir := os.Getenv("UKT_PUT_HELPER"); dir != "" {
		a := &Agent{dirs: hostDirs{State: dir}}
		a.putImage(strings.Repeat("0", 64), os.Stdin) // killed while it reads
		return
	}
	a := testAgent(t)
	images := filepath.Join(a.dirs.State, "images")
	os.MkdirAll(images, 0o700)
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledPutLeavesNothing$")
	cmd.Env = append(os.Environ(), "UKT_PUT_HELPER="+a.dirs.State)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	in.Write(make([]byte, 1<<20)) // part of an image
	var partial []string
	for deadline := time.Now().Add(30 * time.Second); len(partial) == 0; time.Sleep(20 * time.Millisecond) {
		partial, _ = filepath.Glob(filepath.Join(images, ".put-*"))
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the agent never started receiving")
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	in.Close()

	data := []byte("the next image")
	sum := sha256.Sum256(data)
	if _, err := a.putImage(hex.EncodeToString(sum[:]), strings.NewReader(string(data))); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(images)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{hex.EncodeToString(sum[:]) + ".img"}; !slices.Equal(names, want) {
		t.Errorf("images/ holds %q after a killed put (%q) and the next one, want %q", names, filepath.Base(partial[0]), want)
	}
}
