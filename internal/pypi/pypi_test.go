package pypi

import (
	"context"
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
