// Package inspect implements `ukernel inspect IMG`: what an image holds and whether it is intact,
// read from the file alone (no boot, no root, no mounts).
package inspect

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/guestlog"
	"github.com/ukernel-dev/ukernel/internal/image"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Options are the inputs of one inspect invocation.
type Options struct {
	IO         *iostreams.IOStreams
	ProjectDir func() (string, error)
	JSON       bool
	Image      string // as the user typed it; relative paths are taken from the project directory
}

// Output is what --json prints.
type Output struct {
	Image    string       `json:"image"`
	Size     int64        `json:"size"`
	SHA256   string       `json:"sha256"`
	Manifest abi.Manifest `json:"manifest"`
	Verified bool         `json:"verified"`
	Report   image.Report `json:"verification"`
}

// NewCmdInspect returns the inspect command; runF, when set, gets the parsed options instead of
// inspectRun (tests).
func NewCmdInspect(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, ProjectDir: f.ProjectDir}
	return &cobra.Command{
		Use:         "inspect IMG | template:NAME[@REV]",
		Annotations: map[string]string{cmdutil.InterruptibleAnnotation: "true"}, // killed, it leaves nothing half-done
		Short:       "Show an image's metadata and verify it",
		Long: `Show what an image holds (ABI, adapter, kernel, lock, artefacts, entry, services, health
checks, run defaults) and verify every part of it: both GPT copies, each partition's digest,
the zero gaps, the manifest, kernel and initramfs. Reads the file only: no boot, no root.
Exits 1 and names the damaged part when verification fails.`,
		Example: `  ukernel inspect dist/example-worker.img
  ukernel inspect template:api@3f2a9c01
  ukernel inspect --json dist/example-worker.img | jq .manifest.artefacts`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return cmdutil.Usagef("inspect takes one image path, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON, opts.Image = f.JSON, args[0]
			if runF != nil {
				return runF(opts)
			}
			return inspectRun(opts)
		},
	}
}

// inspectRun opens, verifies and prints the image.
func inspectRun(opts *Options) error {
	dir, err := opts.ProjectDir()
	if err != nil {
		return err
	}
	p, err := template.ImageArg(opts.Image)
	if err != nil {
		return err
	}
	im, err := image.Open(cmdutil.ProjectPath(dir, p))
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	defer im.Close()
	sum, err := im.SHA256()
	if err != nil {
		return err
	}
	rep := im.Verify()
	out := Output{Image: opts.Image, Size: im.Size(), SHA256: sum, Manifest: im.Manifest(), Verified: rep.OK(), Report: rep}
	if opts.JSON {
		if err := cmdutil.PrintJSON(opts.IO, out); err != nil {
			return err
		}
	} else {
		outTerm, _ := opts.IO.Terminals()
		if err := writeText(opts.IO.Out, outTerm, out); err != nil {
			return err
		}
	}
	if err := rep.Err(); err != nil {
		return &cmdutil.ExitError{Code: 1, Err: fmt.Errorf("%s: %w", opts.Image, err)}
	}
	return nil
}

// writeText prints o, through a TerminalWriter on a terminal: the manifest is the image's own
// text (a pulled image's is anyone's), which must not move the cursor or retitle the window.
func writeText(w io.Writer, terminal bool, o Output) error {
	if !terminal {
		printText(w, o)
		return nil
	}
	tw := &guestlog.TerminalWriter{W: w}
	printText(tw, o)
	return tw.Flush()
}

func printText(w io.Writer, o Output) {
	m := o.Manifest
	line := func(k, format string, a ...any) { fmt.Fprintf(w, "%s: "+format+"\n", append([]any{k}, a...)...) }
	line("Image", "%s", o.Image)
	line("ABI", "%s", m.ABI)
	line("Adapter", "%s", m.Adapter.Runtime)
	line("Size", "%s", humanize.Bytes(uint64(o.Size)))
	line("SHA256", "%s", o.SHA256)
	line("Name", "%s", m.Name)
	if m.Role != "" {
		line("Role", "%s", m.Role)
	}
	line("Lock", "%s (%d packages)", m.Lock.Digest, m.Lock.Packages)
	line("Kernel", "%s %s (%s)", m.Kernel.Package, m.Kernel.Version, m.Kernel.Release)
	line("Cmdline", "%s", m.Kernel.Cmdline)
	line("Modules", "%s", moduleSummary(m))
	line("Built with", "ukernel %s, %s, SOURCE_DATE_EPOCH %d", m.Build.Ukernel, m.Build.Go, m.Build.SourceDateEpoch)
	if len(m.Entry) > 0 {
		line("Entry", "%s", strings.Join(m.Entry, " "))
	} else {
		line("Entry", "none (services only)")
	}
	for _, s := range m.Services {
		restart := s.Restart
		if restart == "" {
			restart = "no"
		}
		line("Service", "%s: %s (restart %s)", s.Name, strings.Join(s.Command, " "), restart)
	}
	for _, h := range m.Health {
		probe := h.HTTP
		if probe == "" {
			probe = strings.Join(h.Cmd, " ")
		}
		line("Health", "%s: %s every %ds, timeout %ds", h.Service, probe, h.IntervalS, h.TimeoutS)
	}
	run := fmt.Sprintf("vcpu %d, memory %d MB, net %s", m.Run.VCPU, m.Run.MemoryMB, m.Run.Net)
	if len(m.Run.Publish) > 0 {
		run += ", publish " + strings.Join(m.Run.Publish, " ")
	}
	line("Run", "%s", run)
	if m.Data.DiskMB > 0 {
		line("Data", "%d MB volume", m.Data.DiskMB)
	} else {
		line("Data", "none")
	}
	fmt.Fprintln(w, "Artefacts:")
	for _, a := range m.Artefacts {
		fmt.Fprintf(w, "  %-10s %9s  sha256:%s\n", a.Name, humanize.Bytes(uint64(a.Size)), a.SHA256)
	}
	if o.Verified {
		names := make([]string, len(o.Report.Checks))
		for i, c := range o.Report.Checks {
			names[i] = c.Part
		}
		line("Verified", "ok (%s)", strings.Join(names, ", "))
		return
	}
	fmt.Fprintln(w, "Verified: FAILED")
	for _, c := range o.Report.Checks {
		if !c.OK {
			fmt.Fprintf(w, "  %s: %s\n", c.Part, c.Err)
		}
	}
}

// moduleSummary says how many modules the image carries and which load only on demand.
func moduleSummary(m abi.Manifest) string {
	if len(m.ModuleGroups) == 0 {
		return strconv.Itoa(len(m.Modules))
	}
	onDemand := map[string]bool{} // a module two groups need counts once
	var groups []string
	for _, g := range slices.Sorted(maps.Keys(m.ModuleGroups)) {
		for _, p := range m.ModuleGroups[g] {
			onDemand[p] = true
		}
		groups = append(groups, fmt.Sprintf("%s %d", g, len(m.ModuleGroups[g])))
	}
	return fmt.Sprintf("%d (%d at every boot; on demand: %s)", len(m.Modules), len(m.Modules)-len(onDemand), strings.Join(groups, ", "))
}
