// Package version reports the ukernel version, the Go toolchain that built it and the
// host/guest ABI it speaks; all three are recorded in every image manifest.
package version

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sync"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// Version is set at release time with -ldflags "-X .../internal/version.Version=v1.2.3".
var Version = "0.1.0-dev"

// Info is what `ukernel version` reports.
type Info struct {
	Ukernel string `json:"ukernel"`
	Go      string `json:"go"`
	ABI     string `json:"abi"`
}

// Get returns this binary's versions.
func Get() Info { return Info{Ukernel: Version, Go: Go(), ABI: abi.Version} }

// String is the one line `ukernel --version` prints.
func (i Info) String() string {
	return fmt.Sprintf("ukernel %s (%s, ABI %s)", i.Ukernel, i.Go, i.ABI)
}

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
