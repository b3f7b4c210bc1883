// Package version reports the ukernel version and the Go toolchain that built it; both are
// recorded in every image manifest.
package version

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
)

// Version is set at release time with -ldflags "-X .../internal/version.Version=v1.2.3".
var Version = "0.1.0-dev"

// String is the version shown by `ukernel --version`.
func String() string { return Version + " (" + runtime.Version() + ")" }

// Go returns the Go version of this binary.
func Go() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.GoVersion != "" {
		return bi.GoVersion
	}
	return runtime.Version()
}

var (
	binaryOnce   sync.Once
	binaryDigest string
)

// BinaryDigest is the SHA-256 of the running executable. Build caches key on it, so a changed
// ukernel (even one with the same version string, as in development) never reuses outputs
// made by another.
func BinaryDigest() string {
	binaryOnce.Do(func() {
		binaryDigest = Version
		exe, err := os.Executable()
		if err != nil {
			return
		}
		f, err := os.Open(exe)
		if err != nil {
			return
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err == nil {
			binaryDigest = hex.EncodeToString(h.Sum(nil))
		}
	})
	return binaryDigest
}
