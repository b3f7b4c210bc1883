// Package kvmprobe tells whether KVM can run a Linux guest on this host, by booting one (opening
// /dev/kvm is not enough), and caches the answer. `run` asks it before choosing KVM, `doctor`
// to report it.
package kvmprobe

import (
	"bytes"
	"context"
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

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/vmm"
)

// DefaultTimeout bounds the KVM probe boot: a working KVM panics the probe kernel in well
// under a second; TCG takes about 1.8 s for the same boot here.
const DefaultTimeout = 4 * time.Second

// Spec says what the KVM probe boots.
type Spec struct {
	QEMU         string        // emulator binary; vmm.QEMUBinary when empty
	Kernel       string        // a bzImage; the image's own kernel
	KernelDigest string        // its sha256 (hex); computed when empty
	Timeout      time.Duration // DefaultTimeout when zero
	CacheDir     string        // where results are kept; the cache's cache.KVMProbe when empty
	Log          *slog.Logger
	// Probed, when set, hears of every answer Probe gives and when it started looking
	// (launch records it as a span of the run's trace).
	Probed func(res Result, start time.Time)
}

// FailureTTL is how long a failed KVM probe stays cached.
const FailureTTL = 7 * 24 * time.Hour

// Result is the outcome of one KVM probe.
type Result struct {
	Usable   bool      `json:"usable"`
	Reason   string    `json:"reason,omitempty"` // why not
	Key      string    `json:"key"`
	Checked  time.Time `json:"checked"`
	Duration string    `json:"duration"`
	Cached   bool      `json:"-"`
}

// Probe tells whether KVM can run a Linux guest here. /dev/kvm opening is not enough (on
// some hosts a Linux guest spins in the host kernel forever), so it boots the kernel under
// KVM without a root filesystem and with panic=-1: the guest panics, reboots, and QEMU with
// -no-reboot exits by itself. That must happen within the timeout. The result is cached by host
// kernel release, QEMU binary and kernel digest, so the probe costs once (a failure is retried
// after FailureTTL).
func Probe(ctx context.Context, spec Spec) (Result, error) {
	start := time.Now()
	res, err := probe(ctx, spec)
	if err == nil && spec.Probed != nil {
		spec.Probed(res, start)
	}
	return res, err
}

func probe(ctx context.Context, spec Spec) (Result, error) {
	if spec.QEMU == "" {
		spec.QEMU = vmm.QEMUBinary
	}
	if spec.Timeout == 0 {
		spec.Timeout = DefaultTimeout
	}
	log := spec.Log
	if log == nil {
		log = slog.Default()
	}
	if reason := Device(); reason != "" {
		return Result{Reason: reason, Checked: time.Now()}, nil
	}
	key, err := probeKey(spec)
	if err != nil {
		return Result{}, err
	}
	if spec.CacheDir == "" {
		dir, err := cache.DefaultDir()
		if err != nil {
			return Result{}, fmt.Errorf("KVM probe cache: %w", err)
		}
		spec.CacheDir = cache.KVMProbe.In(dir)
	}
	cachePath := filepath.Join(spec.CacheDir, key+".json")
	if b, err := os.ReadFile(cachePath); err == nil {
		var res Result
		// A failed probe is retried after a while: the host's KVM may have been fixed (nested
		// virtualisation turned on, a BIOS setting) without any change to the cache key.
		if json.Unmarshal(b, &res) == nil && res.Key == key && (res.Usable || time.Since(res.Checked) < FailureTTL) {
			res.Cached = true
			cache.MarkUsed(cachePath)
			log.Debug("KVM probe result from cache", "file", cachePath, "usable", res.Usable)
			return res, nil
		}
	}
	res, err := runProbe(ctx, spec)
	if err != nil {
		return Result{}, err
	}
	res.Key = key
	if b, err := json.MarshalIndent(res, "", "  "); err == nil {
		if err := atomicfile.WriteFile(cachePath, append(b, '\n'), 0o644); err != nil {
			log.Debug("KVM probe result not cached", "file", cachePath, "err", err)
		}
	}
	return res, nil
}

// Device says why /dev/kvm does not open, or "" when it does, for the user QEMU runs as
// (KVMAccess): the probe's first step, and the doctor's reason when it cannot probe at all.
func Device() string {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "KVM: no /dev/kvm (no KVM support in this host or VM; nested virtualisation off?)"
	case err != nil:
		return fmt.Sprintf("KVM: cannot open /dev/kvm: %v (add your user to the kvm group)", err)
	}
	f.Close()
	if vmm.Unprivileged() {
		return vmm.KVMAccess()
	}
	return ""
}

func probeKey(spec Spec) (string, error) {
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
	return cache.EntryName(rel.String() + "\n" + qver + "\n" + digest), nil
}

func runProbe(ctx context.Context, spec Spec) (Result, error) {
	start := time.Now()
	pctx, cancel := context.WithTimeout(ctx, spec.Timeout)
	defer cancel()
	kernel := spec.Kernel
	var attr syscall.SysProcAttr
	var extra []*os.File
	if vmm.Unprivileged() {
		// As the run's QEMU: the probe answers for the user the guest's QEMU runs as.
		f, err := vmm.OpenReadable(spec.Kernel)
		if err != nil {
			return Result{}, fmt.Errorf("KVM probe: kernel: %w", err)
		}
		defer f.Close()
		kernel, extra, attr.Credential = "/proc/self/fd/3", []*os.File{f}, vmm.UnprivilegedCredential(true)
	}
	// No -cpu: the default model is what a KVM run uses (-cpu host/max abort on some hosts).
	cmd := exec.CommandContext(pctx, spec.QEMU,
		"-M", "microvm,pit=on,pic=on,rtc=on", "-accel", "kvm", "-m", "128", "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-kernel", kernel, "-append", "console=ttyS0 quiet panic=-1",
		"-serial", "stdio")
	cmd.Env = vmm.Env()
	attr.Setpgid = true
	cmd.SysProcAttr, cmd.ExtraFiles = &attr, extra
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.Stdin = nil
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	res := Result{Checked: start, Duration: time.Since(start).Round(time.Millisecond).String()}
	switch {
	case ctx.Err() != nil:
		return Result{}, fmt.Errorf("KVM probe: %w", ctx.Err())
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
