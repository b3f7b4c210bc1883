package templatebuild

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/progress"
	"github.com/ukernel-dev/ukernel/internal/snapshot"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/internal/vmm/launch"
)

// SnapshotOptions are how a template's revision is booted for its snapshot.
type SnapshotOptions struct {
	Accel        string        // as run's --accel; a run restores only under the same accelerator
	ReadyTimeout time.Duration // 0: launch.SnapshotReadyTimeout
	Progress     *progress.Writer
	Logger       *slog.Logger
}

// Snapshot boots the template's revision of r with the template's run settings (no -e values,
// no secrets, no published port: the layout a run restores into is the same without them),
// waits until it is ready, saves it as the revision's snapshot and records it in r. It runs in
// AfterCommit, under the template's lock.
func Snapshot(ctx context.Context, s *template.Store, r *Result, o SnapshotOptions) error {
	spec, err := s.Get(r.Name)
	if err != nil {
		return err
	}
	var netw abi.Net
	if spec.Net != "" {
		if netw, err = abi.ParseNet(spec.Net); err != nil {
			return fmt.Errorf("template %s: net: %w", spec.Name, err)
		}
	} else if len(spec.Publish) > 0 {
		netw = abi.Net{Mode: abi.NetUser} // as a run that publishes its ports gets
	}
	if o.Accel == "" {
		o.Accel = "auto"
	}
	lo := launch.Options{
		ProjectDir: s.TemplateDir(spec.Name), Image: s.ImagePath(spec.Name, r.Revision.ID),
		Name: spec.Name + "-snapshot", VCPU: spec.VCPU, MemoryMB: spec.MemoryMB, DataMB: spec.DataMB, Net: netw,
		Accel: o.Accel, Backend: "qemu", Template: spec.Name, Revision: r.Revision.ID, WantDigest: r.Revision.ID,
		Progress: o.Progress, Log: o.Logger,
	}
	if o.Progress != nil {
		o.Progress.Printf("Snapshot of %s revision %s: booting it until ready", spec.Name, r.Revision.Short())
	}
	dir := filepath.Join(s.RevisionDir(spec.Name, r.Revision.ID), template.SnapshotDir)
	m, err := launch.TakeSnapshot(ctx, lo, dir, o.ReadyTimeout, func(st *snapshot.Staging) error {
		return s.PublishSnapshot(ctx, spec.Name, st)
	})
	if err != nil {
		return fmt.Errorf("snapshot of %s: %w", spec.Name, err)
	}
	r.Snapshot = m
	return nil
}
