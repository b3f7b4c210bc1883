package vmm

import (
	"context"
	"net"
)

// MemoryFile backs a guest's RAM with a file, for snapshots. Shared maps it shared: what the
// guest writes reaches the file, so a saved guest's RAM is the file itself (the device state
// alone is written at the save). Private maps it copy-on-write: a guest restored from the file
// never changes it, and any number may restore from it at once.
type MemoryFile struct {
	Path   string
	Shared bool
}

// Snapshotter is a backend that can save a running guest and start one from what it saved
// (Capabilities().Snapshots).
type Snapshotter interface {
	// Save pauses the guest of h and writes its device state to statePath and its RAM to
	// memoryPath; a guest whose RAM is a shared Spec.Memory at memoryPath already has it there
	// (QEMU), and only the device state is written. The guest stays paused: the caller quits the
	// VMM once it has copied what else the snapshot keeps (the data volume).
	Save(ctx context.Context, h Handle, statePath, memoryPath string) error
	// Resume runs a guest that Start left paused with its state loaded (Spec.Incoming).
	Resume(ctx context.Context, h Handle) error
	// DialControl connects to the guest's control channel.
	DialControl(ctx context.Context, h Handle) (net.Conn, error)
	// Layout describes the machine and devices spec gives a guest, without what may differ
	// between a save and its restores (paths, published ports, the kernel command line): a
	// guest resumes only into the same layout.
	Layout(spec Spec) (string, error)
	// BootCmdline is the kernel command line the guest of spec boots with (the backend's own
	// arguments included), without what is measured on the host: a guest resumes only with
	// the settings its kernel booted with, which a restore cannot change (tsc=reliable under
	// TCG keeps its clocksource the TSC; a guest booted without it stays on jiffies).
	BootCmdline(spec Spec) string
}
