package vmm

// Accelerators.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// QEMUBinary is the QEMU system emulator the QEMU backend and the KVM probe run.
const QEMUBinary = "qemu-system-x86_64"

// AccelChoice is the accelerator picked for a run and why.
type AccelChoice struct {
	Accel  string
	Reason string // why KVM is not used, or why the choice was made
}

// String renders the choice the way `run` prints it: "tcg (kvm unusable: ...)".
func (c AccelChoice) String() string { return withReason(c.Accel, c.Reason) }

// Avail says whether something a run needs works on this host, and why not.
type Avail struct {
	OK  bool
	Why string
}

// Choice is the backend and accelerator picked for a run, and why (package backends makes it).
// `doctor --json` reports it as choice; ps shows the same backend and accel for a guest.
type Choice struct {
	Backend       BackendName `json:"backend"`
	BackendReason string      `json:"backend_reason,omitempty"`
	Accel         string      `json:"accel"`
	AccelReason   string      `json:"accel_reason,omitempty"`
}

// BackendString renders the backend the way `run` prints it: "qemu (firecracker not found on PATH)".
func (c Choice) BackendString() string { return withReason(string(c.Backend), c.BackendReason) }

// AccelChoice is the accelerator part of the choice.
func (c Choice) AccelChoice() AccelChoice { return AccelChoice{Accel: c.Accel, Reason: c.AccelReason} }

func withReason(s, reason string) string {
	if reason == "" {
		return s
	}
	return s + " (" + reason + ")"
}
