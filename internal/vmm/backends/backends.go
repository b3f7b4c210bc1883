// Package backends is the registry of VMM backends and the one rule that picks a run's backend
// and accelerator: Choose, from what the run asks for (Request) and what the host offers
// (Facts). `run` calls it with live probes (Live), `doctor` with the facts it checked, so both
// always say the same. A new backend is one more entry in registry.
package backends

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"sync"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/hosttool"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/firecracker"
	"github.com/ukernel-dev/ukernel/internal/vmm/kvmprobe"
	"github.com/ukernel-dev/ukernel/internal/vmm/qemu"
)

// Auto is --backend's and --accel's default: Choose decides.
const Auto = "auto"

// Entry is one backend.
type Entry struct {
	Name    vmm.BackendName
	Title   string // how messages name its VMM: "QEMU started (pid N)"
	Binary  string // its VMM on PATH
	Install string // how to get Binary
	// CheckNet verifies on the host what a network needs from this backend, before it starts
	// (a tap device exists, a published port is free).
	CheckNet func(vmm.Net) error
	New      func(*slog.Logger) vmm.Backend
	// Helpers are optional programs it uses when present, which doctor reports.
	Helpers []Helper
}

// Helper is an optional program a backend uses, as doctor reports it.
type Helper struct {
	Binary  string
	Install string // how to get it
	Found   string // what it is used for
	Missing string // what happens without it
}

// Capabilities is what the backend can do (its vmm.Backend's answer).
func (e Entry) Capabilities() vmm.Capabilities { return e.New(nil).Capabilities() }

// registry lists the backends in the order auto prefers them. The last one runs anywhere (TCG,
// every network): auto falls back to it without looking for its binary; starting it says what
// is missing.
var registry = []Entry{
	{Name: firecracker.Name, Title: "Firecracker", Binary: firecracker.Binary, Install: firecracker.Install,
		CheckNet: firecracker.CheckNet, New: func(l *slog.Logger) vmm.Backend { return firecracker.New(l) },
		Helpers: []Helper{{Binary: firecracker.JailerBinary, Install: "the jailer ships in the same Firecracker release archive",
			Found:   "used when ukernel runs as root: chroot, uid/gid, cgroup, network namespace",
			Missing: "optional: without it, firecracker runs unconfined"}}},
	{Name: qemu.Name, Title: "QEMU", Binary: vmm.QEMUBinary, Install: qemu.Install,
		CheckNet: qemu.CheckNet, New: func(l *slog.Logger) vmm.Backend { return qemu.New(l) }},
}

// All returns the backends, auto's preferred first.
func All() []Entry { return slices.Clone(registry) }

// Get returns the backend called name. A guest recorded without a backend name ran under QEMU
// (state written before Firecracker existed).
func Get(name vmm.BackendName) (Entry, error) {
	if name == "" {
		name = qemu.Name
	}
	for _, e := range registry {
		if e.Name == name {
			return e, nil
		}
	}
	return Entry{}, fmt.Errorf("backend %q unknown; expected %s", name, orList(names()))
}

// Title is how messages name a backend's VMM ("QEMU"); its name when unknown.
func Title(name vmm.BackendName) string {
	if e, err := Get(name); err == nil {
		return e.Title
	}
	return string(name)
}

func names() []string {
	var n []string
	for _, e := range registry {
		n = append(n, string(e.Name))
	}
	slices.Sort(n)
	return n
}

func orList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// Request is what a run asks for.
type Request struct {
	Backend vmm.BackendName // Auto (or empty) or a backend's name
	Accel   string          // Auto (or empty), vmm.AccelKVM or vmm.AccelTCG
	Net     abi.NetMode     // empty when not known yet (Precheck)
}

// ParseRequest checks --backend and --accel.
func ParseRequest(backend, accel string, net abi.NetMode) (Request, error) {
	r := Request{Backend: vmm.BackendName(backend), Accel: accel, Net: net}
	if backend != Auto && backend != "" {
		if _, err := Get(r.Backend); err != nil {
			return Request{}, fmt.Errorf("--backend %q: expected %s", backend, orList(append([]string{Auto}, names()...)))
		}
	}
	switch accel {
	case Auto, "", vmm.AccelKVM, vmm.AccelTCG:
	default:
		return Request{}, fmt.Errorf("--accel %q: expected %s, %s or %s", accel, Auto, vmm.AccelKVM, vmm.AccelTCG)
	}
	return r, nil
}

func (r Request) auto() bool { return r.Backend == "" || r.Backend == Auto }

func (r Request) autoAccel() bool { return r.Accel == "" || r.Accel == Auto }

// Facts are what the host offers. Choose asks each only when its answer depends on it: a KVM
// probe may boot a guest, and a backend's binary is run to see that it works.
type Facts struct {
	Found func(Entry) bool          // its binary is on PATH
	Runs  func(Entry) vmm.Avail     // its binary runs (answers --version)
	KVM   func() (vmm.Avail, error) // a Linux guest runs under KVM here
}

// Choose picks the backend and accelerator for r on a host with facts f. Auto takes the first
// backend, in the registry's order, that has r's accelerator and network, whose binary is found
// and runs, and that has KVM if it runs only under KVM; else the last, with the reason the first
// was passed over. An explicit backend that cannot run r here is an error saying what is missing.
// The accelerator: the backend's only one, r's, or with auto KVM when it works, else TCG.
func Choose(r Request, f Facts) (vmm.Choice, error) {
	f.KVM = sync.OnceValues(f.KVM) // the backend and the accelerator may both ask
	candidates := registry
	if !r.auto() {
		e, err := Get(r.Backend)
		if err != nil {
			return vmm.Choice{}, err
		}
		candidates = []Entry{e}
	}
	fallback := registry[len(registry)-1]
	var c vmm.Choice
	for _, e := range candidates {
		if e.Name == fallback.Name {
			c.Backend = e.Name
			if !r.auto() {
				c.BackendReason = "--backend " + string(e.Name)
			}
			break
		}
		why, refusal, err := cannotRun(e, r, f)
		if err != nil {
			return vmm.Choice{}, err
		}
		if why == "" {
			c.Backend = e.Name
			if r.auto() {
				c.BackendReason = "found on PATH"
				if !slices.Contains(e.Capabilities().Accelerators, vmm.AccelTCG) {
					c.BackendReason += ", KVM works" // cannotRun asked
				}
			} else {
				c.BackendReason = "--backend " + string(e.Name)
			}
			break
		}
		if !r.auto() {
			return vmm.Choice{}, errors.New(refusal)
		}
		if c.BackendReason == "" {
			c.BackendReason = why // the preferred backend's
		}
	}
	e, _ := Get(c.Backend)
	accels := e.Capabilities().Accelerators
	switch {
	case len(accels) == 1:
		c.Accel = accels[0] // cannotRun checked what it needs
	case !r.autoAccel():
		c.Accel, c.AccelReason = r.Accel, "--accel "+r.Accel
	default:
		kvm, err := f.KVM()
		if err != nil {
			return vmm.Choice{}, err
		}
		if kvm.OK {
			c.Accel = vmm.AccelKVM
		} else {
			c.Accel, c.AccelReason = vmm.AccelTCG, "kvm unusable: "+kvm.Why
		}
	}
	return c, nil
}

// cannotRun says why backend e cannot run r here ("" when it can), and the same as the error
// of an explicit --backend.
func cannotRun(e Entry, r Request, f Facts) (why, refusal string, err error) {
	caps := e.Capabilities()
	if !r.autoAccel() && !slices.Contains(caps.Accelerators, r.Accel) {
		return "--accel " + r.Accel, fmt.Sprintf("--backend %s runs only under %s, not --accel %s",
			e.Name, strings.ToUpper(orList(caps.Accelerators)), r.Accel), nil
	}
	refuse := func(why string) (string, string, error) {
		return why, fmt.Sprintf("--backend %s: %s", e.Name, why), nil
	}
	if !f.Found(e) {
		why, refusal, _ := refuse(e.Binary + " not found on PATH")
		return why, refusal + ": " + e.Install, nil
	}
	if r.Net != "" && !slices.Contains(caps.Nets, r.Net) {
		var use []string
		for _, n := range caps.Nets {
			use = append(use, netFlag(n))
		}
		return refuse(fmt.Sprintf("%s has no %s networking; use %s", e.Name, netName(r.Net), orList(use)))
	}
	if run := f.Runs(e); !run.OK {
		return refuse(fmt.Sprintf("%s does not run: %s", e.Binary, run.Why))
	}
	if !slices.Contains(caps.Accelerators, vmm.AccelTCG) {
		kvm, err := f.KVM()
		if err != nil {
			return "", "", err
		}
		if !kvm.OK {
			return refuse(fmt.Sprintf("%s needs KVM: %s", e.Name, kvm.Why))
		}
	}
	return "", "", nil
}

func netFlag(m abi.NetMode) string {
	if m == abi.NetTap {
		return "--net tap:IFACE"
	}
	return "--net " + string(m)
}

func netName(m abi.NetMode) string {
	if m == abi.NetUser {
		return "user-mode"
	}
	return string(m)
}

// Live are the facts of this host as run finds them: PATH, the binary's --version, and the KVM
// probe of probe's kernel (cached), each only when Choose asks.
func Live(ctx context.Context, probe kvmprobe.Spec) Facts {
	return Facts{
		Found: func(e Entry) bool {
			_, err := exec.LookPath(e.Binary)
			return err == nil
		},
		Runs: func(e Entry) vmm.Avail {
			c := hosttool.Find(ctx, e.Binary, "backend", []string{"--version"}, e.Install)
			return vmm.Avail{OK: c.Works, Why: c.Why}
		},
		KVM: func() (vmm.Avail, error) {
			res, err := kvmprobe.Probe(ctx, probe)
			return vmm.Avail{OK: res.Usable, Why: res.Reason}, err
		},
	}
}

// Precheck is what run can say before a build that may take minutes: an explicit backend whose
// binary is missing, or that cannot have r's accelerator or network. KVM is probed with the
// image's kernel later (Choose); here it is taken to work.
func Precheck(ctx context.Context, r Request) error {
	if r.auto() {
		return nil
	}
	f := Live(ctx, kvmprobe.Spec{})
	f.Runs = func(Entry) vmm.Avail { return vmm.Avail{OK: true} }
	f.KVM = func() (vmm.Avail, error) { return vmm.Avail{OK: true}, nil }
	_, err := Choose(r, f)
	return err
}
