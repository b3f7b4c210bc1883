package firecracker

import (
	"context"
	"encoding/json"
	"errors"
	"net"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/vmm"
)

// Snapshots through Firecracker's API: Save pauses the guest and writes its state and memory
// (PUT /snapshot/create, a full snapshot); a restore loads them into a Firecracker that has
// only its logger and metrics (PUT /snapshot/load: the memory file mapped privately, the run's
// tap device and vsock socket in place of the saved ones), then Resume. Firecracker reopens the
// drives at the paths recorded in the snapshot, so a restore needs its drives at the saved
// paths (the jailer's chroot per run would give each its own copy there): until that is done,
// Capabilities says no snapshots, and launch never restores under Firecracker.

var _ vmm.Snapshotter = (*Backend)(nil)

// Save pauses the guest and writes a full snapshot: its state to statePath, its memory to
// memoryPath (host paths; the jailer's chroot is not handled yet).
func (b *Backend) Save(ctx context.Context, h vmm.Handle, statePath, memoryPath string) error {
	if b.useJailer() {
		return errors.New("firecracker snapshots under the jailer are not supported yet")
	}
	if err := b.Pause(ctx, h); err != nil {
		return err
	}
	return b.CreateSnapshot(ctx, h, statePath, memoryPath)
}

// RestoreSequence loads a snapshot into a Firecracker that was only given its logger and
// metrics, for the run of cfg: its memory file mapped privately (the File backend), cfg's tap
// device and vsock socket in place of the snapshot's. The guest stays paused (Resume runs it).
func RestoreSequence(ctx context.Context, c *Client, cfg Config, statePath, memoryPath string) error {
	if err := c.Put(ctx, "/logger", cfg.Logger); err != nil {
		return err
	}
	if err := c.Put(ctx, "/metrics", cfg.Metrics); err != nil {
		return err
	}
	load := SnapshotLoad{SnapshotPath: statePath, MemBackend: &MemoryBackend{BackendType: "File", BackendPath: memoryPath}}
	if cfg.Net != nil {
		load.NetworkOverrides = []NetworkOverride{{IfaceID: cfg.Net.IfaceID, HostDevName: cfg.Net.HostDevName}}
	}
	if cfg.Vsock != nil {
		load.VsockOverride = &VsockOverride{UDSPath: cfg.Vsock.UDSPath}
	}
	return c.Put(ctx, "/snapshot/load", load)
}

// DialControl connects to the guest's control port over vsock.
func (b *Backend) DialControl(ctx context.Context, h vmm.Handle) (net.Conn, error) {
	return DialVsock(ctx, h.ControlSocket, abi.ControlVsockPort)
}

// Layout is the API configuration of spec without paths: machine, drives (ids and modes),
// network interface and vsock.
func (b *Backend) Layout(spec vmm.Spec) (string, error) {
	cfg := ConfigFor(spec, "KERNEL", func(string) string { return "PATH" })
	cfg.BootSource.BootArgs = ""
	if cfg.Net != nil {
		cfg.Net.HostDevName = "IFACE"
	}
	data, err := json.Marshal(struct {
		Machine MachineConfig
		Drives  []Drive
		Net     *NetworkInterface
		Vsock   *Vsock
	}{cfg.Machine, cfg.Drives, cfg.Net, cfg.Vsock})
	return string(data), err
}
