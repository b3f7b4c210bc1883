// Package ps implements `ukernel ps`: the guests running on this host.
package ps

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Guest is one row of `ps`.
type Guest struct {
	Name        string            `json:"name"`
	PID         int               `json:"pid"`
	Backend     string            `json:"backend"` // as doctor's choice.backend and run -d's backend
	Accel       string            `json:"accel"`   // as doctor's choice.accel and run -d's accel
	Image       string            `json:"image"`
	ImageDigest string            `json:"image_digest"`
	Ports       []string          `json:"ports"`
	Started     time.Time         `json:"started"`
	UptimeS     int64             `json:"uptime_s"`
	Status      string            `json:"status"` // running, starting, exited
	ExitCode    *int              `json:"exit_code,omitempty"`
	Reason      string            `json:"reason,omitempty"`
	Health      map[string]string `json:"health,omitempty"`
	RunDir      string            `json:"run_dir"`
	ProjectDir  string            `json:"project_dir"`
	// Template and Revision: the template revision the guest runs (run --template).
	Template string `json:"template,omitempty"`
	Revision string `json:"revision,omitempty"`
}

// Options are the inputs of `ps`.
type Options struct {
	IO        *iostreams.IOStreams
	JSON      bool
	OpenStore func() (*runstate.Store, error)
	Now       func() time.Time

	All bool
}

// NewCmdPs returns the ps command; runF, when set, gets the parsed options instead of psRun
// (tests).
func NewCmdPs(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, OpenStore: runstate.Open, Now: time.Now}
	cmd := &cobra.Command{
		Use:         "ps",
		Annotations: map[string]string{cmdutil.InterruptibleAnnotation: "true"}, // killed, it leaves nothing half-done
		Short:       "List the guests running on this host",
		Long: `Ps lists running guests: name, VMM pid, backend, accelerator, image digest (for a
template's guest, template:NAME@REVISION), published
ports, uptime, status and health (the latest result of each [health.NAME] check:
starting, healthy or unhealthy). With -a it lists finished guests too, as exited with the
exit code their guest reported (or why there is none): a guest's record stays until a new run
of the same name replaces it or ` + "`ukernel rm NAME`" + ` removes it.`,
		Example: `  ukernel ps
  ukernel ps -a
  ukernel ps --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.JSON
			if runF != nil {
				return runF(opts)
			}
			return psRun(opts)
		},
	}
	cmd.Flags().BoolVarP(&opts.All, "all", "a", false, "list finished guests too")
	return cmd
}

func psRun(opts *Options) error {
	store, err := opts.OpenStore()
	if err != nil {
		return err
	}
	guests, err := store.Guests()
	if err != nil {
		return err
	}
	rows := Rows(guests, opts.Now(), opts.All)
	if opts.JSON {
		return cmdutil.PrintJSON(opts.IO, rows)
	}
	tw := tabwriter.NewWriter(opts.IO.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPID\tBACKEND\tACCEL\tIMAGE\tPORTS\tUPTIME\tSTATUS\tHEALTH")
	for _, g := range rows {
		digest := g.ImageDigest
		if len(digest) > 12 {
			digest = digest[:12]
		}
		if g.Template != "" {
			digest = template.Ref(g.Template, g.Revision)
		}
		uptime := "-"
		if g.Status == runstate.StatusRunning {
			uptime = (time.Duration(g.UptimeS) * time.Second).String()
		}
		pid := "-"
		if g.PID > 0 {
			pid = fmt.Sprint(g.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.Name, pid, dash(g.Backend), dash(g.Accel),
			dash(digest), dash(strings.Join(g.Ports, ",")), uptime, statusText(g), dash(HealthText(g.Health)))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func statusText(g Guest) string {
	s := g.Status
	if g.ExitCode != nil {
		s += fmt.Sprintf(" (%d)", *g.ExitCode)
	} else if g.Reason != "" {
		s += " (" + g.Reason + ")"
	}
	return s
}

// HealthText is the HEALTH column: each checked service's latest status, by name.
func HealthText(health map[string]string) string {
	var h []string
	for _, name := range slices.Sorted(maps.Keys(health)) {
		h = append(h, name+"="+health[name])
	}
	return strings.Join(h, ",")
}

// Rows are the rows of guests at now: the running ones, or with all the finished ones too.
func Rows(guests []runstate.Guest, now time.Time, all bool) []Guest {
	rows := []Guest{}
	for _, rg := range guests {
		if rg.Status == runstate.StatusExited && !all {
			continue
		}
		st := rg.State
		g := Guest{
			Name: st.Name, PID: st.Handle.PID, Backend: string(st.Handle.Backend), Accel: st.Accel,
			Image: st.Image, ImageDigest: st.ImageDigest, Ports: st.Ports, Started: st.Started,
			RunDir: st.RunDir, ProjectDir: st.ProjectDir,
			Status: rg.Status, ExitCode: rg.ExitCode, Reason: rg.Reason, Health: rg.Health,
			Template: st.Template, Revision: st.Revision,
		}
		if g.Ports == nil {
			g.Ports = []string{}
		}
		switch g.Status {
		case runstate.StatusExited:
			g.PID = 0
		case runstate.StatusRunning:
			g.UptimeS = int64(now.Sub(st.Started) / time.Second)
		}
		rows = append(rows, g)
	}
	return rows
}
