package cache

import (
	"fmt"
	"os"
	"path/filepath"
)

// DefaultDir is where the cache lives: $XDG_CACHE_HOME/ukernel, by default ~/.cache/ukernel.
// Nothing else computes it.
func DefaultDir() (string, error) {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("cache directory: neither XDG_CACHE_HOME nor a home directory is set: %w", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "ukernel"), nil
}

// Folder is one of the cache's subfolders. Everything ukernel keeps in its cache lives in one of
// them, except HostTSCFile; each is listed in layout, which says how Prune clears it.
type Folder string

const (
	Blobs Folder = "sha256" // downloaded and stored blobs, by SHA-256
	Tmp   Folder = "tmp"    // blobs and downloads being written
	State Folder = "state"  // named state: the last InRelease of each suite, parsed indices

	Kernels  Folder = "kernels"   // unpacked kernel packages, by package digest (pipeline)
	Inits    Folder = "init"      // built guest inits, by source and toolchain (initbin)
	Boot     Folder = "boot"      // an image's kernel and initramfs, by image digest (bootfiles)
	Vmlinux  Folder = "vmlinux"   // decompressed kernels, by bzImage digest (bootfiles)
	Verified Folder = "verified"  // files verified in full, by identity: images (bootfiles), VMM binaries (snapshot)
	KVMProbe Folder = "kvm-probe" // KVM probe answers, by host kernel, QEMU and kernel (kvmprobe)
	// Records is what cannot be made again, about files that outlive the cache: a pull's
	// manifest and signatures, by image digest (oci), which the trust policy is applied to
	// again whenever a copy of the image runs or is deployed. Prune keeps it: an image whose
	// record went would pass for a local build, which no policy covers.
	Records Folder = "records"
)

// HostTSCFile holds the host's TSC rate, measured once per host boot (vmm/qemu).
const HostTSCFile = "host-tsc-khz"

// How Prune clears a folder.
type pruneKind int

const (
	pruneFiles   pruneKind = iota // each file by its age
	pruneTemp                     // files older than an hour (younger ones may be a running write)
	pruneEntries                  // each top-level entry as a whole by its own age (users refresh it)
	pruneNever                    // kept (Records)
)

// layout is every folder of the cache.
var layout = []struct {
	folder Folder
	prune  pruneKind
}{
	{Blobs, pruneFiles},
	{Tmp, pruneTemp},
	{State, pruneFiles},
	{Kernels, pruneEntries},
	{Inits, pruneEntries},
	{Boot, pruneEntries},
	{Vmlinux, pruneEntries},
	{Verified, pruneEntries},
	{KVMProbe, pruneEntries},
	{Records, pruneNever},
}

// In returns the path of f in the cache at dir, joined with elem.
func (f Folder) In(dir string, elem ...string) string {
	return filepath.Join(append([]string{dir, string(f)}, elem...)...)
}
