package debian

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/cache"
)

// testCache is shared by the network tests so the 9 MB index is fetched once per machine: it
// lives in the user's cache like the product's own.
func testCache(t testing.TB) *cache.Cache {
	t.Helper()
	c, err := cache.Open()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var (
	bookwormOnce sync.Once
	bookworm     *Archive
	bookwormErr  error
)

// openBookworm opens the real bookworm archive through the host's apt sources.
func openBookworm(t *testing.T) *Archive {
	t.Helper()
	if testing.Short() {
		t.Skip("network: fetches the Debian archive (run without -short)")
	}
	bookwormOnce.Do(func() {
		srcs, err := Sources("", "", "bookworm")
		if err != nil {
			bookwormErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		bookworm, bookwormErr = Open(ctx, OpenOptions{Sources: srcs, Cache: testCache(t), Fetcher: &cache.Fetcher{}})
	})
	if bookwormErr != nil {
		t.Fatal(bookwormErr)
	}
	return bookworm
}

func TestOpenBookworm(t *testing.T) {
	a := openBookworm(t)
	if len(a.Packages) < 50000 {
		t.Fatalf("only %d packages", len(a.Packages))
	}
	codenames := map[string]bool{}
	for _, s := range a.Suites {
		codenames[s.Release.Codename] = true
		if s.Release.Origin == "" || s.Release.Date.IsZero() || !strings.HasSuffix(s.IndexPath, ".xz") {
			t.Errorf("suite %s: %+v %s", s.Source.Suite, s.Release.Origin, s.IndexPath)
		}
	}
	if !codenames["bookworm"] || !codenames["bookworm-security"] {
		t.Errorf("suites %v, want bookworm and bookworm-security", codenames)
	}
}

func TestWrongKeyringFails(t *testing.T) {
	a := openBookworm(t)
	wrong := filepath.Join(t.TempDir(), "wrong.gpg")
	// A real keyring that did not sign bookworm: the bullseye release key alone.
	data, err := os.ReadFile("/usr/share/keyrings/debian-archive-bullseye-stable.gpg")
	if err != nil {
		t.Skipf("needs debian-archive-keyring installed: %v", err)
	}
	if err := os.WriteFile(wrong, data, 0o644); err != nil {
		t.Fatal(err)
	}
	raw := a.Suites[0].Release.Raw
	if _, err := VerifyInRelease(raw, wrong); err == nil {
		t.Fatal("InRelease verified against the wrong keyring")
	}
	if _, err := VerifyInRelease(raw, DefaultKeyring); err != nil {
		t.Fatal(err)
	}
	tampered := []byte(strings.Replace(string(raw), "Origin: Debian", "Origin: Debiam", 1))
	if _, err := VerifyInRelease(tampered, DefaultKeyring); err == nil {
		t.Fatal("tampered InRelease verified")
	}
	if _, err := VerifyInRelease([]byte("Origin: Debian\nCodename: x\n"), DefaultKeyring); err == nil {
		t.Fatal("unsigned Release accepted")
	}
}
