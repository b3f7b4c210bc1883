package vmm

import (
	"context"
	"fmt"
	"os/exec"
)

// Backend names and binaries known to the selection. The backends live in their own packages,
// which import this one.
const (
	BackendAuto        = "auto"
	BackendQEMU        = "qemu"
	BackendFirecracker = "firecracker"
	FirecrackerBinary  = "firecracker"
)

// FirecrackerInstall says how to get Firecracker: Debian has no package of it.
const FirecrackerInstall = "install a Firecracker release binary (firecracker-vX.Y.Z-x86_64) from github.com/firecracker-microvm/firecracker/releases as firecracker on PATH"

// BackendChoice is the backend picked for a run and why.
type BackendChoice struct {
	Backend string
	Reason  string
}

// String renders the choice the way `run` prints it: "qemu (firecracker not found on PATH)".
func (c BackendChoice) String() string {
	if c.Reason == "" {
		return c.Backend
	}
	return c.Backend + " (" + c.Reason + ")"
}

// ChooseBackend picks the VMM for want (auto, firecracker or qemu) and a guest network mode
// (user, tap, none). Firecracker is preferred when its binary is on PATH, KVM works and the
// network is one it has (tap or none); otherwise QEMU. An explicit firecracker that cannot run
// here is an error naming what is missing; the missing binary is found without any probe.
func ChooseBackend(ctx context.Context, want, netMode string, probe ProbeSpec) (BackendChoice, error) {
	switch want {
	case BackendQEMU:
		return BackendChoice{Backend: BackendQEMU, Reason: "--backend qemu"}, nil
	case BackendFirecracker, BackendAuto, "":
	default:
		return BackendChoice{}, fmt.Errorf("backend %q unknown; expected auto, firecracker or qemu", want)
	}
	_, err := FindFirecracker()
	if err != nil && want == BackendFirecracker {
		return BackendChoice{}, err
	}
	choice, err := autoBackend(err == nil, netMode, func() (ProbeResult, error) { return ProbeKVM(ctx, probe) })
	if err != nil || want != BackendFirecracker {
		return choice, err
	}
	if choice.Backend != BackendFirecracker {
		return BackendChoice{}, fmt.Errorf("--backend firecracker: %s", choice.Reason)
	}
	return BackendChoice{Backend: BackendFirecracker, Reason: "--backend firecracker"}, nil
}

// autoBackend is the rule of `--backend auto`: Firecracker when its binary is on PATH, the network
// is one it has (tap or none) and KVM works; otherwise QEMU, with the reason. kvm is asked last,
// only when the answer depends on it: a probe may boot a guest.
func autoBackend(fcFound bool, netMode string, kvm func() (ProbeResult, error)) (BackendChoice, error) {
	qemu := func(reason string) (BackendChoice, error) {
		return BackendChoice{Backend: BackendQEMU, Reason: reason}, nil
	}
	if !fcFound {
		return qemu("firecracker not found on PATH")
	}
	if netMode == "user" {
		return qemu("firecracker has no user-mode networking; use --net tap:IFACE or --net none")
	}
	res, err := kvm()
	if err != nil {
		return BackendChoice{}, err
	}
	if !res.Usable {
		return qemu("firecracker needs KVM: " + res.Reason)
	}
	return BackendChoice{Backend: BackendFirecracker, Reason: "found on PATH, KVM works"}, nil
}

// FindFirecracker returns the firecracker binary on PATH, or an error naming what is missing and
// how to install it. It is cheap: `run --backend firecracker` calls it before building anything.
func FindFirecracker() (string, error) {
	p, err := exec.LookPath(FirecrackerBinary)
	if err != nil {
		return "", fmt.Errorf("--backend firecracker: firecracker not found on PATH: %s", FirecrackerInstall)
	}
	return p, nil
}
