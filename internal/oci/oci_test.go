package oci

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/image"
	"github.com/ukernel-dev/ukernel/internal/progress"
	"github.com/ukernel-dev/ukernel/internal/sign"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/internal/testenv"
	"github.com/ukernel-dev/ukernel/internal/userconfig"
)

var (
	imgOnce sync.Once
	imgPath string
	imgErr  error
)

// testImage packs one small image (a fake kernel, init and root) shared by the tests.
func testImage(t *testing.T) string {
	t.Helper()
	testenv.RequireTools(t, "mkfs.erofs")
	imgOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ukernel-oci-test-")
		if err != nil {
			imgErr = err
			return
		}
		files := map[string][]byte{
			"in/vmlinuz":           pseudo(1, 300<<10),
			"in/init":              pseudo(2, 100<<10),
			"root/app/main.py":     []byte("print('hello')\n"),
			"root/usr/bin/python3": pseudo(3, 200<<10),
			"root/usr/lib/data":    bytes.Repeat([]byte("compressible "), 10000),
			"modules/6.1.0-test/x": nil,
		}
		for name, b := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				imgErr = err
				return
			}
			if err := os.WriteFile(p, b, 0o755); err != nil {
				imgErr = err
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		in := image.Input{
			Manifest: abi.Manifest{
				Name:    "example-worker",
				Adapter: abi.Adapter{Name: "python", Runtime: "python-3.11"},
				Entry:   []string{"/usr/bin/python3", "/app/main.py"},
				Run:     abi.RunDefaults{VCPU: 1, MemoryMB: 256, Net: "user"},
				Kernel:  abi.Kernel{Package: "linux-image-test", Version: "1.0", Release: "6.1.0-test"},
				Lock:    abi.LockRef{Digest: "sha256:" + strings.Repeat("ab", 32), Packages: 1},
				Build:   abi.BuildInfo{Ukernel: "0.1.0-test", Go: "go1.26.8"},
			},
			KernelPath: filepath.Join(dir, "in/vmlinuz"), ModulesDir: filepath.Join(dir, "modules/6.1.0-test"),
			InitPath: filepath.Join(dir, "in/init"), RootDir: filepath.Join(dir, "root"),
			Output: filepath.Join(dir, "dist/example-worker.img"), SourceDateEpoch: 1700000000,
		}
		if _, imgErr = image.Pack(ctx, in); imgErr == nil {
			imgPath = in.Output
		}
	})
	if imgErr != nil {
		t.Fatalf("pack the test image: %v", imgErr)
	}
	return imgPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if imgPath != "" {
		os.RemoveAll(filepath.Dir(filepath.Dir(imgPath)))
	}
	os.Exit(code)
}

func pseudo(seed uint64, n int) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed)}))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func fileSHA(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// uploads counts the requests that send bytes to the registry.
type server struct {
	*httptest.Server
	uploads atomic.Int64
	// corrupt, when set, flips a byte of the blob GETs whose path ends with it.
	corrupt atomic.Value
	// fail5xx answers this many blob uploads and downloads with 503; stall makes this many blob
	// downloads send half their bytes and then nothing for stallFor.
	fail5xx, stall atomic.Int32
	stallFor       time.Duration
}

func newRegistry(t *testing.T) *server {
	s := &server{}
	s.corrupt.Store("")
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch || r.Method == http.MethodPut || r.Method == http.MethodPost {
			s.uploads.Add(1)
		}
		blobGet := r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:")
		blobPut := r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/")
		if (blobGet || blobPut) && s.fail5xx.Add(-1) >= 0 {
			io.Copy(io.Discard, r.Body)
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		if blobGet && s.stall.Add(-1) >= 0 {
			rec := httptest.NewRecorder()
			reg.ServeHTTP(rec, r)
			b := rec.Body.Bytes()
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			w.WriteHeader(rec.Code)
			w.Write(b[:len(b)/2])
			w.(http.Flusher).Flush()
			select {
			case <-time.After(s.stallFor):
			case <-r.Context().Done():
			}
			return
		}
		if c := s.corrupt.Load().(string); c != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, c) {
			rec := httptest.NewRecorder()
			reg.ServeHTTP(rec, r)
			b := rec.Body.Bytes()
			b[len(b)/2] ^= 1
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(b)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) host() string { return strings.TrimPrefix(s.URL, "http://") }

func newCache(t *testing.T) *cache.Cache {
	c, err := cache.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestPushPullRoundTrip(t *testing.T) {
	img := testImage(t)
	reg := newRegistry(t)
	ctx := ctxT(t)
	o := Options{Insecure: true}
	ref := reg.host() + "/team/worker:v1"
	res, err := Push(ctx, img, ref, PushOptions{Options: o, Cache: newCache(t)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Blobs) != 2 || !res.Blobs[0].Moved || !res.Blobs[1].Moved || res.Sent() != 2 || !res.Tagged {
		t.Fatalf("first push: %+v", res)
	}
	want := fileSHA(t, img)
	if res.Revision != want {
		t.Fatalf("revision %s, image sha256 %s", res.Revision, want)
	}

	// The same image again (a fresh cache: the layer is compressed again, to the same digest).
	reg.uploads.Store(0)
	again, err := Push(ctx, img, ref, PushOptions{Options: o, Cache: newCache(t)})
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest != res.Digest || again.Tagged || again.Blobs[0].Moved || again.Blobs[1].Moved || again.Sent() != 0 || reg.uploads.Load() != 0 {
		t.Fatalf("second push moved something (%d upload requests): %+v", reg.uploads.Load(), again)
	}

	c := newCache(t)
	pulled, err := Pull(ctx, ref, PullOptions{Options: o, Cache: c})
	if err != nil {
		t.Fatal(err)
	}
	if pulled.Digest != res.Digest || pulled.Revision != want || fileSHA(t, pulled.Path) != want || pulled.Name != "example-worker" {
		t.Fatalf("pull: %+v", pulled)
	}
	// By digest, and verify where it is and as pulled.
	if _, err := Pull(ctx, res.Ref, PullOptions{Options: o, Cache: newCache(t)}); err != nil {
		t.Fatalf("pull by digest: %v", err)
	}
	if v, err := VerifyRemote(ctx, ref, o); err != nil || v.Revision != want {
		t.Fatalf("verify remote: %+v %v", v, err)
	}
	if v, err := VerifyLocal(pulled.Path, c, nil); err != nil || !v.Pulled || v.Digest != res.Digest {
		t.Fatalf("verify local: %+v %v", v, err)
	}
}

func TestPullRefusesDamagedLayer(t *testing.T) {
	img := testImage(t)
	reg := newRegistry(t)
	ctx := ctxT(t)
	o := Options{Insecure: true}
	ref := reg.host() + "/worker:v1"
	res, err := Push(ctx, img, ref, PushOptions{Options: o, Cache: newCache(t)})
	if err != nil {
		t.Fatal(err)
	}
	layer := res.Blobs[1].Digest
	reg.corrupt.Store(layer.String())
	c := newCache(t)
	_, err = Pull(ctx, ref, PullOptions{Options: o, Cache: c})
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), layer.String()) {
		t.Fatalf("pull of a damaged layer: %v", err)
	}
	if c.Has(res.Revision) {
		t.Fatal("the damaged image was stored")
	}
	if _, err := VerifyRemote(ctx, ref, o); !errors.Is(err, ErrDamaged) {
		t.Fatalf("verify of a damaged layer: %v", err)
	}
	// A damaged config blob.
	reg.corrupt.Store(res.Blobs[0].Digest.String())
	if _, err := Pull(ctx, ref, PullOptions{Options: o, Cache: c}); err == nil || !strings.Contains(err.Error(), res.Blobs[0].Digest.String()) {
		t.Fatalf("pull of a damaged config: %v", err)
	}
}

// trustConfig returns a user configuration trusting keys, requiring signatures on require.
func trustConfig(t *testing.T, require []string, keys map[string]sign.PrivateKey) *userconfig.Config {
	dir := t.TempDir()
	cfg := &userconfig.Config{Dir: dir}
	cfg.File.Trust.Require = require
	os.MkdirAll(cfg.TrustedDir(), 0o755)
	for name, k := range keys {
		if err := os.WriteFile(filepath.Join(cfg.TrustedDir(), name+".pub"), k.Public().Marshal(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return cfg
}

func TestSignaturesUnderPolicy(t *testing.T) {
	img := testImage(t)
	reg := newRegistry(t)
	ctx := ctxT(t)
	alice, _ := sign.Generate()
	mallory, _ := sign.Generate()
	o := Options{Insecure: true}
	signed := reg.host() + "/signed:v1"
	res, err := Push(ctx, img, signed, PushOptions{Options: o, Cache: newCache(t), Key: &alice})
	if err != nil {
		t.Fatal(err)
	}
	if res.Signature == nil || res.KeyID != alice.ID.String() {
		t.Fatalf("signed push: %+v", res)
	}
	// Signing again adds nothing: the signature is deterministic.
	reg.uploads.Store(0)
	if _, err := Push(ctx, img, signed, PushOptions{Options: o, Cache: newCache(t), Key: &alice}); err != nil || reg.uploads.Load() != 0 {
		t.Fatalf("second signed push: %v, %d uploads", err, reg.uploads.Load())
	}
	unsigned := reg.host() + "/unsigned:v1"
	if _, err := Push(ctx, img, unsigned, PushOptions{Options: o, Cache: newCache(t)}); err != nil {
		t.Fatal(err)
	}

	o.Config = trustConfig(t, []string{reg.host() + "/*"}, map[string]sign.PrivateKey{"alice": alice})
	p, err := Pull(ctx, signed, PullOptions{Options: o, Cache: newCache(t)})
	if err != nil {
		t.Fatalf("signed pull under the policy: %v", err)
	}
	if len(p.Trust.Signers) != 1 || p.Trust.Signers[0].Key != "alice" || !p.Trust.Required {
		t.Fatalf("trust: %+v", p.Trust)
	}
	var te *TrustError
	_, err = Pull(ctx, unsigned, PullOptions{Options: o, Cache: newCache(t)})
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "not signed") || !strings.Contains(err.Error(), "sha256:") {
		t.Fatalf("unsigned pull under the policy: %v", err)
	}

	o.Config = trustConfig(t, []string{"*"}, map[string]sign.PrivateKey{"mallory": mallory})
	c := newCache(t)
	_, err = Pull(ctx, signed, PullOptions{Options: o, Cache: c})
	if !errors.As(err, &te) || !strings.Contains(err.Error(), alice.ID.String()) || !strings.Contains(err.Error(), string(res.Digest)) {
		t.Fatalf("pull signed by an untrusted key: %v", err)
	}
	if c.Has(res.Revision) {
		t.Fatal("a refused image was stored")
	}
	// No policy for this name: the pull passes and says who signed (no one it trusts).
	o.Config = trustConfig(t, []string{"other.example/*"}, nil)
	if p, err := Pull(ctx, signed, PullOptions{Options: o, Cache: newCache(t)}); err != nil || p.Trust.Required || len(p.Trust.Untrusted) != 1 {
		t.Fatalf("pull outside the policy: %+v %v", p.Trust, err)
	}
}

func TestLayoutAndArchive(t *testing.T) {
	img := testImage(t)
	ctx := ctxT(t)
	k, _ := sign.Generate()
	dir := t.TempDir()
	for _, ref := range []string{"oci-layout:" + filepath.Join(dir, "layout") + ":v1", "oci-archive:" + filepath.Join(dir, "img.tar") + ":v1"} {
		res, err := Push(ctx, img, ref, PushOptions{Cache: newCache(t), Key: &k})
		if err != nil {
			t.Fatalf("push %s: %v", ref, err)
		}
		o := Options{Config: trustConfig(t, []string{"*"}, map[string]sign.PrivateKey{"k": k})}
		p, err := Pull(ctx, ref, PullOptions{Options: o, Cache: newCache(t)})
		if err != nil {
			t.Fatalf("pull %s: %v", ref, err)
		}
		if p.Digest != res.Digest || fileSHA(t, p.Path) != res.Revision || len(p.Trust.Signers) != 1 {
			t.Fatalf("%s: pushed %+v, pulled %+v", ref, res, p)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".img.tar.tmp-*")); len(left) > 0 {
		t.Fatalf("archive staging left behind: %v", left)
	}
}

func TestInsecureOnlyLoopbackOrListed(t *testing.T) {
	o := Options{Insecure: true}
	if _, err := o.repository(Ref{Kind: KindRegistry, Reg: mustRef(t, "registry.example.com/x:v1").Reg}); err == nil || !strings.Contains(err.Error(), "plain HTTP") {
		t.Fatalf("--insecure to a remote name: %v", err)
	}
	o.Config = &userconfig.Config{File: userconfig.File{Registry: map[string]userconfig.RegistrySection{"registry.example.com": {Insecure: true}}}}
	if r, err := o.repository(mustRef(t, "registry.example.com/x:v1")); err != nil || !r.PlainHTTP {
		t.Fatalf("--insecure to a listed name: %v", err)
	}
	o.Insecure = false
	if r, err := o.repository(mustRef(t, "127.0.0.1:5000/x:v1")); err != nil || r.PlainHTTP {
		t.Fatalf("loopback without --insecure must use TLS: %v", err)
	}
}

func mustRef(t *testing.T, s string) Ref {
	r, err := ParseRef(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParseRef(t *testing.T) {
	for s, want := range map[string]string{
		"127.0.0.1:5000/a/b":                       "127.0.0.1:5000/a/b:latest",
		"127.0.0.1:5000/a/b:v2":                    "127.0.0.1:5000/a/b:v2",
		"oci-layout:/tmp/x":                        "oci-layout:/tmp/x:latest",
		"oci-layout:/tmp/x:v1":                     "oci-layout:/tmp/x:v1",
		"oci-archive:rel/a.tar:v1":                 "oci-archive:rel/a.tar:v1",
		"oci-layout:/tmp/a:b/c":                    "oci-layout:/tmp/a:b/c:latest",
		"h.io/r@sha256:" + strings.Repeat("a", 64): "h.io/r@sha256:" + strings.Repeat("a", 64),
	} {
		r, err := ParseRef(s)
		if err != nil || r.String() != want {
			t.Errorf("ParseRef(%q) = %q, %v; want %q", s, r.String(), err, want)
		}
	}
	// A relative path is no registry (oras reads ./x.img as host "." and repository x.img).
	for _, bad := range []string{"", "oci-layout:", "oci-layout:/x@sha256:zz", "h.io/r@md5:1", "./x.img", "../dist/x.img", "x.img"} {
		if _, err := ParseRef(bad); err == nil {
			t.Errorf("ParseRef(%q) accepted", bad)
		}
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.ukernel.image.v1","config":{"mediaType":"application/vnd.ukernel.image.manifest.v1+json","digest":"sha256:` + strings.Repeat("a", 64) + `","size":10},"layers":[{"mediaType":"application/vnd.ukernel.image.disk.v1+zstd","digest":"sha256:` + strings.Repeat("b", 64) + `","size":5,"annotations":{"dev.ukernel.image.size":"9"}}],"annotations":{"dev.ukernel.image.revision":"sha256:` + strings.Repeat("c", 64) + `"}}`))
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if im, err := ParseManifest(b); err == nil {
			if im.Size <= 0 || len(im.Revision) != 64 || im.Layer().Size <= 0 {
				t.Fatalf("accepted %+v", im)
			}
		}
		_, _ = pickFromIndex(b)
	})
}

// A pulled image is booted only while the policy accepts its kept signatures.
func TestCheckPulled(t *testing.T) {
	img := testImage(t)
	reg := newRegistry(t)
	ctx := ctxT(t)
	alice, _ := sign.Generate()
	mallory, _ := sign.Generate()
	ref := reg.host() + "/w:v1"
	if _, err := Push(ctx, img, ref, PushOptions{Options: Options{Insecure: true}, Cache: newCache(t), Key: &alice}); err != nil {
		t.Fatal(err)
	}
	cfgDir, cacheDir := t.TempDir(), t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfgDir)
	t.Setenv("XDG_CACHE_HOME", cacheDir)
	cfg := trustConfig(t, []string{"*"}, map[string]sign.PrivateKey{"alice": alice})
	c, err := cache.Open()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Pull(ctx, ref, PullOptions{Options: Options{Insecure: true, Config: cfg}, Cache: c})
	if err != nil {
		t.Fatal(err)
	}
	// The user's configuration: alice trusted, every reference required.
	dir := filepath.Join(cfgDir, "ukernel")
	os.MkdirAll(filepath.Join(dir, "trusted"), 0o755)
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte("[trust]\nrequire = [\"*\"]\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "trusted", "alice.pub"), alice.Public().Marshal(), 0o644)
	if err := CheckPulled(p.Path); err != nil {
		t.Fatalf("a pulled image signed by a trusted key: %v", err)
	}
	if err := CheckPulled(img); err != nil {
		t.Fatalf("a local build is not subject to the policy: %v", err)
	}
	// A copy kept outside the cache (pull -o).
	copied := filepath.Join(t.TempDir(), "w.img")
	if b, err := os.ReadFile(p.Path); err != nil || os.WriteFile(copied, b, 0o644) != nil {
		t.Fatal(err)
	}
	// alice is no longer trusted, mallory is: the pulled image is refused.
	os.Remove(filepath.Join(dir, "trusted", "alice.pub"))
	os.WriteFile(filepath.Join(dir, "trusted", "mallory.pub"), mallory.Public().Marshal(), 0o644)
	var te *TrustError
	if err := CheckPulled(p.Path); !errors.As(err, &te) || !strings.Contains(err.Error(), alice.ID.String()) {
		t.Fatalf("a pulled image whose signer is no longer trusted: %v", err)
	}
	// The cache emptied (cache prune): the copy is still known as pulled, and still refused;
	// before, its record went with the cache and it ran as a local build.
	if _, err := c.Prune(0); err != nil {
		t.Fatal(err)
	}
	if err := CheckPulled(copied); !errors.As(err, &te) || !strings.Contains(err.Error(), alice.ID.String()) {
		t.Fatalf("after cache prune, a pulled image whose signer is no longer trusted: %v", err)
	}
}

// A pulled image becomes a template's current revision; pushing that revision names the
// template and gives the same manifest back.
func TestTemplateRoundTrip(t *testing.T) {
	img := testImage(t)
	reg := newRegistry(t)
	ctx := ctxT(t)
	o := Options{Insecure: true}
	ref := reg.host() + "/templates/api:v1"
	pushed, err := Push(ctx, img, ref, PushOptions{Options: o, Cache: newCache(t)})
	if err != nil {
		t.Fatal(err)
	}
	st := template.At(t.TempDir())
	p, err := Pull(ctx, ref, PullOptions{Options: o, Cache: newCache(t)})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := IntoTemplate(ctx, st, "api", p, "test")
	if err != nil || !tr.Created || tr.Revision != pushed.Revision {
		t.Fatalf("into a new template: %+v %v", tr, err)
	}
	r, err := st.Resolve("api")
	if err != nil || r.Revision.ID != pushed.Revision || r.Spec.Source != "" || fileSHA(t, r.Image) != pushed.Revision {
		t.Fatalf("resolve: %+v %v", r, err)
	}
	if !r.Revision.BuiltAt.Equal(time.Unix(1700000000, 0)) {
		t.Fatalf("built at %v, want the build's fixed time", r.Revision.BuiltAt)
	}
	if again, err := IntoTemplate(ctx, st, "api", p, "test"); err != nil || again.Created || again.Revision != tr.Revision {
		t.Fatalf("again: %+v %v", again, err)
	}
	back, err := Push(ctx, r.Image, reg.host()+"/templates/api:v2", PushOptions{Options: o, Cache: newCache(t), Template: "api"})
	if err != nil {
		t.Fatal(err)
	}
	v, err := Pull(ctx, back.Ref, PullOptions{Options: o, Cache: newCache(t)})
	if err != nil || v.Template != "api" || v.Revision != pushed.Revision {
		t.Fatalf("pull of a template push: %+v %v", v, err)
	}
}

// Server errors and a stalled download are retried; progress shows a bar per blob on a
// terminal; a tag naming an index is followed to this host's image.
func TestRetryStallProgressIndex(t *testing.T) {
	img := testImage(t)
	reg := newRegistry(t)
	ctx := ctxT(t)
	var screen bytes.Buffer
	o := Options{Insecure: true, Progress: progress.New(&screen, true), Stall: 300 * time.Millisecond}
	ref := reg.host() + "/flaky:v1"
	reg.fail5xx.Store(2)
	res, err := Push(ctx, img, ref, PushOptions{Options: o, Cache: newCache(t)})
	if err != nil || reg.fail5xx.Load() >= 0 {
		t.Fatalf("push through two 503s: %v (%d left)", err, reg.fail5xx.Load())
	}
	if !strings.Contains(screen.String(), "Pushing "+short(res.Blobs[1].Digest)) || !strings.Contains(screen.String(), "#") {
		t.Fatalf("no progress bar for the layer:\n%q", screen.String())
	}
	reg.fail5xx.Store(1)
	reg.stall.Store(1)
	reg.stallFor = 30 * time.Second
	start := time.Now()
	p, err := Pull(ctx, ref, PullOptions{Options: o, Cache: newCache(t)})
	if err != nil || p.Revision != res.Revision {
		t.Fatalf("pull through a 503 and a stall: %v", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("the stalled download was given up after %v, not within the stall bound", d)
	}

	// An index over the image (and something else): pull follows it to the image.
	man, err := content.FetchAll(ctx, mustRepo(t, o, ref), ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: res.Digest, Size: manifestSize(t, o, ref)})
	if err != nil {
		t.Fatal(err)
	}
	desc := Descriptor(ocispec.MediaTypeImageManifest, man)
	desc.ArtifactType = ArtifactType
	desc.Platform = &ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
	other := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: "application/vnd.example", Digest: res.Digest, Size: desc.Size}
	idx, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{other, desc}})
	repo := mustRepo(t, o, ref)
	if err := repo.PushReference(ctx, Descriptor(ocispec.MediaTypeImageIndex, idx), bytes.NewReader(idx), "multi"); err != nil {
		t.Fatal(err)
	}
	if p, err := Pull(ctx, reg.host()+"/flaky:multi", PullOptions{Options: o, Cache: newCache(t)}); err != nil || p.Digest != res.Digest {
		t.Fatalf("pull through an index: %+v %v", p, err)
	}
}

func mustRepo(t *testing.T, o Options, ref string) *remote.Repository {
	r, err := o.repository(mustRef(t, ref))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func manifestSize(t *testing.T, o Options, ref string) int64 {
	d, err := mustRepo(t, o, ref).Resolve(context.Background(), mustRef(t, ref).Reference)
	if err != nil {
		t.Fatal(err)
	}
	return d.Size
}

// Credentials from docker's config.json through a credential helper (credsStore), for a
// registry that asks for basic auth.
func TestDockerCredentialHelper(t *testing.T) {
	img := testImage(t)
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var authed atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "ci" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		authed.Add(1)
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	bin, docker := t.TempDir(), t.TempDir()
	helper := "#!/bin/sh\nread server\n[ \"$1\" = get ] && [ \"$server\" = \"" + host + "\" ] && echo '{\"ServerURL\":\"" + host + "\",\"Username\":\"ci\",\"Secret\":\"s3cret\"}'\n"
	if err := os.WriteFile(filepath.Join(bin, "docker-credential-ukerneltest"), []byte(helper), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(docker, "config.json"), []byte(`{"credsStore":"ukerneltest"}`), 0o644)
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("DOCKER_CONFIG", docker)
	t.Setenv("REGISTRY_AUTH_FILE", "")
	ctx := ctxT(t)
	if _, err := Push(ctx, img, host+"/w:v1", PushOptions{Options: Options{Insecure: true}, Cache: newCache(t)}); err != nil {
		t.Fatalf("push with the helper's credentials: %v", err)
	}
	if authed.Load() == 0 {
		t.Fatal("no request carried the credentials")
	}
	// Without them: the error says what to do.
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	_, err := Pull(ctx, host+"/w:v1", PullOptions{Options: Options{Insecure: true}, Cache: newCache(t)})
	if err == nil || !strings.Contains(err.Error(), "--password-stdin") {
		t.Fatalf("pull without credentials: %v", err)
	}
}

// A pull record carried to another cache with its image (as deploy does) lets that side apply
// its own policy to the same signatures; a record whose manifest was altered is refused.
func TestRecordCarried(t *testing.T) {
	img := testImage(t)
	reg := newRegistry(t)
	ctx := ctxT(t)
	alice, _ := sign.Generate()
	ref := reg.host() + "/carried:v1"
	if _, err := Push(ctx, img, ref, PushOptions{Options: Options{Insecure: true}, Cache: newCache(t), Key: &alice}); err != nil {
		t.Fatal(err)
	}
	a := newCache(t)
	p, err := Pull(ctx, ref, PullOptions{Options: Options{Insecure: true}, Cache: a})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := PullRecord(a, p.Revision)
	if err != nil || rec == nil {
		t.Fatalf("read record: %v %v", rec, err)
	}
	b := newCache(t)
	if err := WriteRecord(b, *rec); err != nil {
		t.Fatal(err)
	}
	cfg := trustConfig(t, []string{"*"}, map[string]sign.PrivateKey{"alice": alice})
	v, err := VerifyLocal(p.Path, b, cfg)
	if err != nil || !v.Pulled || len(v.Trust.Signers) != 1 || v.Trust.Signers[0].Key != "alice" {
		t.Fatalf("verify with the carried record: %+v %v", v, err)
	}
	bad := *rec
	bad.Manifest = append(bytes.Clone(rec.Manifest), ' ')
	if err := WriteRecord(b, bad); err == nil {
		t.Fatal("a record whose manifest is not its digest was kept")
	}
}

// A reference that parses prints back as one that parses to the same.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"127.0.0.1:5000/a/b:v1", "h.io/r@sha256:" + strings.Repeat("a", 64), "oci-layout:/tmp/x:v1", "oci-archive:a.tar@sha256:" + strings.Repeat("b", 64), "oci-layout:a:b/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err != nil {
			return
		}
		again, err := ParseRef(r.String())
		if err != nil || again.String() != r.String() || again.Kind != r.Kind || again.Name() != r.Name() {
			t.Fatalf("%q -> %q -> %q, %v", s, r.String(), again.String(), err)
		}
	})
}

// A pull cancelled mid-layer (Ctrl-C, --timeout) leaves nothing in the cache.
func TestPullCancelledLeavesNothing(t *testing.T) {
	img := testImage(t)
	reg := newRegistry(t)
	ref := reg.host() + "/cancel:v1"
	res, err := Push(ctxT(t), img, ref, PushOptions{Options: Options{Insecure: true}, Cache: newCache(t)})
	if err != nil {
		t.Fatal(err)
	}
	c := newCache(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	o := Options{Insecure: true, Stall: time.Minute}
	s, err := o.openRead(ctx, mustRef(t, ref))
	if err != nil {
		t.Fatal(err)
	}
	ri, err := o.resolve(ctx, s, mustRef(t, ref))
	if err != nil {
		t.Fatal(err)
	}
	// The layer's download sends half its bytes, then nothing until the deadline.
	reg.stallFor = time.Minute
	reg.stall.Store(100)
	err = o.fetchLayer(ctx, s, ri.image, func(r io.Reader) error { _, err := c.Put(r, ri.image.Revision); return err })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled pull: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(c.Dir, "tmp", "*")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	if c.Has(res.Revision) {
		t.Fatal("a cancelled pull stored the image")
	}
}
