package template

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/snapshot"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/internal/templatebuild"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

// ListOptions are the inputs of `template list`.
type ListOptions struct{ Common }

// Listed is one template with its current revision, as list and info print it.
type Listed struct {
	template.Spec
	Current   *template.Revision `json:"current"` // null: never built
	Revisions int                `json:"revisions"`
	Snapshot  string             `json:"snapshot"` // none or present (of the current revision)
	// SnapshotMeta is the current revision's snapshot.json, when it has one.
	SnapshotMeta *snapshot.Meta `json:"snapshot_meta,omitempty"`
	// SourceProblem says why the source cannot be built (moved, not a project); "" when it can
	// or the template has none.
	SourceProblem string `json:"source_problem,omitempty"`
}

// NewCmdList returns `template list`.
func NewCmdList(f *cmdutil.Factory, runF func(*ListOptions) error) *cobra.Command {
	opts := &ListOptions{Common: newCommon(f)}
	return &cobra.Command{
		Use:         "list",
		Aliases:     []string{"ls"},
		Annotations: map[string]string{cmdutil.InterruptibleAnnotation: "true"},
		Short:       "List templates: role, current revision, when it was built, its size",
		Example:     "  ukernel template list\n  ukernel template list --json",
		Args:        cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.JSON
			if runF != nil {
				return runF(opts)
			}
			return listRun(opts)
		},
	}
}

func listed(s *template.Store, spec template.Spec) (Listed, error) {
	l := Listed{Spec: spec}
	revs, err := s.Revisions(spec.Name)
	if err != nil {
		return l, err
	}
	l.Revisions = len(revs)
	cur, err := s.Current(spec.Name)
	if err != nil {
		return l, err
	}
	for i := range revs {
		if revs[i].ID == cur {
			l.Current = &revs[i]
		}
	}
	l.Snapshot, l.SnapshotMeta = snapshotOf(s, spec.Name, cur)
	if spec.Source != "" {
		if err := templatebuild.CheckSource(&spec); err != nil {
			l.SourceProblem = err.Error()
		}
	}
	return l, nil
}

func listRun(opts *ListOptions) error {
	s, err := opts.Store()
	if err != nil {
		return err
	}
	specs, err := s.List()
	if err != nil {
		return err
	}
	rows := []Listed{}
	for _, spec := range specs {
		l, err := listed(s, spec)
		if err != nil {
			return err
		}
		rows = append(rows, l)
	}
	if opts.JSON {
		return cmdutil.PrintJSON(opts.IO, rows)
	}
	if len(rows) == 0 {
		opts.IO.Progress().Printf("No templates yet: create one with ukernel template create NAME")
		return nil
	}
	tw := tabwriter.NewWriter(opts.IO.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tREVISION\tBUILT\tSIZE")
	for _, r := range rows {
		rev, built, sz := "-", "-", "-"
		if r.Current != nil {
			rev, built, sz = r.Current.Short(), when(r.Current.BuiltAt), size(r.Current.Sizes.Total)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, roleName(r.Role), rev, built, sz)
	}
	return tw.Flush()
}

// InfoOptions are the inputs of `template info`.
type InfoOptions struct {
	Common
	Name string
}

// NewCmdInfo returns `template info`.
func NewCmdInfo(f *cmdutil.Factory, runF func(*InfoOptions) error) *cobra.Command {
	opts := &InfoOptions{Common: newCommon(f)}
	return &cobra.Command{
		Use:         "info NAME",
		Annotations: map[string]string{cmdutil.InterruptibleAnnotation: "true"},
		Short:       "Show a template: its settings, current revision with sizes, revisions, snapshot",
		Example:     "  ukernel template info api\n  ukernel template info api --json",
		Args:        nameArg("info"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name, opts.JSON = args[0], f.JSON
			if runF != nil {
				return runF(opts)
			}
			return infoRun(opts)
		},
	}
}

func infoRun(opts *InfoOptions) error {
	s, err := opts.Store()
	if err != nil {
		return err
	}
	spec, err := s.Get(opts.Name)
	if err != nil {
		return err
	}
	l, err := listed(s, *spec)
	if err != nil {
		return err
	}
	if opts.JSON {
		return cmdutil.PrintJSON(opts.IO, l)
	}
	w := opts.IO.Out
	line := func(k, format string, a ...any) {
		fmt.Fprintf(w, "%-10s "+format+"\n", append([]any{k + ":"}, a...)...)
	}
	line("Name", "%s", spec.Name)
	src := spec.Source
	if src == "" {
		src = "none (pulled: it runs, it is not built here)"
	}
	if l.SourceProblem != "" {
		src += " (" + l.SourceProblem + ")"
	}
	line("Source", "%s", src)
	line("Role", "%s", roleName(spec.Role))
	line("Release", "%v", spec.Release)
	line("Run", "%s", runSettings(*spec))
	line("Created", "%s", when(spec.Created))
	line("Updated", "%s", when(spec.Updated))
	if l.Current == nil {
		line("Revision", "none yet: ukernel template build %s", spec.Name)
	} else {
		r := l.Current
		line("Revision", "%s (built %s by ukernel %s)", r.ID, when(r.BuiltAt), r.Ukernel)
		line("Sizes", "kernel %s, initramfs %s, root %s, total %s", size(r.Sizes.Kernel), size(r.Sizes.Initramfs), size(r.Sizes.Root), size(r.Sizes.Total))
		line("Closure", "%d packages, %s", r.Sizes.Packages, size(r.Sizes.Closure))
	}
	line("Revisions", "%d", l.Revisions)
	if m := l.SnapshotMeta; m != nil {
		line("Snapshot", "taken %s, ready (%s) %.1fs after the VMM's start; %s %s, %s, %d vCPU, %d MiB; files %s",
			when(m.Created), m.Ready, float64(m.ReadyMS)/1000, m.Fingerprint.Backend, m.Fingerprint.Accel, m.Fingerprint.VMM,
			m.Fingerprint.VCPU, m.Fingerprint.MemoryMB, size(m.Size()))

	} else {
		line("Snapshot", "none (ukernel template build %s --snapshot takes one)", spec.Name)
	}
	return nil
}

// RevisionsOptions are the inputs of `template revisions`.
type RevisionsOptions struct {
	Common
	Name string
}

// RevisionRow is one revision as `template revisions` lists it.
type RevisionRow struct {
	template.Revision
	Current bool `json:"current"`
}

// NewCmdRevisions returns `template revisions`.
func NewCmdRevisions(f *cmdutil.Factory, runF func(*RevisionsOptions) error) *cobra.Command {
	opts := &RevisionsOptions{Common: newCommon(f)}
	return &cobra.Command{
		Use:         "revisions NAME",
		Annotations: map[string]string{cmdutil.InterruptibleAnnotation: "true"},
		Short:       "List a template's revisions, newest first",
		Example:     "  ukernel template revisions api",
		Args:        nameArg("revisions"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name, opts.JSON = args[0], f.JSON
			if runF != nil {
				return runF(opts)
			}
			return revisionsRun(opts)
		},
	}
}

func revisionsRun(opts *RevisionsOptions) error {
	s, err := opts.Store()
	if err != nil {
		return err
	}
	revs, err := s.Revisions(opts.Name)
	if err != nil {
		return err
	}
	cur, err := s.Current(opts.Name)
	if err != nil {
		return err
	}
	rows := []RevisionRow{}
	for _, r := range revs {
		rows = append(rows, RevisionRow{Revision: r, Current: r.ID == cur})
	}
	if opts.JSON {
		return cmdutil.PrintJSON(opts.IO, rows)
	}
	tw := tabwriter.NewWriter(opts.IO.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REVISION\tBUILT\tSIZE\tROLE\tCURRENT")
	for _, r := range rows {
		mark := ""
		if r.Current {
			mark = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Short(), when(r.BuiltAt), size(r.Sizes.Total), roleName(r.Role), mark)
	}
	return tw.Flush()
}
