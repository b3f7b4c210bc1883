// Package template implements `ukernel template`: named, versioned images kept in the template
// store (internal/template) and built from a project's role (internal/templatebuild).
package template

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/internal/snapshot"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Common is what every template command gets from the factory.
type Common struct {
	IO         *iostreams.IOStreams
	JSON       bool
	Store      func() (*template.Store, error)
	ProjectDir func() (string, error)
	// Running lists the live guests of a template (delete and edit refuse, or stop, them).
	Running func(name string) ([]*runstate.State, error)
	// Forget removes the records of a template's finished guests (ps -a), whose logs go with
	// the template when it is deleted.
	Forget func(name string) error
}

func newCommon(f *cmdutil.Factory) Common {
	return Common{IO: f.IO, Store: template.Open, ProjectDir: f.ProjectDir, Running: running, Forget: forget}
}

// NewCmdTemplate returns the template command group.
func NewCmdTemplate(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "template <command>",
		Short: "Named, versioned images: create, build, run and roll back templates",
		Long: `A template is a name for an image built from a project's role, with run settings. Each
build is a revision named by the image's SHA-256; building again with unchanged inputs does
nothing, and templates that differ only in run settings share one revision and its bytes.
Templates live in $XDG_DATA_HOME/ukernel/templates (override: UKERNEL_TEMPLATES). Run one
from anywhere with ukernel run --template NAME[@REV].`,
		Example: `  ukernel template create api --role api --vcpu 2
  ukernel template build api
  ukernel run --template api
  ukernel template rollback api`,
	}
	cmd.AddCommand(NewCmdCreate(f, nil))
	cmd.AddCommand(NewCmdList(f, nil))
	cmd.AddCommand(NewCmdInfo(f, nil))
	cmd.AddCommand(NewCmdRevisions(f, nil))
	cmd.AddCommand(NewCmdBuild(f, nil))
	cmd.AddCommand(NewCmdEdit(f, nil))
	cmd.AddCommand(NewCmdDelete(f, nil))
	cmd.AddCommand(NewCmdRollback(f, nil))
	cmd.AddCommand(NewCmdVerify(f, nil))
	cmd.AddCommand(NewCmdInit(f, nil))
	return cmd
}

// running lists the live guests started from template name.
func running(name string) ([]*runstate.State, error) {
	rs, err := runstate.Open()
	if err != nil {
		return nil, err
	}
	all, err := rs.List()
	if err != nil {
		return nil, err
	}
	var out []*runstate.State
	for _, st := range all {
		if st.Template == name && !st.Exited && st.Live() {
			out = append(out, st)
		}
	}
	return out, nil
}

// forget removes the records of template name's guests that are not running.
func forget(name string) error {
	rs, err := runstate.Open()
	if err != nil {
		return err
	}
	all, err := rs.List()
	if err != nil {
		return err
	}
	for _, st := range all {
		if st.Template == name && (st.Exited || !st.Live()) {
			if err := rs.Remove(st.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// runningError says a template has guests running.
func runningError(name, what string, guests []*runstate.State) error {
	var names []string
	for _, g := range guests {
		names = append(names, g.Name)
	}
	return fmt.Errorf("template %s has a running guest (%s): %s; stop it first (ukernel stop %s)", name, strings.Join(names, ", "), what, strings.Join(names, " "))
}

func nameArg(cmd string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != 1 {
			return cmdutil.Usagef("template %s takes one template name, got %d arguments", cmd, len(args))
		}
		return nil
	}
}

// imageDefault is how a run setting left to the image (0 or "") is shown.
const imageDefault = "image's"

// setting shows one run setting, imageDefault for one left to the image.
func setting[T int | string](v T) string {
	var zero T
	if v == zero {
		return imageDefault
	}
	return fmt.Sprint(v)
}

// runSettings describes a spec's run settings, "image's" for those left to the image.
func runSettings(s template.Spec) string {
	out := fmt.Sprintf("vcpu %s, memory_mb %s, data_mb %s, net %s", setting(s.VCPU), setting(s.MemoryMB), setting(s.DataMB), setting(s.Net))
	if len(s.Publish) > 0 {
		out += ", publish " + strings.Join(s.Publish, " ")
	}
	return out
}

func roleName(r string) string {
	if r == "" {
		return "-"
	}
	return r
}

func size(n int64) string { return humanize.IBytes(uint64(n)) }

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// snapshotOf returns the revision's snapshot ("present" with its record) or "none".
func snapshotOf(s *template.Store, name, id string) (string, *snapshot.Meta) {
	if id == "" {
		return "none", nil
	}
	m, err := snapshot.Read(filepath.Join(s.RevisionDir(name, id), template.SnapshotDir))
	if err != nil {
		return "none", nil
	}
	return "present", m
}
