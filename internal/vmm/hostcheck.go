package vmm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Check is one thing `ukernel doctor` looks at on this host.
type Check struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"` // backend, accelerator, host, tool
	Found   bool   `json:"found"`
	Version string `json:"version,omitempty"`
	Works   bool   `json:"works"`
	Why     string `json:"why,omitempty"`     // why it does not work, or what it is for
	Install string `json:"install,omitempty"` // how to get it when it is missing or broken
}

// HostReport is what `ukernel doctor` prints: each check, and what `run` would use here.
type HostReport struct {
	Checks  []Check       `json:"checks"`
	Backend BackendChoice `json:"backend"`
	Accel   AccelChoice   `json:"accel"`
	Net     string        `json:"net"` // the network mode the choice is for
}

// HostOptions say where the doctor finds a kernel for the KVM probe, and which run to report the
// backend choice for.
type HostOptions struct {
	CacheDir string // <user cache>/ukernel when empty; boot kernels and probe results live here
	Kernel   string // a bzImage for the KVM probe; the newest cached boot kernel when empty
	NetMode  string // the run's network (user, none, tap:IFACE); user when empty, as for `run`
}

// CheckHost inspects this host for every backend, accelerator and tool ukernel needs.
func CheckHost(ctx context.Context, o HostOptions) (HostReport, error) {
	if o.CacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return HostReport{}, fmt.Errorf("cache directory: %w", err)
		}
		o.CacheDir = filepath.Join(base, "ukernel")
	}
	var r HostReport
	qemu := toolCheck(ctx, QEMUBinary, "backend", []string{"--version"}, "apt-get install qemu-system-x86")
	r.Checks = append(r.Checks, qemu)
	fc := toolCheck(ctx, FirecrackerBinary, "backend", []string{"--version"}, FirecrackerInstall)
	fcRuns := fc.Works // its --version answered; whether KVM lets it boot is checked below
	jailer := toolCheck(ctx, "jailer", "tool", []string{"--version"}, "the jailer ships in the same Firecracker release archive")
	if jailer.Found {
		jailer.Why = "used when ukernel runs as root: chroot, uid/gid, cgroup, network namespace"
	} else {
		jailer.Why = "optional: without it, firecracker runs unconfined"
	}

	kvm := Check{Name: "kvm", Kind: "accelerator"}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		kvm.Why = "no /dev/kvm: this host (or VM) has no KVM; enable virtualisation in the firmware or nested virtualisation in the hypervisor"
	case err != nil:
		kvm.Found = true
		kvm.Why = fmt.Sprintf("cannot open /dev/kvm: %v", err)
		kvm.Install = "add your user to the kvm group: sudo adduser $USER kvm (then log in again)"
	default:
		f.Close()
		kvm.Found = true
		kernel := o.Kernel
		if kernel == "" {
			kernel = newestBootKernel(filepath.Join(o.CacheDir, "boot"))
		}
		if kernel == "" {
			kvm.Why = "/dev/kvm opens, but no kernel is cached yet to probe it with (run `ukernel run` once)"
			break
		}
		if !qemu.Works {
			kvm.Why = "/dev/kvm opens, but the KVM probe needs a working " + QEMUBinary
			break
		}
		res, err := ProbeKVM(ctx, ProbeSpec{Kernel: kernel, CacheDir: filepath.Join(o.CacheDir, "kvm-probe")})
		if err != nil {
			return HostReport{}, err
		}
		kvm.Works = res.Usable
		if !res.Usable {
			kvm.Why = res.Reason + "; a guest cannot run under KVM here"
		}
	}
	// A binary that is found but fails `--version` does not work: toolCheck said why.
	tcg := Check{Name: "tcg", Kind: "accelerator", Found: qemu.Found, Works: qemu.Works,
		Why: "QEMU's emulator: works everywhere, several times slower than KVM"}
	switch {
	case !qemu.Found:
		tcg.Why, tcg.Install = QEMUBinary+" not found", qemu.Install
	case !qemu.Works:
		tcg.Why, tcg.Install = QEMUBinary+" does not run", qemu.Install
	}
	switch {
	case !fc.Found:
		fc.Why = "not found on PATH"
	case !fc.Works:
	case !kvm.Works:
		fc.Works = false
		fc.Why = "needs KVM, which does not work here"
	}
	if !qemu.Found {
		qemu.Why = "not found on PATH"
	}
	r.Checks[0] = qemu
	r.Checks = append(r.Checks, fc, jailer, kvm, tcg)

	tun := Check{Name: "tap", Kind: "host", Install: "ip tuntap add dev tap0 mode tap user $USER && ip link set tap0 up (iproute2; needs root once)"}
	if t, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0); err == nil {
		t.Close()
		tun.Found, tun.Works = true, true
		tun.Why = "/dev/net/tun opens: --net tap:IFACE can attach to a tap device (Firecracker's only network)"
	} else {
		tun.Found = !errors.Is(err, os.ErrNotExist)
		tun.Why = fmt.Sprintf("/dev/net/tun: %v", err)
		tun.Install = "load the tun module (modprobe tun) or give the container /dev/net/tun"
	}
	cg := Check{Name: "cgroup2", Kind: "host"}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		cg.Found, cg.Works = true, true
		cg.Why = "unified hierarchy at /sys/fs/cgroup (the jailer's --cgroup-version 2)"
	} else {
		cg.Why = "no /sys/fs/cgroup/cgroup.controllers: cgroup v2 is not mounted; the jailer cannot confine firecracker"
		cg.Install = "boot with systemd.unified_cgroup_hierarchy=1, or mount -t cgroup2 none /sys/fs/cgroup"
	}
	erofs := toolCheck(ctx, "mkfs.erofs", "tool", nil, "apt-get install erofs-utils")
	if erofs.Found {
		erofs.Version = debVersion(ctx, "erofs-utils")
		erofs.Why = "pack builds the root filesystem with it"
	}
	gotool := toolCheck(ctx, "go", "tool", []string{"version"}, "apt-get install golang-go (or a Go release from go.dev)")
	if gotool.Found {
		gotool.Why = "init builds the guest's ukernel-init with it"
	}
	r.Checks = append(r.Checks, tun, cg, erofs, gotool)

	r.Net = o.NetMode
	if r.Net == "" {
		r.Net = "user"
	}
	r.Backend, r.Accel = runChoice(fc.Found, fcRuns, kvm, r.Net)
	return r, nil
}

// runChoice is what `run --backend auto --accel auto` picks from the doctor's facts: the backend
// by run's own rule (autoBackend), KVM already probed.
func runChoice(fcFound, fcRuns bool, kvm Check, netMode string) (BackendChoice, AccelChoice) {
	accel := AccelChoice{Accel: AccelKVM}
	if !kvm.Works {
		accel = AccelChoice{Accel: AccelTCG, Reason: "kvm unusable: " + kvm.Why}
	}
	if fcFound && !fcRuns {
		return BackendChoice{Backend: BackendQEMU, Reason: "firecracker does not run"}, accel
	}
	b, _ := autoBackend(fcFound, netMode, func() (ProbeResult, error) {
		return ProbeResult{Usable: kvm.Works, Reason: kvm.Why}, nil
	})
	return b, accel
}

// toolCheck looks name up on PATH and asks it for its version (first line of output).
func toolCheck(ctx context.Context, name, kind string, versionArgs []string, install string) Check {
	c := Check{Name: name, Kind: kind}
	p, err := exec.LookPath(name)
	if err != nil {
		c.Install = install
		return c
	}
	c.Found, c.Works = true, true
	if versionArgs != nil {
		vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		out, err := exec.CommandContext(vctx, p, versionArgs...).CombinedOutput()
		if err != nil {
			c.Works = false
			c.Why = fmt.Sprintf("%s %s failed: %v", p, strings.Join(versionArgs, " "), err)
			c.Install = install
		}
		c.Version, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	}
	return c
}

func debVersion(ctx context.Context, pkg string) string {
	vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(vctx, "dpkg-query", "-W", "-f=${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// newestBootKernel returns the most recently extracted image kernel in the boot cache.
func newestBootKernel(bootDir string) string {
	matches, _ := filepath.Glob(filepath.Join(bootDir, "*", "vmlinuz"))
	var best string
	var bestTime time.Time
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && fi.ModTime().After(bestTime) {
			best, bestTime = m, fi.ModTime()
		}
	}
	return best
}
