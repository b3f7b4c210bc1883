package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type remoteOut struct {
	Outcome string `json:"outcome"`
	Ref     string `json:"ref"`
	Error   string `json:"error"`
	Took    int64  `json:"took_ns"`
}

type cachePackOut struct {
	SHA256   string     `json:"sha256"`
	Cached   bool       `json:"cached"`
	InputKey string     `json:"input_key"`
	Remote   *remoteOut `json:"remote"`
}

// cacheCopy is the project as another machine checks it out: ukernel.toml, the lock, src/.
func cacheCopy(t *testing.T, src, name string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), name)
	os.MkdirAll(dst, 0o755)
	for _, p := range []string{"ukernel.toml", "env", "src"} {
		copyTree(t, filepath.Join(src, p), filepath.Join(dst, p))
	}
	return dst
}

// sharedCacheHome is the cache the other e2e tests fill (the user's).
func sharedCacheHome(t *testing.T) string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(home, ".cache")
}

// TestRemoteCache: machine A (the shared e2e cache) builds and publishes with `cache push`;
// machine B (empty cache and data) turns `pack` into a verified pull of the byte-identical
// image, and `template build` into a pull of A's template revision; a tampered layer is
// refused and rebuilt (byte-identical again); a cache on a closed port or behind a silent
// listener costs at most its 5 s deadline, then the build goes on; an unsigned entry is
// refused where the trust policy requires a signature.
func TestRemoteCache(t *testing.T) {
	skipShort(t)
	reg := startRegistry(t, nil)
	repo := reg.host + "/team/cache"
	insecure := fmt.Sprintf("[registry.%q]\ninsecure = true\n", reg.host)

	a := append(userEnv(t), "XDG_CACHE_HOME="+sharedCacheHome(t)) // the shared cache: builds are warm
	writeConfig(t, a, fmt.Sprintf("[cache]\nremote = %q\npush = true\n", repo)+insecure)
	dir := filepath.Join(t.TempDir(), "rc-min")
	os.MkdirAll(dir, 0o755)
	mustUK(t, dir, time.Minute, "init", "--name", "rc-min", "--lang", "python", "--template", "minimal")
	// A source of its own: no cache here has this image from an earlier run.
	writeFile(t, filepath.Join(dir, "src", "main.py"), fmt.Sprintf("print('remote cache %d', flush=True)\n", time.Now().UnixNano()))

	built := decode[cachePackOut](t, mustUKEnv(t, dir, 15*time.Minute, a, "--json", "pack").stdout)
	if built.Remote == nil || built.Remote.Outcome != "miss" || built.Cached {
		t.Fatalf("A's first pack: want a miss and a build, got %+v remote %+v", built, built.Remote)
	}
	pushed := decode[struct {
		Ref, Tag, Key, Revision string
		Blobs                   []struct{ Digest string }
	}](t, mustUKEnv(t, dir, 5*time.Minute, a, "--json", "cache", "push").stdout)
	if pushed.Key != built.InputKey || pushed.Tag != "ukernel-cache-"+built.InputKey || pushed.Revision != built.SHA256 {
		t.Fatalf("cache push: %+v; pack said key %s sha256 %s", pushed, built.InputKey, built.SHA256)
	}
	want, err := os.ReadFile(filepath.Join(dir, "dist", "rc-min.img"))
	if err != nil {
		t.Fatal(err)
	}

	// A reader may not push (read-only by default).
	b := userEnv(t)
	writeConfig(t, b, insecure)
	b = append(b, "UKERNEL_CACHE_REMOTE="+repo)
	bdir := cacheCopy(t, dir, "rc-min")
	if r := ukEnv(t, bdir, time.Minute, b, "cache", "push"); r.code == 0 || !strings.Contains(r.stderr, "read-only") {
		t.Fatalf("a reader's cache push: exit %d\n%s", r.code, r.stderr)
	}
	r := mustUKEnv(t, bdir, 5*time.Minute, b, "--json", "pack")
	hit := decode[cachePackOut](t, r.stdout)
	if hit.Remote == nil || hit.Remote.Outcome != "hit" || hit.SHA256 != built.SHA256 || hit.InputKey != built.InputKey {
		t.Fatalf("B's pack: want a hit of %s, got %+v remote %+v\n%s", built.SHA256, hit, hit.Remote, r.stderr)
	}
	if !strings.Contains(r.stderr, "Remote cache: pulled") || strings.Count(r.stderr, "Remote cache") != 1 || strings.Contains(r.stderr, "Pulled ") || strings.Contains(r.stderr, "Building") {
		t.Fatalf("B's pack should say it pulled in one line, and build nothing:\n%s", r.stderr)
	}
	got, err := os.ReadFile(filepath.Join(bdir, "dist", "rc-min.img"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("B's image is not A's byte for byte (err %v)", err)
	}
	if again := decode[cachePackOut](t, mustUKEnv(t, bdir, time.Minute, b, "--json", "pack").stdout); !again.Cached || again.Remote != nil {
		t.Fatalf("B's second pack: want up to date without asking the cache, got %+v", again)
	}

	// Templates: A builds and publishes a template's revision; B's template build pulls it.
	type tplBuilt struct {
		Outcome  string
		Revision struct{ ID string }
	}
	mustUKEnv(t, dir, time.Minute, a, "template", "create", "rc-tpl", "--from", dir)
	ab := decode[[]tplBuilt](t, mustUKEnv(t, dir, 15*time.Minute, a, "--json", "template", "build", "rc-tpl").stdout)
	tp := decode[struct{ Revision string }](t, mustUKEnv(t, dir, 5*time.Minute, a, "--json", "cache", "push", "--template", "rc-tpl").stdout)
	mustUKEnv(t, bdir, time.Minute, b, "template", "create", "rc-tpl", "--from", bdir)
	r = mustUKEnv(t, bdir, 5*time.Minute, b, "--json", "template", "build", "rc-tpl")
	bb := decode[[]tplBuilt](t, r.stdout)
	if len(ab) != 1 || len(bb) != 1 || ab[0].Outcome != "built" || tp.Revision != ab[0].Revision.ID || bb[0].Outcome != "pulled" || bb[0].Revision.ID != ab[0].Revision.ID {
		t.Fatalf("template through the cache: A built %+v and pushed %s, B got %+v\n%s", ab, tp.Revision, bb, r.stderr)
	}

	// Alter the layer in the registry's storage: the next machine refuses it and builds.
	layer := strings.TrimPrefix(pushed.Blobs[1].Digest, "sha256:")
	data := filepath.Join(reg.storage, "docker", "registry", "v2", "blobs", "sha256", layer[:2], layer, "data")
	blob, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	blob[len(blob)/2] ^= 0xff
	writeFile(t, data, string(blob))
	c := append(userEnv(t), "XDG_CACHE_HOME="+sharedCacheHome(t))
	writeConfig(t, c, fmt.Sprintf("[cache]\nremote = %q\n", repo)+insecure)
	cdir := cacheCopy(t, dir, "rc-min")
	r = mustUKEnv(t, cdir, 15*time.Minute, c, "--json", "pack")
	rebuilt := decode[cachePackOut](t, r.stdout)
	if rebuilt.Remote == nil || rebuilt.Remote.Outcome != "refused" || !strings.Contains(rebuilt.Remote.Error, "damaged or was altered") {
		t.Fatalf("C's pack of a tampered entry: want refused, got %+v\n%s", rebuilt.Remote, r.stderr)
	}
	if !strings.Contains(r.stderr, "Remote cache: refused") || rebuilt.SHA256 != built.SHA256 {
		t.Fatalf("C should say it refused the entry and build the same image (%s), got %s:\n%s", built.SHA256, rebuilt.SHA256, r.stderr)
	}

	// A closed port, then a listener that never answers: each costs at most the deadline.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			defer conn.Close() // held open, never answered
		}
	}()
	for i, host := range []string{fmt.Sprintf("127.0.0.1:%d", freePort(t)), silent.Addr().String()} {
		env := append(c, "UKERNEL_CACHE_REMOTE="+host+"/team/cache") // the environment over config.toml
		start := time.Now()
		r := mustUKEnv(t, cdir, 10*time.Minute, env, "--json", "pack", "--image", fmt.Sprintf("dist/u%d.img", i))
		out := decode[cachePackOut](t, r.stdout)
		took := time.Duration(out.Remote.Took)
		if out.Remote.Outcome != "unreachable" || took > 6*time.Second || out.SHA256 != built.SHA256 {
			t.Fatalf("cache at %s: want unreachable within 5 s and the image built, got %+v (took %v)\n%s", host, out.Remote, took, r.stderr)
		}
		if !strings.Contains(r.stderr, "Remote cache: "+host) || !strings.Contains(r.stderr, "; building") {
			t.Fatalf("cache at %s: want one line saying so:\n%s", host, r.stderr)
		}
		t.Logf("cache at %s: lookup gave up after %v; pack took %v", host, took.Round(time.Millisecond), time.Since(start).Round(time.Second))
	}

	// Under a trust policy that requires a signature from this cache, its unsigned entry is
	// refused before any layer is read, and the image is built.
	d := append(userEnv(t), "XDG_CACHE_HOME="+sharedCacheHome(t))
	writeConfig(t, d, fmt.Sprintf("[cache]\nremote = %q\n[trust]\nrequire = [%q]\n", repo, repo)+insecure)
	r = mustUKEnv(t, cdir, 10*time.Minute, d, "--json", "pack", "--image", "dist/trust.img")
	if out := decode[cachePackOut](t, r.stdout); out.Remote == nil || out.Remote.Outcome != "refused" || !strings.Contains(out.Remote.Error, "not signed") || out.SHA256 != built.SHA256 {
		t.Fatalf("an unsigned entry under [trust] require: want refused and built, got %+v\n%s", out.Remote, r.stderr)
	}
}
