// Package initbin builds the guest's PID 1 (cmd/ukernel-init) from the source embedded in the
// ukernel binary, statically and reproducibly, and caches the result by source digest and
// toolchain (gotool.Version). Building it at pack time instead of shipping a prebuilt binary keeps
// `go install` the only install step and lets the manifest record exactly which toolchain
// produced it. The toolchain settings are package gotool's.
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

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/crashpoint"
	"github.com/ukernel-dev/ukernel/internal/gotool"
	"github.com/ukernel-dev/ukernel/internal/workdir"
)

// srcPrefix names the copy of the init's source a build runs in, in the system's temporary
// directory.
const srcPrefix = "ukernel-init-src-"

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
	if _, err := exec.LookPath("go"); err != nil {
		return nil, errors.New("go toolchain not found on PATH: ukernel builds the guest init (and Go workloads) with it; install Go 1.26 or newer")
	}
	digest, err := digestFS(src)
	if err != nil {
		return nil, err
	}
	// The source is written out first because the toolchain that builds it (and so the cache
	// key) depends on its go.mod when GOTOOLCHAIN allows switching.
	if _, err := workdir.Sweep(os.TempDir(), srcPrefix); err != nil {
		return nil, err
	}
	work, err := workdir.Mkdir(os.TempDir(), srcPrefix)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	if err := os.CopyFS(work, src); err != nil {
		return nil, fmt.Errorf("write init source: %w", err)
	}
	settings := []string{"GOFLAGS=-mod=mod"}
	env := gotool.Env(os.Environ(), settings...)
	goVersion, err := gotool.Version(ctx, work, env)
	if err != nil {
		return nil, err
	}
	// The settings are in the key too: a change to them must not reuse binaries built without it
	// (nor those cached before they were pinned, which may carry the host's).
	key := sha256.Sum256([]byte(digest + "\n" + goVersion + "\n" + strings.Join(gotool.Settings(settings...), " ")))
	dir := cache.Inits.In(cacheDir, hex.EncodeToString(key[:16]))
	out := filepath.Join(dir, "ukernel-init")
	if b, err := describe(out, goVersion); err == nil {
		cache.MarkUsed(dir)
		return b, nil
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// A private temporary directory per build: two packs on a cold cache must not write the same
	// file, and the rename publishes only a finished binary.
	if _, err := workdir.Sweep(dir, ".build-"); err != nil {
		return nil, err
	}
	tmp, err := workdir.Mkdir(dir, ".build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "ukernel-init")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w -buildid=", "-o", bin, "./cmd/ukernel-init")
	cmd.Dir = work
	cmd.Env = env
	workdir.DieWithParent(cmd)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the guest init (go build ./cmd/ukernel-init): %v\n%s", err, msg)
	}
	sum, err := cache.FileSHA256(bin)
	if err != nil {
		return nil, err
	}
	// A concurrent build may have published its binary meanwhile: replacing it is atomic and
	// harmless, as the same source, toolchain and pinned environment give the same bytes.
	crashpoint.At("cache-init")
	if err := atomicfile.Publish(bin, out); err != nil {
		return nil, fmt.Errorf("guest init cache: %w", err)
	}
	if err := cache.Seal(out, sum); err != nil {
		return nil, fmt.Errorf("guest init cache: %w", err)
	}
	return describe(out, goVersion)
}

// describe returns the cached binary at path if it is the one built there: it becomes the
// guest's PID 1, so one changed since (cache.Seal) is built again.
func describe(path, goVersion string) (*Binary, error) {
	sum, err := cache.CheckSealed(path, "")
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	return &Binary{Path: path, SHA256: sum, Size: fi.Size(), GoVersion: goVersion}, nil
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
