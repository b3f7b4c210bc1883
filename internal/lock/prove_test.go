package lock

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/debian"
)

// edit changes one locked package of dir's lock and re-seals the digest, as an attacker who can
// write the file would.
func edit(t *testing.T, dir string, l *Lock, name string, change func(*Package)) {
	t.Helper()
	c := *l
	c.Packages = append([]Package(nil), l.Packages...)
	for i := range c.Packages {
		if c.Packages[i].Name == name {
			change(&c.Packages[i])
		}
	}
	must(t, c.Save(dir))
	if _, err := Load(dir); err != nil {
		t.Fatalf("the edited lock does not pass its digest check, so the test proves nothing: %v", err)
	}
}

func find(t *testing.T, l *Lock, name string) Package {
	t.Helper()
	for _, p := range l.Packages {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("%s not locked", name)
	return Package{}
}

// TestForgedPinsAreRefused: a re-sealed lock pointing a real Debian package at another file, or
// at another package's file, is refused by build and `env lock --locked` (Resolve), online and
// offline; `env lock` re-resolves it from the signed index; the honest lock passes.
func TestForgedPinsAreRefused(t *testing.T) {
	needNet(t)
	c, err := cache.OpenDir(t.TempDir()) // private: the proof must not lean on others' records
	must(t, err)
	dir := writeProjectOn(t, "debian-12", "system = []\n")
	honest, _, err := Resolve(ctx(t), Options{Dir: dir, Cache: c})
	must(t, err)
	coreutils, dash := find(t, honest, "coreutils"), find(t, honest, "dash")

	other, err := c.PutBytes([]byte("#!/bin/sh\necho not coreutils\n"))
	must(t, err)
	for name, change := range map[string]func(*Package){
		"another file": func(p *Package) { p.SHA256, p.Size = other, 30 },
		"dash's file":  func(p *Package) { p.SHA256, p.Size, p.Filename = dash.SHA256, dash.Size, dash.Filename },
		"old version":  func(p *Package) { p.Version = "8.32-4.1" },
	} {
		t.Run(name, func(t *testing.T) {
			edit(t, dir, honest, "coreutils", change)
			for _, o := range []Options{{Dir: dir, Cache: c}, {Dir: dir, Cache: c, Locked: true}, {Dir: dir, Cache: c, Locked: true, Offline: true}} {
				_, _, err := Resolve(ctx(t), o)
				var unproven *debian.UnprovenError
				if !errors.As(err, &unproven) || unproven.Pin.Name != "coreutils" || !strings.Contains(err.Error(), "coreutils "+coreutils.Version) && name != "old version" || !strings.Contains(err.Error(), "run ukernel env lock") {
					t.Fatalf("locked=%v offline=%v: got %v, want coreutils refused with what to do", o.Locked, o.Offline, err)
				}
			}
			// `env lock` replaces it with the pins the archive signed.
			l, changed, err := Resolve(ctx(t), Options{Dir: dir, Cache: c, Reresolve: true})
			must(t, err)
			if got := find(t, l, "coreutils"); !changed || got != coreutils {
				t.Fatalf("re-resolved coreutils %+v (changed %v), want %+v", got, changed, coreutils)
			}
		})
	}

	// The honest lock is proven offline from the cache alone, with no record of an earlier
	// proof, and the cache is not taken on its word: a forged uncompressed index stored under the
	// signed index's name is found out by its digest and the proof falls back to the signed
	// compressed one.
	must(t, honest.Save(dir))
	must(t, os.RemoveAll(filepath.Join(c.Dir, "state", "proven")))
	edit(t, dir, honest, "coreutils", func(p *Package) { p.SHA256, p.Size = other, 30 })
	forged := 0
	entries, _ := filepath.Glob(cache.Blobs.In(c.Dir, "*", "*"))
	for _, blob := range entries {
		data, err := os.ReadFile(blob)
		if err != nil || !strings.Contains(string(data), "\nPackage: coreutils\n") {
			continue
		}
		must(t, os.WriteFile(blob, []byte(strings.ReplaceAll(string(data), coreutils.SHA256, other)), 0o644))
		forged++
	}
	if forged == 0 {
		t.Fatal("no uncompressed index in the cache to forge")
	}
	if _, _, err := Resolve(ctx(t), Options{Dir: dir, Cache: c, Locked: true, Offline: true}); err == nil || !strings.Contains(err.Error(), "coreutils") {
		t.Fatalf("a forged cached index proved a forged pin: %v", err)
	}
	must(t, honest.Save(dir))
	if _, _, err := Resolve(ctx(t), Options{Dir: dir, Cache: c, Locked: true, Offline: true}); err != nil {
		t.Fatalf("honest lock offline: %v", err)
	}
}
