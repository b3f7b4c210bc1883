package gotool

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestEnvPinsOutputSettings(t *testing.T) {
	host := []string{"PATH=/usr/bin", "GOAMD64=v3", "GOFLAGS=-tags=exported", "GOEXPERIMENT=jsonv2", "GOOS=darwin", "GOPROXY=off"}
	orig := slices.Clone(host)
	env := Env(host, "GOFLAGS=-mod=mod")
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
		t.Error("Env modified its argument")
	}
}

// An experiment set with `go env -w` cannot be overridden by the environment, so it must show in
// the version that keys the cache.
func TestVersionNamesExperiments(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv("GOENV", filepath.Join(dir, "go.env"))
	plain, err := Version(ctx, dir, Env(os.Environ()))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(plain, "go1.") || strings.Contains(plain, "X:") {
		t.Fatalf("Version = %q, want a bare go1.N version", plain)
	}
	os.WriteFile(filepath.Join(dir, "go.env"), []byte("GOEXPERIMENT=jsonv2\n"), 0o644)
	if got, err := Version(ctx, dir, Env(os.Environ())); err != nil || got != plain+" X:jsonv2" {
		t.Fatalf("Version with GOEXPERIMENT in the go env file = %q, %v; want %q", got, err, plain+" X:jsonv2")
	}
}
