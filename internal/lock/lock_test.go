package lock

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/project"
)

func writeProject(t *testing.T, env string) string {
	t.Helper()
	return writeProjectOn(t, "python-3.11", env)
}

// writeProjectOn writes a project on base (ukernel.toml [env] base) with the given env file.
func writeProjectOn(t *testing.T, base, env string) string {
	t.Helper()
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, project.ConfigFile), []byte("[project]\nname = \"demo\"\nlanguage = \"python\"\nentry = \"src/main.py\"\n[env]\nbase = \""+base+"\"\n"), 0o644))
	must(t, os.MkdirAll(filepath.Join(dir, "env"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, project.EnvFile), []byte(env), 0o644))
	return dir
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func needNet(t *testing.T) {
	if testing.Short() {
		t.Skip("network: resolves against the Debian archive (run without -short)")
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return c
}

const baseEnv = "system = [\"libssl3\", \"postgresql-15\"]\npython = []\n"

func TestLockDeterministicAcrossDirs(t *testing.T) {
	needNet(t)
	var files [][]byte
	for range 2 {
		dir := writeProject(t, baseEnv)
		l, changed, err := Resolve(ctx(t), Options{Dir: dir})
		must(t, err)
		if !changed || l.Kernel == nil || !strings.HasPrefix(l.Kernel.Name, "linux-image-6.") || !strings.HasSuffix(l.Kernel.Name, "-cloud-amd64") {
			t.Fatalf("changed=%v kernel=%+v", changed, l.Kernel)
		}
		data, err := os.ReadFile(filepath.Join(dir, project.LockFile))
		must(t, err)
		files = append(files, data)
		for _, p := range l.Packages {
			if p.Name == "kmod" || p.Name == "usr-is-merged" || p.Name == l.Kernel.Name {
				t.Errorf("%s must not be in the root closure", p.Name)
			}
		}
		if strings.Contains(string(data), "http") {
			t.Error("lock contains a URL")
		}
		// A second lock with the same request changes nothing and needs no network.
		_, changed, err = Resolve(ctx(t), Options{Dir: dir, Offline: true, Locked: true})
		must(t, err)
		if changed {
			t.Error("relock changed the lock")
		}
	}
	if !bytes.Equal(files[0], files[1]) {
		t.Fatal("locks differ between two project directories")
	}
	if !bytes.HasSuffix(files[0], []byte("}\n")) {
		t.Error("no trailing newline")
	}
}

func TestUpgradeOfflineMatchesFreshLock(t *testing.T) {
	needNet(t)
	dir := writeProject(t, baseEnv)
	l1, _, err := Resolve(ctx(t), Options{Dir: dir})
	must(t, err)
	// Offline re-resolution from cached indices gives the same closure.
	l2, changed, err := Resolve(ctx(t), Options{Dir: dir, Upgrade: true, Offline: true})
	must(t, err)
	if changed || l1.Digest != l2.Digest {
		t.Fatalf("offline upgrade changed the lock: %s vs %s", l1.Digest, l2.Digest)
	}
}

func TestBadInput(t *testing.T) {
	needNet(t)
	for name, tc := range map[string]struct{ env, want string }{
		"unknown":   {"system = [\"no-such-package-xyz\"]\n", "no package no-such-package-xyz"},
		"version":   {"system = [\"libssl3=0.0.1\"]\n", "libssl3 has no version 0.0.1"},
		"malformed": {"system = [\"libssl3\"\n", project.EnvFile},
		"otherbase": {"base = \"python-3.13\"\n", `env/ukernel.env:1: base = "python-3.13", but ukernel.toml:6 sets [env] base = "python-3.11"`},
	} {
		t.Run(name, func(t *testing.T) {
			dir := writeProject(t, tc.env)
			_, _, err := Resolve(ctx(t), Options{Dir: dir})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestUnreachableMirrorSaysWhereSettingCameFrom(t *testing.T) {
	dir := writeProject(t, baseEnv)
	t.Setenv("UKERNEL_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")
	c, err := cache.OpenDir(t.TempDir())
	must(t, err)
	_, _, err = Resolve(ctx(t), Options{Dir: dir, Cache: c})
	if err == nil || !strings.Contains(err.Error(), "UKERNEL_DEBIAN_MIRROR") {
		t.Fatalf("got %v", err)
	}
	must(t, os.WriteFile(filepath.Join(dir, project.ConfigFile), []byte("[project]\nname = \"demo\"\nlanguage = \"python\"\nentry = \"src/main.py\"\n[env]\nbase = \"python-3.11\"\nmirror = \"http://127.0.0.1:9/debian\"\n"), 0o644))
	_, _, err = Resolve(ctx(t), Options{Dir: dir, Cache: c})
	if err == nil || !strings.Contains(err.Error(), "ukernel.toml [env] mirror") {
		t.Fatalf("got %v", err)
	}
}

func TestLockedStaleAndDigest(t *testing.T) {
	needNet(t)
	dir := writeProject(t, baseEnv)
	_, _, err := Resolve(ctx(t), Options{Dir: dir})
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, project.EnvFile), []byte("system = [\"libssl3\"]\n"), 0o644))
	before, _ := os.ReadFile(filepath.Join(dir, project.LockFile))
	if _, _, err := Resolve(ctx(t), Options{Dir: dir, Locked: true}); err == nil || !strings.Contains(err.Error(), "out of date") {
		t.Fatalf("--locked with a stale lock: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, project.LockFile))
	if !bytes.Equal(before, after) {
		t.Fatal("--locked wrote the lock")
	}
	tampered := bytes.Replace(before, []byte(`"name": "libssl3"`), []byte(`"name": "libssl4"`), 1)
	must(t, os.WriteFile(filepath.Join(dir, project.LockFile), tampered, 0o644))
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "digest mismatch") {
		t.Fatalf("tampered lock: %v", err)
	}
}

func TestFetchDebsRefetchesCorrupt(t *testing.T) {
	needNet(t)
	dir := writeProjectOn(t, "debian-12", "system = []\n")
	l, _, err := Resolve(ctx(t), Options{Dir: dir})
	must(t, err)
	c, err := cache.Open()
	must(t, err)
	debs, err := FetchDebs(ctx(t), l, c, Options{Dir: dir})
	must(t, err)
	if len(debs) != len(l.Packages) {
		t.Fatalf("%d debs for %d packages", len(debs), len(l.Packages))
	}
	var dash Package
	for _, p := range l.Packages {
		if p.Name == "dash" {
			dash = p
		}
	}
	// Corrupt the cached blob in place: the next fetch must notice and download it again.
	blob := c.BlobPath(dash.SHA256)
	data, err := os.ReadFile(blob)
	must(t, err)
	data[len(data)/2] ^= 0xff
	must(t, os.WriteFile(blob, data, 0o644))
	if _, err := FetchDebs(ctx(t), l, c, Options{Dir: dir, Offline: true}); err == nil {
		t.Fatal("offline fetch accepted a corrupt cached package")
	}
	debs, err = FetchDebs(ctx(t), l, c, Options{Dir: dir})
	must(t, err)
	if _, err := c.Path(dash.SHA256); err != nil || debs["dash"] != blob {
		t.Fatalf("dash not re-fetched: %v", err)
	}
	// A version the mirror no longer has is a clear error.
	gone := *l
	gone.Packages = []Package{{Name: "dash", Version: "0.0-gone", Filename: "pool/main/d/dash/dash_0.0-gone_amd64.deb", SHA256: strings.Repeat("0", 64), Suite: dash.Suite}}
	if _, err := FetchDebs(ctx(t), &gone, c, Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "dash 0.0-gone") || !strings.Contains(err.Error(), "no longer on the mirror") {
		t.Fatalf("gone version: %v", err)
	}
}

func TestPythonWheels(t *testing.T) {
	needNet(t)
	dir := writeProject(t, "system = []\npython = [\"requests==2.32.3\"]\n")
	l, _, err := Resolve(ctx(t), Options{Dir: dir})
	must(t, err)
	names := map[string]string{}
	for _, w := range l.Python {
		names[w.Name] = w.Filename
		if len(w.SHA256) != 64 {
			t.Errorf("%s: sha256 %q", w.Name, w.SHA256)
		}
	}
	if names["requests"] != "requests-2.32.3-py3-none-any.whl" {
		t.Errorf("requests: %q", names["requests"])
	}
	for _, dep := range []string{"urllib3", "idna", "certifi", "charset-normalizer"} {
		if names[dep] == "" {
			t.Errorf("dependency %s not locked: %v", dep, names)
		}
	}
	if cn := names["charset-normalizer"]; !strings.Contains(cn, "cp311") || !strings.Contains(cn, "manylinux") || !strings.Contains(cn, "x86_64") {
		t.Errorf("charset-normalizer wheel %q is not for cp311 manylinux x86-64", cn)
	}
	c, err := cache.Open()
	must(t, err)
	wheels, err := FetchWheels(ctx(t), l, c, Options{Dir: dir, Offline: true})
	must(t, err)
	if len(wheels) != len(l.Python) {
		t.Fatalf("wheels %v", wheels)
	}

	sdist := writeProject(t, "system = []\npython = [\"docopt==0.6.2\"]\n")
	if _, _, err := Resolve(ctx(t), Options{Dir: sdist}); err == nil || !strings.Contains(err.Error(), "no wheel") {
		t.Fatalf("sdist-only package: %v", err)
	}
}
