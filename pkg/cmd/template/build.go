package template

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/internal/templatebuild"
	"github.com/ukernel-dev/ukernel/internal/vmm/launch"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

// BuildOptions are the inputs of `template build`.
type BuildOptions struct {
	Common
	Logger     *slog.Logger
	Names      []string
	Config     string // --config FILE
	Force      bool
	UpdateLock bool
	Keep       int
	Offline    bool
	// Snapshot takes the revision's snapshot once it is current (--snapshot), under Accel,
	// waiting at most ReadyTimeout for the workload.
	Snapshot     bool
	Accel        string
	ReadyTimeout time.Duration
	// AfterCommit is handed to every build (see templatebuild.Options).
	AfterCommit func(ctx context.Context, r *templatebuild.Result) error
}

// NewCmdBuild returns `template build`.
func NewCmdBuild(f *cmdutil.Factory, runF func(*BuildOptions) error) *cobra.Command {
	opts := &BuildOptions{Common: newCommon(f)}
	cmd := &cobra.Command{
		Use:   "build NAME... | build --config FILE [NAME]",
		Short: "Build a template's revision from its source, when its inputs changed",
		Long: `Build makes the template's current revision match its source: the input key (lock digest,
source digest, role, release, ukernel version) finds a revision already built, by this
template or another one, without building; otherwise the image is built and packed into the
store, becomes current, and the oldest revisions beyond --keep go (the current one stays).
--force builds even when the key matches; --update-lock re-resolves the environment to the
newest versions first (as env upgrade). A killed build leaves the current revision as it was.

--config FILE builds the variants a TOML file describes: name (the base name; NAME on the
command line overrides it), from (the project, relative to the file; default its directory),
defaults (release, vcpu, memory_mb, data_mb, net, publish) and [[variants]] tables (name,
role, and the same keys); an unnamed variant is NAME-ROLE. Each variant becomes a template
(created, or its settings updated) and each distinct image is built once: variants that
differ only in run settings share one revision.

--snapshot then boots the current revision with the template's run settings (no -e values or
secrets), waits until it is ready (every health check passes; with none, until its start
settles; at most --ready-timeout), and saves it as the revision's snapshot, replacing one taken
before: a run --template restores it in a fraction of a cold boot (docs/SNAPSHOTS.md). A
workload that never becomes ready fails the build with its health checks and console.`,
		Example: `  ukernel template build api
  ukernel template build api --force --keep 3
  ukernel template build --config variants.toml
  ukernel template build api --snapshot`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Names, opts.JSON, opts.Logger = args, f.JSON, f.Logger
			if opts.Config == "" && len(args) == 0 {
				return cmdutil.Usagef("template build takes template names, or --config FILE")
			}
			if opts.Config != "" && len(args) > 1 {
				return cmdutil.Usagef("template build --config takes at most one NAME (the base name), got %d", len(args))
			}
			if opts.Snapshot && opts.Accel != "auto" && opts.Accel != "kvm" && opts.Accel != "tcg" {
				return cmdutil.Usagef("--accel %q: expected auto, kvm or tcg", opts.Accel)
			}
			if opts.Keep < 1 {
				return cmdutil.Usagef("--keep %d: keep at least 1 revision (the current one)", opts.Keep)
			}
			for _, n := range args {
				if err := template.ValidateName(n); err != nil {
					return &cmdutil.UsageError{Err: err}
				}
			}
			if runF != nil {
				return runF(opts)
			}
			return buildRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Config, "config", "", "build the variants this TOML file describes (relative to the project directory, -C)")
	fl.BoolVar(&opts.Force, "force", false, "build even when a revision with the same inputs exists")
	fl.BoolVar(&opts.UpdateLock, "update-lock", false, "re-resolve the environment to the newest versions first")
	fl.IntVar(&opts.Keep, "keep", templatebuild.DefaultKeep, "revisions to keep, the current one included")
	fl.BoolVar(&opts.Offline, "offline", false, "build without network access")
	fl.BoolVar(&opts.Snapshot, "snapshot", false, "then boot the revision until ready and save it as its snapshot")
	fl.StringVar(&opts.Accel, "accel", "auto", "with --snapshot: the accelerator (runs restore only under the same one): auto, kvm or tcg")
	fl.DurationVar(&opts.ReadyTimeout, "ready-timeout", launch.SnapshotReadyTimeout, "with --snapshot: how long the workload may take to become ready")
	return cmd
}

func buildRun(ctx context.Context, opts *BuildOptions) error {
	s, err := opts.Store()
	if err != nil {
		return err
	}
	names := opts.Names
	if opts.Config != "" {
		base := ""
		if len(names) == 1 {
			base = names[0]
		}
		dir, err := opts.ProjectDir()
		if err != nil {
			return err
		}
		specs, err := templatebuild.ParseVariants(cmdutil.ProjectPath(dir, opts.Config), base)
		if err != nil {
			return err
		}
		created, err := templatebuild.Apply(ctx, s, specs, "ukernel template build --config")
		if err != nil {
			return err
		}
		for _, n := range created {
			opts.IO.Progress().Printf("Created template %s", n)
		}
		names = nil
		for _, sp := range specs {
			names = append(names, sp.Name)
		}
	}
	after := opts.AfterCommit
	if opts.Snapshot {
		after = func(ctx context.Context, r *templatebuild.Result) error {
			if opts.AfterCommit != nil {
				if err := opts.AfterCommit(ctx, r); err != nil {
					return err
				}
			}
			return templatebuild.Snapshot(ctx, s, r, templatebuild.SnapshotOptions{
				Accel: opts.Accel, ReadyTimeout: opts.ReadyTimeout, Progress: opts.IO.Progress(), Logger: opts.Logger})
		}
	}
	guests, err := runstate.Open()
	if err != nil {
		return err
	}
	results := []*templatebuild.Result{}
	for _, name := range names {
		r, err := templatebuild.Build(ctx, templatebuild.Options{
			Store: s, Name: name, Force: opts.Force, UpdateLock: opts.UpdateLock, Keep: opts.Keep, Offline: opts.Offline,
			Progress: opts.IO.Progress(), Logger: opts.Logger, AfterCommit: after, InUse: guests.TemplateRevisions,
		})
		if err != nil {
			return err
		}
		results = append(results, r)
		if !opts.JSON {
			fmt.Fprintln(opts.IO.Out, describe(r))
		}
	}
	if opts.JSON {
		return cmdutil.PrintJSON(opts.IO, results)
	}
	return nil
}

// describe is the line a build prints.
func describe(r *templatebuild.Result) string {
	rev := r.Revision.Short()
	var b strings.Builder
	switch r.Outcome {
	case templatebuild.UpToDate:
		fmt.Fprintf(&b, "%s is up to date: revision %s (inputs unchanged; --force rebuilds)", r.Name, rev)
	case templatebuild.Reused:
		fmt.Fprintf(&b, "%s: revision %s, already built with the same inputs, is current", r.Name, rev)
	case templatebuild.Pulled:
		fmt.Fprintf(&b, "%s: revision %s pulled from the remote cache (%s) in %s", r.Name, rev, size(r.Revision.Sizes.Total), r.Took.Round(100*time.Millisecond))
	default:
		fmt.Fprintf(&b, "%s: built revision %s (%s) in %s", r.Name, rev, size(r.Revision.Sizes.Total), r.Took.Round(100*time.Millisecond))
		if r.Identical {
			b.WriteString("; byte-identical to the current one")
		}
	}
	if r.Previous != "" {
		fmt.Fprintf(&b, "; was %s", template.ShortID(r.Previous))
	}
	if n := len(r.Pruned); n > 0 {
		fmt.Fprintf(&b, "; removed %d old revision(s)", n)
	}
	if m := r.Snapshot; m != nil {
		fmt.Fprintf(&b, "; snapshot taken (ready: %s, %.1fs after the VMM's start)", m.Ready, float64(m.ReadyMS)/1000)
	}
	return b.String()
}
