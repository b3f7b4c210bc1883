package pypi

import (
	"slices"
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
