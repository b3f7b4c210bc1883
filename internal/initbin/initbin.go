// Package initbin builds the guest's PID 1 (cmd/ukernel-init) from the source embedded in the
// ukernel binary, statically and reproducibly, and caches the result by source digest and Go
// version. Building it at pack time instead of shipping a prebuilt binary keeps `go install`
// the only install step and lets the manifest record exactly which toolchain produced it.
package initbin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	ukernel "github.com/ukernel-dev/ukernel"
)

// Binary is a built init.
type Binary struct {
	Path      string
	SHA256    string
	Size      int64
	GoVersion string
}

// Build returns the init binary for the embedded source, building it into cacheDir on a miss.
func Build(ctx context.Context, cacheDir string) (*Binary, error) {
	return build(ctx, ukernel.InitSource, cacheDir)
}

func build(ctx context.Context, src fs.FS, cacheDir string) (*Binary, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, errors.New("go toolchain not found on PATH: ukernel builds the guest init (and Go workloads) with it; install Go 1.26 or newer")
	}
	goVersion, err := output(ctx, goBin, "env", "GOVERSION")
	if err != nil {
		return nil, fmt.Errorf("go env GOVERSION: %w", err)
	}
	digest, err := digestFS(src)
	if err != nil {
		return nil, err
	}
	key := sha256.Sum256([]byte(digest + "\n" + goVersion))
	dir := filepath.Join(cacheDir, "init", hex.EncodeToString(key[:16]))
	out := filepath.Join(dir, "ukernel-init")
	if b, err := describe(out, goVersion); err == nil {
		return b, nil
	}

	work, err := os.MkdirTemp("", "ukernel-init-src-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	if err := os.CopyFS(work, src); err != nil {
		return nil, fmt.Errorf("write init source: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	tmp := out + ".tmp"
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w -buildid=", "-o", tmp, "./cmd/ukernel-init")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOWORK=off", "GOFLAGS=-mod=mod")
	if msg, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("building the guest init (go build ./cmd/ukernel-init): %v\n%s", err, msg)
	}
	if err := os.Rename(tmp, out); err != nil {
		return nil, err
	}
	return describe(out, goVersion)
}

func describe(path, goVersion string) (*Binary, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	return &Binary{Path: path, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data)), GoVersion: goVersion}, nil
}

// digestFS hashes every file's path and content in a fixed order.
func digestFS(fsys fs.FS) (string, error) {
	var paths []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(paths)
	h := sha256.New()
	for _, p := range paths {
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", p, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func output(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	return strings.TrimSpace(string(out)), err
}
