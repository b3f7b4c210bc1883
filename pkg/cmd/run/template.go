package run

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/vmm/backends"

	"github.com/ukernel-dev/ukernel/internal/snapshot"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/internal/vmm/launch"
)

// templateRun is a `run --template NAME[@REV]`: the revision to boot and the template's run
// settings, which the run's own flags override.
type templateRun struct {
	store *template.Store
	res   *template.Resolved
	dir   string // the template's directory: the run's logs and data volume live there
	// cold and restore are --cold and --restore.
	cold, restore bool
	// unpin lets a build prune again: called once the guest's record names the revision.
	unpin func()
}

// resolveTemplate finds the revision to boot and pins the template's revisions until unpin.
func resolveTemplate(ctx context.Context, o *Options) (*templateRun, error) {
	s, err := template.Open()
	if err != nil {
		return nil, err
	}
	name, _, err := template.ParseRef(o.Template)
	if err != nil {
		return nil, err
	}
	unpin, err := s.Pin(ctx, name)
	if err != nil {
		return nil, err
	}
	res, err := s.Resolve(o.Template)
	if err != nil {
		unpin()
		return nil, err
	}
	if o.Net == "" && res.Spec.Net != "" {
		// The template's network, as if given with --net: the backend request follows it.
		if o.net, err = abi.ParseNet(res.Spec.Net); err != nil {
			unpin()
			return nil, fmt.Errorf("template %s: net: %w", res.Spec.Name, err)
		}
		if o.req, err = backends.ParseRequest(o.Backend, o.Accel, o.net.Mode); err != nil {
			unpin()
			return nil, err
		}
	}
	return &templateRun{store: s, res: res, dir: s.TemplateDir(res.Spec.Name), cold: o.Cold, restore: o.Restore, unpin: unpin}, nil
}

// release lets builds prune the template again (nil: not a template's run).
func (t *templateRun) release() {
	if t != nil && t.unpin != nil {
		t.unpin()
		t.unpin = nil
	}
}

// apply sets the template's run settings where the flags left the image's default.
func (t *templateRun) apply(o *launch.Options) {
	spec := t.res.Spec
	if o.Name == "" {
		o.Name = spec.Name
	}
	if o.VCPU == 0 {
		o.VCPU = spec.VCPU
	}
	if o.MemoryMB == 0 {
		o.MemoryMB = spec.MemoryMB
	}
	if len(o.Publish) == 0 {
		o.Publish = spec.Publish
	}
	if o.DataMB == 0 {
		o.DataMB = spec.DataMB
	}
	o.Template, o.Revision, o.Templates = spec.Name, t.res.Revision.ID, t.store.Dir()
	o.WantDigest = t.res.Revision.ID
	// The revision's snapshot, if it has one (--restore: it must): launch decides whether it
	// fits this run and says why when it does not.
	dir := filepath.Join(t.res.Dir, template.SnapshotDir)
	switch {
	case t.cold:
		o.Restore = launch.RestoreNever
	case t.restore:
		o.Snapshot, o.Restore = dir, launch.RestoreRequired
	default:
		if _, err := os.Stat(filepath.Join(dir, snapshot.MetaFile)); err == nil {
			o.Snapshot, o.Restore = dir, launch.RestoreAuto
		}
	}
}

// damaged tells a stored image that failed its digest or checks, with how to rebuild it.
func (t *templateRun) damaged(err error) error {
	var de *launch.DigestError
	if t != nil && errors.As(err, &de) {
		return &template.DamagedError{Name: t.res.Spec.Name, ID: t.res.Revision.ID, Err: de.Err}
	}
	return err
}
