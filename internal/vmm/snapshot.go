package vmm

import (
	"context"
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
	// Save pauses the guest of h, which runs with a shared Spec.Memory, and writes its device
	// state to statePath; RAM stays in the memory file. The guest stays paused: the caller
	// quits the VMM once it has copied what else the snapshot keeps (the data volume).
	Save(ctx context.Context, h Handle, statePath string) error
	// Resume runs a guest that Start left paused with its state loaded (Spec.Incoming).
	Resume(ctx context.Context, h Handle) error
}
