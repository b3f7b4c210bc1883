package pypi

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseWheelName(t *testing.T) {
	w, err := ParseWheelName("charset_normalizer-3.4.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
	if err != nil || w.Name != "charset-normalizer" || w.Version != "3.4.0" {
		t.Fatalf("%+v %v", w, err)
	}
	if _, err := ParseWheelName("requests-2.32.3.tar.gz"); err == nil {
		t.Fatal("sdist parsed as a wheel")
	}
}

func TestTargetArgs(t *testing.T) {
	args := Target{PythonVersion: "3.11"}.pipArgs()
	for _, want := range []string{"--only-binary=:all:", "cp311", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64"} {
		if !slices.Contains(args, want) {
			t.Errorf("pip args lack %s: %v", want, args)
		}
	}
	if slices.Contains(args, "manylinux_2_37_x86_64") {
		t.Error("wheels newer than the guest's glibc allowed")
	}
}

// TestFetchLockedWheel downloads a locked wheel again from the configured index: the locked file
// by its hash, and a hash that no file of that version has is a clear error.
func TestFetchLockedWheel(t *testing.T) {
	if testing.Short() {
		t.Skip("downloads from the Python package index")
	}
	tgt := Target{PythonVersion: "3.11"}
	locked, err := Download(context.Background(), []string{"six==1.16.0"}, tgt, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(locked) != 1 {
		t.Fatalf("locked %v, want six alone", locked)
	}
	w := locked[0]
	p, err := Fetch(context.Background(), w, tgt, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(p) != w.Filename {
		t.Errorf("fetched %s, locked %s", p, w.Filename)
	}
	w.SHA256 = strings.Repeat("0", 64)
	if _, err := Fetch(context.Background(), w, tgt, t.TempDir()); err == nil || !strings.Contains(err.Error(), "six==1.16.0") {
		t.Errorf("a hash no file has: err %v, want a pip download error naming the wheel", err)
	}
}

func TestNearestVersions(t *testing.T) {
	for _, tc := range []struct{ a, b string }{{"1.2", "1.2.0"}, {"1.0rc1", "1.0"}, {"1.0.dev1", "1.0a1"}, {"1.0", "1.0.post1"}, {"2.9.0", "2.10.0"}, {"2.34.0.dev1", "2.34.0"}} {
		if c := CompareVersions(tc.a, tc.b); tc.a == "1.2" && c != 0 || tc.a != "1.2" && c >= 0 {
			t.Errorf("CompareVersions(%s, %s) = %d", tc.a, tc.b, c)
		}
	}
	vs := []string{"2.34.2", "2.34.1", "2.32.3", "2.31.0", "2.30.0", "1.0"}
	for v, want := range map[string]string{"99": "2.34.2 2.34.1", "2.32.0": "2.34.1 2.32.3 2.31.0 2.30.0", "0.1": "2.30.0 1.0"} {
		if got := strings.Join(Nearest(vs, v, 2), " "); got != want {
			t.Errorf("Nearest(%s) = %s, want %s", v, got, want)
		}
	}
}

// A version the index does not have is named as such, with the nearest ones that exist; it is not
// blamed on a missing wheel.
func TestDownloadNoSuchVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("asks the Python package index")
	}
	_, err := Download(context.Background(), []string{"six==1.16.0", "requests==99"}, Target{PythonVersion: "3.11"}, t.TempDir(), nil)
	var nv *NoVersionError
	if !errors.As(err, &nv) || nv.Name != "requests" || len(nv.Nearest) == 0 || !strings.HasPrefix(nv.Nearest[0], "2.") {
		t.Fatalf("requests==99: %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "has no version 99") || strings.Contains(msg, "wheel") {
		t.Errorf("message: %s", msg)
	}
	// numpy 1.21.0 exists, with wheels for CPython up to 3.10 only.
	if _, err := Download(context.Background(), []string{"numpy==1.21.0"}, Target{PythonVersion: "3.11"}, t.TempDir(), nil); err == nil ||
		!strings.Contains(err.Error(), "numpy 1.21.0 has no wheel for CPython 3.11") || !strings.Contains(err.Error(), "the nearest versions with one: 1.2") {
		t.Errorf("a version without a wheel for the guest: %v", err)
	}
	if _, err := Download(context.Background(), []string{"no-such-project-ukernel-xyz==1.0"}, Target{PythonVersion: "3.11"}, t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "not found in the package index") {
		t.Errorf("unknown project: %v", err)
	}
}

// FuzzVersions feeds pip's version lists (outside input) to the parsers: no panic, a consistent
// order, and Nearest stays within the list.
func FuzzVersions(f *testing.F) {
	for _, seed := range []string{"2.34.2, 2.34.0.dev1, 1.0rc1, 1.0.post2, 1!2.0, v3", "none", "", "1..2, .1, 1.-"} {
		f.Add(seed, "2.0")
	}
	f.Fuzz(func(t *testing.T, list, v string) {
		vs := versionList(list)
		for i := 1; i < len(vs); i++ {
			if CompareVersions(vs[i-1], vs[i]) < 0 {
				t.Fatalf("not newest first: %q", vs)
			}
			if a, b := CompareVersions(vs[i-1], vs[i]), CompareVersions(vs[i], vs[i-1]); a != -b {
				t.Fatalf("Compare(%q, %q) = %d but reversed %d", vs[i-1], vs[i], a, b)
			}
		}
		if near := Nearest(vs, v, 2); len(near) > 4 || len(near) > len(vs) {
			t.Fatalf("Nearest(%q, %q) = %q", vs, v, near)
		}
		triedVersions("(from versions: " + list + ")")
		splitRequirement(list)
	})
}
