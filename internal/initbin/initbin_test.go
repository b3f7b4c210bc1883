package initbin

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

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
