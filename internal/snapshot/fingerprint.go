package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/cache"
)

// Fingerprint is everything a saved guest depends on: a restore resumes the guest only where
// each field is the same, since the device state is only meaningful to the same VMM, devices
// and CPU, and the RAM only with the same kernel, initramfs and image.
type Fingerprint struct {
	Backend   string `json:"backend"`
	VMM       string `json:"vmm"`        // the VMM's version line
	VMMDigest string `json:"vmm_sha256"` // its binary
	Accel     string `json:"accel"`
	// CPU is the CPU model the guest sees: under TCG the emulated model; under KVM the host's
	// model and flags (a guest resumes only on the features it was saved with).
	CPU string `json:"cpu"`
	// Layout is the backend's machine and device layout (its command line with paths, ports and
	// the kernel command line masked).
	Layout string `json:"layout"`
	// Cmdline is the kernel command line the guest booted with (vmm.Snapshotter.BootCmdline);
	// empty in a snapshot taken before ukernel recorded it.
	Cmdline   string `json:"cmdline"`
	VCPU      int    `json:"vcpu"`
	MemoryMB  int    `json:"memory_mb"`
	Kernel    string `json:"kernel_sha256"`
	Initramfs string `json:"initramfs_sha256"`
	Image     string `json:"image_sha256"`
}

// Mismatch says, in one line, how f (this run on this host) differs from the snapshot's s;
// "" when they match.
func (f Fingerprint) Mismatch(s Fingerprint) string {
	short := func(d string) string {
		if len(d) > 12 {
			return d[:12]
		}
		return d
	}
	for _, c := range []struct{ what, run, snap string }{
		{"backend", f.Backend, s.Backend},
		{"VMM version", f.VMM, s.VMM},
		{"VMM binary", short(f.VMMDigest), short(s.VMMDigest)},
		{"accelerator", f.Accel, s.Accel},
		{"CPU", f.CPU, s.CPU},
		{"vCPUs", fmt.Sprint(f.VCPU), fmt.Sprint(s.VCPU)},
		{"memory", fmt.Sprintf("%d MiB", f.MemoryMB), fmt.Sprintf("%d MiB", s.MemoryMB)},
		{"kernel", short(f.Kernel), short(s.Kernel)},
		{"initramfs", short(f.Initramfs), short(s.Initramfs)},
		{"image", short(f.Image), short(s.Image)},
	} {
		if c.run != c.snap {
			return fmt.Sprintf("%s differs (this run: %s, the snapshot: %s)", c.what, c.run, c.snap)
		}
	}
	if f.Layout != s.Layout {
		return "device layout differs (this run: " + layoutDiff(f.Layout, s.Layout) + ")"
	}
	if s.Cmdline == "" && f.Cmdline != "" {
		// Such a guest may keep the clocksource it fell back to under TCG (jiffies: no
		// tsc=reliable), for every restore.
		return "the snapshot does not record the kernel command line it booted with (taken by an older ukernel); take it again with `ukernel template build NAME --snapshot`"
	}
	if f.Cmdline != s.Cmdline {
		return "kernel command line differs (this run: " + layoutDiff(f.Cmdline, s.Cmdline) + "); take the snapshot again with `ukernel template build NAME --snapshot`"
	}
	return ""
}

// layoutDiff names the first argument where two layouts differ.
func layoutDiff(run, snap string) string {
	a, b := strings.Fields(run), strings.Fields(snap)
	for i := 0; i < len(a) || i < len(b); i++ {
		switch {
		case i >= len(a):
			return "lacks " + b[i]
		case i >= len(b):
			return "adds " + a[i]
		case a[i] != b[i]:
			return a[i] + ", the snapshot: " + b[i]
		}
	}
	return "same arguments"
}

// versionTimeout bounds a VMM binary's answer to its version query (as doctor's, hosttool).
const versionTimeout = 5 * time.Second

// Binary is a VMM binary as fingerprinted, with its identity: while that stays the same, its
// digest and version are known without reading it again.
type Binary struct {
	Path    string       `json:"path"`
	ID      cache.FileID `json:"id"`
	SHA256  string       `json:"sha256"`
	Version string       `json:"version"`
}

// Identify returns the VMM binary at path (found on PATH when not absolute): from known when
// its identity is known's, else from the record of its last verification in the cache at
// cacheDir ("" for none) under that identity, otherwise hashed and asked its version
// (versionArg, e.g. --version) and recorded there. A binary whose ctime changed alone (a chmod,
// a hard link made) is hashed once more, not at every restore: hashing it and starting it for
// its version cost a restore tens of ms.
func Identify(ctx context.Context, path, versionArg string, known *Binary, cacheDir string) (Binary, error) {
	abs, err := exec.LookPath(path)
	if err != nil {
		return Binary{}, err
	}
	id, err := cache.StatID(abs)
	if err != nil {
		return Binary{}, err
	}
	if known != nil && known.Path == abs && known.ID == id && known.SHA256 != "" {
		return *known, nil
	}
	var record string
	if cacheDir != "" {
		key := fmt.Sprintf("vmm\x00%s\x00%d\x00%d\x00%d\x00%d\x00%d", abs, id.Size, id.Dev, id.Ino, id.Mtime, id.Ctime)
		record = cache.Verified.In(cacheDir, cache.EntryName(key)+".json")
		var b Binary
		if data, err := os.ReadFile(record); err == nil && json.Unmarshal(data, &b) == nil && b.Path == abs && b.ID == id && b.SHA256 != "" {
			cache.MarkUsed(record)
			return b, nil
		}
	}
	sum, err := cache.FileSHA256(abs)
	if err != nil {
		return Binary{}, err
	}
	vctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	cmd := exec.CommandContext(vctx, abs, versionArg)
	cmd.WaitDelay = time.Second // a child of the binary holding its output does not hold us
	out, err := cmd.Output()
	if err != nil {
		if vctx.Err() != nil && ctx.Err() == nil {
			return Binary{}, fmt.Errorf("%s %s: no answer within %s", abs, versionArg, versionTimeout)
		}
		return Binary{}, fmt.Errorf("%s %s: %w", abs, versionArg, err)
	}
	version, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	b := Binary{Path: abs, ID: id, SHA256: sum, Version: version}
	// Changed while it was hashed: the digest may be of neither version; record nothing.
	if again, err := cache.StatID(abs); record != "" && err == nil && again == id {
		if data, err := json.Marshal(b); err == nil {
			// A failed write only costs another hash next time.
			_ = atomicfile.WriteFile(record, data, 0o644)
		}
	}
	return b, nil
}

// HostCPU is the host's CPU as a KVM guest sees it: its model name and the digest of its
// flags (from /proc/cpuinfo's first processor).
func HostCPU() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	var model, flags string
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			if model != "" {
				break // the end of the first processor
			}
			continue
		}
		switch strings.TrimSpace(k) {
		case "model name":
			model = strings.TrimSpace(v)
		case "flags":
			flags = strings.TrimSpace(v)
		}
	}
	sum := sha256.Sum256([]byte(flags))
	return model + " flags:" + hex.EncodeToString(sum[:6])
}
