// Package gotool runs the Go toolchain for what goes into a guest: the environment guest
// binaries are built with (pinned so the host's settings cannot change their bytes) and the
// toolchain's identity, for cache keys and the manifest. initbin builds the guest init with it,
// build a Go workload.
package gotool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
)

// pinned are the settings guest binaries are built with. Each changes the bytes `go build`
// writes while cache keys carry only the toolchain, so they are set rather than inherited: a
// host with GOAMD64=v3 or GOFLAGS=-tags=x must not produce, and cache, a different binary. A
// value set in the environment also overrides `go env -w`; that is why GOFLAGS gets a value
// (a flag guest builds pass anyway, leaving -mod and vendor detection at Go's defaults) instead
// of being cleared.
var pinned = []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOAMD64=v1", "GOFIPS140=off", "GOWORK=off", "GOFLAGS=-buildvcs=false"}

// Settings returns the pinned settings followed by set, as Env applies them: the part of a guest
// binary's cache key that says how it was built.
func Settings(set ...string) []string { return append(slices.Clone(pinned), set...) }

// Env returns environ for building a guest binary: the pinned settings replace inherited ones,
// GOEXPERIMENT is dropped (it cannot be pinned: see Version), everything else (PATH, HOME,
// GOPATH, GOPROXY...) is kept. Each of set ("KEY=VALUE") overrides a pinned value or adds one.
// Key what it builds with Version.
func Env(environ []string, set ...string) []string {
	vars := Settings(set...)
	env := slices.DeleteFunc(slices.Clone(environ), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return k == "GOEXPERIMENT" || slices.ContainsFunc(vars, func(v string) bool { return strings.HasPrefix(v, k+"=") })
	})
	// exec.Cmd uses the last value of a repeated key, so set overrides pinned.
	return append(env, vars...)
}

// Version identifies the toolchain that `go build` runs in dir with env (from Env), for cache
// keys and the manifest: the version after any GOTOOLCHAIN switch the module in dir asks for,
// followed by the experiments in effect as runtime.Version reports them ("go1.26.8 X:jsonv2").
// GOEXPERIMENT belongs here because an empty value cannot override one set with `go env -w`.
func Version(ctx context.Context, dir string, env []string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "env", "GOVERSION", "GOEXPERIMENT")
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return "", fmt.Errorf("go env GOVERSION GOEXPERIMENT in %s: %w", dir, err)
	}
	version, exp, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if exp = strings.TrimSpace(exp); exp != "" {
		version += " X:" + exp
	}
	return version, nil
}
