// Package version reports the ukernel version and the Go toolchain that built it; both are
// recorded in every image manifest.
package version

import (
	"runtime"
	"runtime/debug"
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
