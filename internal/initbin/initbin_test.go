package initbin

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestGoEnvPinsOutputSettings(t *testing.T) {
	host := []string{"PATH=/usr/bin", "GOAMD64=v3", "GOFLAGS=-tags=exported", "GOEXPERIMENT=jsonv2", "GOOS=darwin", "GOPROXY=off"}
	orig := slices.Clone(host)
	env := GoEnv(host, "GOFLAGS=-mod=mod")
	// exec.Cmd takes the last value of a repeated key: that is what the build sees.
	last := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		last[k] = v
	}
	want := map[string]string{"PATH": "/usr/bin", "GOPROXY": "off", "GOAMD64": "v1", "GOOS": "linux", "GOARCH": "amd64",
		"CGO_ENABLED": "0", "GOWORK": "off", "GOFLAGS": "-mod=mod"}
	for k, v := range want {
		if last[k] != v {
			t.Errorf("%s=%q, want %q (env %q)", k, last[k], v, env)
		}
	}
	if _, ok := last["GOEXPERIMENT"]; ok {
		t.Errorf("GOEXPERIMENT inherited: %q", env)
	}
	if !slices.Equal(host, orig) {
		t.Error("GoEnv modified its argument")
	}
}

// An experiment set with `go env -w` cannot be overridden by the environment, so it must show in
// the version that keys the cache.
func TestGoVersionNamesExperiments(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv("GOENV", filepath.Join(dir, "go.env"))
	plain, err := GoVersion(ctx, dir, GoEnv(os.Environ()))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(plain, "go1.") || strings.Contains(plain, "X:") {
		t.Fatalf("GoVersion = %q, want a bare go1.N version", plain)
	}
	os.WriteFile(filepath.Join(dir, "go.env"), []byte("GOEXPERIMENT=jsonv2\n"), 0o644)
	if got, err := GoVersion(ctx, dir, GoEnv(os.Environ())); err != nil || got != plain+" X:jsonv2" {
		t.Fatalf("GoVersion with GOEXPERIMENT in the go env file = %q, %v; want %q", got, err, plain+" X:jsonv2")
	}
}

// Packs on a cold cache build the init at the same time: each must get the one binary, and no
// temporary file may be left behind.
func TestBuildConcurrentColdCache(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the guest init with the go toolchain (run without -short)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cache := t.TempDir()
	bins := make([]*Binary, 8)
	errs := make([]error, len(bins))
	var wg sync.WaitGroup
	for i := range bins {
		wg.Go(func() { bins[i], errs[i] = Build(ctx, cache) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("build %d: %v", i, err)
		}
		if bins[i].SHA256 != bins[0].SHA256 || bins[i].Path != bins[0].Path {
			t.Fatalf("build %d gave %s %s, build 0 %s %s", i, bins[i].Path, bins[i].SHA256, bins[0].Path, bins[0].SHA256)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(bins[0].Path), ".*")); len(left) > 0 {
		t.Errorf("temporary files left: %q", left)
	}
}

// The host's Go settings must not change the binary the cache key (source and toolchain) stands
// for.
func TestBuildIgnoresHostGoSettings(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the guest init with the go toolchain (run without -short)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	clean, err := Build(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOAMD64", "v3")
	t.Setenv("GOFLAGS", "-tags=ukernel_host_tag")
	t.Setenv("GOEXPERIMENT", "jsonv2")
	t.Setenv("GOFIPS140", "latest")
	host, err := Build(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if host.SHA256 != clean.SHA256 || host.GoVersion != clean.GoVersion {
		t.Errorf("host Go settings changed the init: %s (%s), want %s (%s)", host.SHA256, host.GoVersion, clean.SHA256, clean.GoVersion)
	}
}

// An init binary changed in the cache (a byte flipped, the mtime set back) is built again, not
// packed as the guest's PID 1.
func TestBuildRebuildsChangedInit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the guest init with the go toolchain (run without -short)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	b, err := Build(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(b.Path)
	changed := bytes.Clone(want)
	changed[len(changed)/2] ^= 1
	if err := os.WriteFile(b.Path, changed, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(b.Path, fi.ModTime(), fi.ModTime())
	b2, err := Build(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(b2.Path)
	if b2.SHA256 != b.SHA256 || !bytes.Equal(got, want) {
		t.Fatalf("the changed init was used: sha256 %s, built as %s", b2.SHA256, b.SHA256)
	}
}
