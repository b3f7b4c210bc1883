package vmm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/project"
)

// Accelerators.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// QEMUBinary is the QEMU system emulator the QEMU backend and the KVM probe run.
const QEMUBinary = "qemu-system-x86_64"

// DefaultProbeTimeout bounds the KVM probe boot: a working KVM panics the probe kernel in well
// under a second; TCG takes about 1.8 s for the same boot here.
const DefaultProbeTimeout = 4 * time.Second

// AccelChoice is the accelerator picked for a run and why.
type AccelChoice struct {
	Accel  string
	Reason string // why KVM is not used, or why the choice was made
}

// String renders the choice the way `run` prints it: "tcg (kvm unusable: ...)".
func (c AccelChoice) String() string { return withReason(c.Accel, c.Reason) }

// ProbeSpec says what the KVM probe boots.
type ProbeSpec struct {
	QEMU         string        // emulator binary; QEMUBinary when empty
	Kernel       string        // a bzImage; the image's own kernel
	KernelDigest string        // its sha256 (hex); computed when empty
	Timeout      time.Duration // DefaultProbeTimeout when zero
	CacheDir     string        // where results are kept; <user cache>/ukernel/kvm-probe when empty
	Log          *slog.Logger
	// Probed, when set, hears of every answer ProbeKVM gives and when it started looking
	// (launch records it as a span of the run's trace).
	Probed func(res ProbeResult, start time.Time)
}

// ProbeFailureTTL is how long a failed KVM probe stays cached.
const ProbeFailureTTL = 7 * 24 * time.Hour

// ProbeResult is the outcome of one KVM probe.
type ProbeResult struct {
	Usable   bool      `json:"usable"`
	Reason   string    `json:"reason,omitempty"` // why not
	Key      string    `json:"key"`
	Checked  time.Time `json:"checked"`
	Duration string    `json:"duration"`
	Cached   bool      `json:"-"`
}

// ProbeKVM tells whether KVM can run a Linux guest here. /dev/kvm opening is not enough (on
// some hosts a Linux guest spins in the host kernel forever), so it boots the kernel under
// KVM without a root filesystem and with panic=-1: the guest panics, reboots, and QEMU with
// -no-reboot exits by itself. That must happen within the timeout. The result is cached by host
// kernel release, QEMU binary and kernel digest, so the probe costs once (a failure is retried
// after ProbeFailureTTL).
func ProbeKVM(ctx context.Context, spec ProbeSpec) (ProbeResult, error) {
	start := time.Now()
	res, err := probeKVM(ctx, spec)
	if err == nil && spec.Probed != nil {
		spec.Probed(res, start)
	}
	return res, err
}

func probeKVM(ctx context.Context, spec ProbeSpec) (ProbeResult, error) {
	if spec.QEMU == "" {
		spec.QEMU = QEMUBinary
	}
	if spec.Timeout == 0 {
		spec.Timeout = DefaultProbeTimeout
	}
	log := spec.Log
	if log == nil {
		log = slog.Default()
	}
	if reason := KVMDevice(); reason != "" {
		return ProbeResult{Reason: reason, Checked: time.Now()}, nil
	}
	key, err := probeKey(spec)
	if err != nil {
		return ProbeResult{}, err
	}
	if spec.CacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return ProbeResult{}, fmt.Errorf("KVM probe cache: %w", err)
		}
		spec.CacheDir = filepath.Join(base, "ukernel", "kvm-probe")
	}
	cachePath := filepath.Join(spec.CacheDir, key+".json")
	if b, err := os.ReadFile(cachePath); err == nil {
		var res ProbeResult
		// A failed probe is retried after a while: the host's KVM may have been fixed (nested
		// virtualisation turned on, a BIOS setting) without any change to the cache key.
		if json.Unmarshal(b, &res) == nil && res.Key == key && (res.Usable || time.Since(res.Checked) < ProbeFailureTTL) {
			res.Cached = true
			cache.MarkUsed(cachePath)
			log.Debug("KVM probe result from cache", "file", cachePath, "usable", res.Usable)
			return res, nil
		}
	}
	res, err := runProbe(ctx, spec)
	if err != nil {
		return ProbeResult{}, err
	}
	res.Key = key
	if b, err := json.MarshalIndent(res, "", "  "); err == nil {
		if err := project.WriteFileAtomic(cachePath, append(b, '\n'), 0o644); err != nil {
			log.Debug("KVM probe result not cached", "file", cachePath, "err", err)
		}
	}
	return res, nil
}

// KVMDevice says why /dev/kvm does not open, or "" when it does, for the user QEMU runs as
// (KVMAccess): the probe's first step, and the doctor's reason when it cannot probe at all.
func KVMDevice() string {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "KVM: no /dev/kvm (no KVM support in this host or VM; nested virtualisation off?)"
	case err != nil:
		return fmt.Sprintf("KVM: cannot open /dev/kvm: %v (add your user to the kvm group)", err)
	}
	f.Close()
	if Unprivileged() {
		return KVMAccess()
	}
	return ""
}

func probeKey(spec ProbeSpec) (string, error) {
	var uts syscall.Utsname
	if err := syscall.Uname(&uts); err != nil {
		return "", fmt.Errorf("uname: %w", err)
	}
	var rel strings.Builder
	for _, c := range uts.Release {
		if c == 0 {
			break
		}
		rel.WriteByte(byte(c))
	}
	// The QEMU binary is identified by its path, size and modification time, not by running
	// `--version`: that exec costs about 0.1 s, on every run. An upgrade changes all three.
	bin, err := exec.LookPath(spec.QEMU)
	if err != nil {
		return "", fmt.Errorf("%s not found on PATH: install qemu-system-x86", spec.QEMU)
	}
	if bin, err = filepath.EvalSymlinks(bin); err != nil {
		return "", fmt.Errorf("%s: %w", spec.QEMU, err)
	}
	st, err := os.Stat(bin)
	if err != nil {
		return "", fmt.Errorf("%s: %w", spec.QEMU, err)
	}
	qver := fmt.Sprintf("%s %d %d", bin, st.Size(), st.ModTime().UnixNano())
	digest := spec.KernelDigest
	if digest == "" {
		if digest, err = cache.FileSHA256(spec.Kernel); err != nil {
			return "", err
		}
	}
	return shortHash(rel.String() + "\n" + qver + "\n" + digest), nil
}

// shortHash names a cache entry after its key.
func shortHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

func runProbe(ctx context.Context, spec ProbeSpec) (ProbeResult, error) {
	start := time.Now()
	pctx, cancel := context.WithTimeout(ctx, spec.Timeout)
	defer cancel()
	kernel := spec.Kernel
	var attr syscall.SysProcAttr
	var extra []*os.File
	if Unprivileged() {
		// As the run's QEMU: the probe answers for the user the guest's QEMU runs as.
		f, err := OpenReadable(spec.Kernel)
		if err != nil {
			return ProbeResult{}, fmt.Errorf("KVM probe: kernel: %w", err)
		}
		defer f.Close()
		kernel, extra, attr.Credential = "/proc/self/fd/3", []*os.File{f}, UnprivilegedCredential(true)
	}
	// No -cpu: the default model is what a KVM run uses (-cpu host/max abort on some hosts).
	cmd := exec.CommandContext(pctx, spec.QEMU,
		"-M", "microvm,pit=on,pic=on,rtc=on", "-accel", "kvm", "-m", "128", "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-kernel", kernel, "-append", "console=ttyS0 quiet panic=-1",
		"-serial", "stdio")
	cmd.Env = Env()
	attr.Setpgid = true
	cmd.SysProcAttr, cmd.ExtraFiles = &attr, extra
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.Stdin = nil
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	res := ProbeResult{Checked: start, Duration: time.Since(start).Round(time.Millisecond).String()}
	switch {
	case ctx.Err() != nil:
		return ProbeResult{}, fmt.Errorf("KVM probe: %w", ctx.Err())
	case pctx.Err() != nil:
		res.Reason = fmt.Sprintf("KVM: /dev/kvm present but a probe guest did not finish in %s", spec.Timeout)
	case err != nil:
		res.Reason = fmt.Sprintf("KVM: probe guest failed (%v): %s", err, lastLine(out.String()))
	case !strings.Contains(out.String(), "Kernel panic"):
		res.Reason = "KVM: probe guest exited without running its kernel to the expected panic"
	default:
		res.Usable = true
	}
	return res, nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
