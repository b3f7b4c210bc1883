// Package hostcheck is `ukernel doctor`'s report: what this host has for each backend,
// accelerator and tool, why not, what to install, and the choice run would make here.
package hostcheck

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/hosttool"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/backends"
	"github.com/ukernel-dev/ukernel/internal/vmm/kvmprobe"
)

// Check is one thing `ukernel doctor` looks at on this host.
type Check = hosttool.Check

// Report is what `ukernel doctor` prints: each check, and what `run` would use here.
type Report struct {
	Checks []Check    `json:"checks"`
	Choice vmm.Choice `json:"choice"`
	// ChoiceError is why a run with these settings would fail here (an explicit --backend that
	// cannot run); Choice is then empty.
	ChoiceError string `json:"choice_error,omitempty"`
	Net         string `json:"net"` // the network the choice is for
}

// Options say where the doctor finds a kernel for the KVM probe, and which run to report the
// backend choice for.
type Options struct {
	CacheDir string // cache.DefaultDir when empty; boot kernels and probe results live here
	Kernel   string // a bzImage for the KVM probe; the newest cached boot kernel when empty
	Net      abi.Net
	Backend  string // --backend and --accel of the run: auto when empty
	Accel    string
}

// Run inspects this host for every backend, accelerator and tool ukernel needs, and makes the
// backend choice of a run with o's settings from what it found (backends.Choose, as run does).
func Run(ctx context.Context, o Options) (Report, error) {
	if o.CacheDir == "" {
		dir, err := cache.DefaultDir()
		if err != nil {
			return Report{}, err
		}
		o.CacheDir = dir
	}
	if o.Net.Mode == "" {
		o.Net.Mode = abi.NetUser // as for run
	}
	req, err := backends.ParseRequest(o.Backend, o.Accel, o.Net.Mode)
	if err != nil {
		return Report{}, err
	}
	r := Report{Net: o.Net.String()}
	// Each backend's VMM, in the registry's order; what run's choice reads: a binary found and
	// answering --version, KVM as probed.
	tools := map[string]Check{}
	for _, e := range backends.All() {
		tools[e.Binary] = hosttool.Find(ctx, e.Binary, "backend", []string{"--version"}, e.Install)
	}
	qemu := tools[vmm.QEMUBinary] // the KVM probe boots with it, and TCG is QEMU's
	kvmFact := vmm.Avail{Why: kvmprobe.Device()}
	var helpers []Check
	for _, e := range backends.All() {
		for _, h := range e.Helpers {
			c := hosttool.Find(ctx, h.Binary, "tool", []string{"--version"}, h.Install)
			c.Why = h.Missing
			if c.Found {
				c.Why = h.Found
			}
			helpers = append(helpers, c)
		}
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
			kernel = newestBootKernel(cache.Boot.In(o.CacheDir))
		}
		if kernel == "" {
			kvm.Why = "/dev/kvm opens, but no kernel is cached yet to probe it with (run `ukernel run` once)"
			kvmFact.Why = kvm.Why
			break
		}
		if !qemu.Works {
			kvm.Why = "/dev/kvm opens, but the KVM probe needs a working " + vmm.QEMUBinary
			kvmFact.Why = kvm.Why
			break
		}
		res, err := kvmprobe.Probe(ctx, kvmprobe.Spec{Kernel: kernel, CacheDir: cache.KVMProbe.In(o.CacheDir)})
		if err != nil {
			return Report{}, err
		}
		kvmFact = vmm.Avail{OK: res.Usable, Why: res.Reason}
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
		tcg.Why, tcg.Install = vmm.QEMUBinary+" not found", qemu.Install
	case !qemu.Works:
		tcg.Why, tcg.Install = vmm.QEMUBinary+" does not run", qemu.Install
	}
	for _, e := range backends.All() {
		c := tools[e.Binary]
		switch {
		case !c.Found:
			c.Why = "not found on PATH"
		case !c.Works:
		case !slices.Contains(e.Capabilities().Accelerators, vmm.AccelTCG) && !kvm.Works:
			c.Works = false
			c.Why = "needs KVM, which does not work here"
		}
		r.Checks = append(r.Checks, c)
	}
	r.Checks = append(r.Checks, helpers...)
	r.Checks = append(r.Checks, kvm, tcg)

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
	erofs := hosttool.Find(ctx, "mkfs.erofs", "tool", nil, "apt-get install erofs-utils")
	if erofs.Found {
		erofs.Version = debVersion(ctx, "erofs-utils")
		erofs.Why = "pack builds the root filesystem with it"
	}
	gotool := hosttool.Find(ctx, "go", "tool", []string{"version"}, "apt-get install golang-go (or a Go release from go.dev)")
	if gotool.Found {
		gotool.Why = "init builds the guest's ukernel-init with it"
	}
	r.Checks = append(r.Checks, tun, cg, erofs, gotool)

	c, err := backends.Choose(req, backends.Facts{
		Found: func(e backends.Entry) bool { return tools[e.Binary].Found },
		Runs: func(e backends.Entry) vmm.Avail {
			return vmm.Avail{OK: tools[e.Binary].Works, Why: tools[e.Binary].Why}
		},
		KVM: func() (vmm.Avail, error) { return kvmFact, nil },
	})
	if err != nil {
		r.ChoiceError = err.Error()
	}
	r.Choice = c
	return r, nil
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
