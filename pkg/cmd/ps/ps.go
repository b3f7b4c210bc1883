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

	"github.com/ukernel-dev/ukernel/internal/runlog"
	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
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

// NewCmdPs returns the ps command.
func NewCmdPs(f *cmdutil.Factory) *cobra.Command {
	var all bool
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
			store, err := runstate.Open()
			if err != nil {
				return err
			}
			rows, err := List(store, time.Now(), all)
			if err != nil {
				return err
			}
			if f.JSON {
				if rows == nil {
					rows = []Guest{}
				}
				return f.PrintJSON(rows)
			}
			tw := tabwriter.NewWriter(f.IO.Out, 0, 4, 2, ' ', 0)
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
				if g.Status == "running" {
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
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "list finished guests too")
	return cmd
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

// List returns the guests of store (all: the finished ones too), recording as finished those
// whose VMM is gone.
func List(store *runstate.Store, now time.Time, all bool) ([]Guest, error) {
	states, err := store.List()
	if err != nil {
		return nil, err
	}
	var rows []Guest
	for _, st := range states {
		g := Guest{
			Name: st.Name, PID: st.Handle.PID, Backend: string(st.Handle.Backend), Accel: st.Accel,
			Image: st.Image, ImageDigest: st.ImageDigest, Ports: st.Ports, Started: st.Started,
			RunDir: st.RunDir, ProjectDir: st.ProjectDir, Status: "running",
			Template: st.Template, Revision: st.Revision,
		}
		if g.Ports == nil {
			g.Ports = []string{}
		}
		run := runlog.Run{ID: st.RunID, Dir: st.RunDir}
		switch {
		case st.Exited:
			g.Status, g.ExitCode, g.Reason, g.PID = "exited", st.ExitCode, st.Reason, 0
			if g.ExitCode == nil && g.Reason == "" {
				g.Reason = "no exit code reported"
			}
		case st.Live() && st.Handle.PID == 0:
			g.Status = "starting"
		case st.Live():
			g.UptimeS = int64(now.Sub(st.Started) / time.Second)
			g.Health = runlog.ReadHealth(run)
		default:
			// The VMM is gone and nobody recorded how the guest ended (its owner was killed).
			g.Status = "exited"
			out := runlog.Outcome{Reason: "never started"}
			if st.RunDir != "" {
				out = runlog.ReadOutcome(run)
			}
			if out.Reported {
				g.ExitCode = &out.Code
			} else {
				g.Reason = "no exit code reported"
			}
			if err := store.Finish(st, out); err != nil {
				return nil, fmt.Errorf("record the finished guest %s: %w", st.Name, err)
			}
		}
		if g.Status == "exited" && !all {
			continue
		}
		rows = append(rows, g)
	}
	return rows, nil
}
