// Package logs implements `ukernel logs`: print the output of a guest's workload, recorded by
// internal/guestlog.
package logs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/guestlog"
	"github.com/ukernel-dev/ukernel/internal/runlog"
	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Options are the inputs of `logs`.
type Options struct {
	IO         *iostreams.IOStreams
	ProjectDir func() (string, error)
	OpenStore  func() (*runstate.Store, error)
	JSON       bool

	Name       string // the guest; "": the project's latest run
	Follow     bool
	Service    string
	Kernel     bool
	Tail       int // -1: every line
	Since      string
	Timestamps bool

	since time.Time // --since parsed (check)
}

// NewCmdLogs returns the logs command. Its flags are checked (usage errors) before runF (tests:
// it gets the parsed options) or logsRun.
func NewCmdLogs(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	o := &Options{IO: f.IO, ProjectDir: f.ProjectDir, OpenStore: runstate.Open}
	cmd := &cobra.Command{
		Use:         "logs [NAME]",
		Annotations: map[string]string{cmdutil.InterruptibleAnnotation: "true"}, // killed, it leaves nothing half-done
		Short:       "Print a guest's output",
		Long: `Logs prints what the workload of the project's latest run wrote (its entry's and its
services' stdout and stderr), or of the guest NAME, running or finished (see ps -a). Each
line was recorded with the host's time, in the run's output log
(logs/runs/<id>/output.jsonl: one JSON record a line, with time, stream, service and log).
Stdout lines go to stdout, the others to stderr.

--kernel adds the serial console's lines (the kernel's messages and init's own; the whole
console is in logs/console.log). --service NAME prints only that service's output (an error
for a service the run does not have). --tail N prints the last N lines, --since only those
from a time on (a duration such as 10m, or a timestamp such as 2026-01-02T15:04:05Z),
--timestamps puts each line's time first. With --follow it keeps printing while the guest
runs and returns once it is gone. --json prints the selected records as one JSON array.`,
		Example: `  ukernel logs
  ukernel logs --follow example-worker
  ukernel logs --service db --tail 20
  ukernel logs --since 5m --timestamps api
  ukernel -C ../api logs --kernel`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.JSON = f.JSON
			if len(args) == 1 {
				o.Name = args[0]
			}
			if err := o.check(time.Now()); err != nil {
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return logsRun(cmd.Context(), o)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&o.Follow, "follow", "f", false, "keep printing while the guest runs")
	fl.StringVar(&o.Service, "service", "", "print only the output of the service `NAME`")
	fl.BoolVar(&o.Kernel, "kernel", false, "include the kernel's console lines")
	fl.IntVarP(&o.Tail, "tail", "n", -1, "print only the last `N` lines")
	fl.StringVar(&o.Since, "since", "", "print only lines from this time on: a duration (10m) or an RFC 3339 timestamp")
	fl.BoolVarP(&o.Timestamps, "timestamps", "t", false, "put each line's time (RFC 3339, host clock) first")
	return cmd
}

// ParseSince reads --since: a duration before now, or an RFC 3339 timestamp (or a date).
func ParseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--since %q: a duration must not be negative", s)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--since %q: expected a duration (10m, 1h30m) or a timestamp (2006-01-02T15:04:05Z, 2006-01-02)", s)
}

func (o *Options) check(now time.Time) error {
	var err error
	if o.since, err = ParseSince(o.Since, now); err != nil {
		return cmdutil.Usagef("%v", err)
	}
	if o.Tail < -1 {
		return cmdutil.Usagef("--tail %d: expected a number of lines, 0 or more", o.Tail)
	}
	if o.JSON && o.Follow {
		return cmdutil.Usagef("--json prints one document: it does not go with --follow")
	}
	return nil
}

func logsRun(ctx context.Context, o *Options) error {
	store, err := o.OpenStore()
	if err != nil {
		return err
	}
	var run runlog.Run
	var st *runstate.State
	if o.Name != "" {
		if st, run, err = store.Started(o.Name); err != nil {
			return err
		}
	} else {
		dir, err := o.ProjectDir()
		if err != nil {
			return err
		}
		if run, err = runlog.LatestRun(dir); err != nil {
			return err
		}
		st = store.GuestOf(run)
	}
	filter := guestlog.Filter{Kernel: o.Kernel, Service: o.Service, Since: o.since}
	if o.Service != "" {
		info, err := run.ReadInfo()
		if err != nil {
			return err
		}
		filter.Services = info.Services
		if err := filter.Check(); err != nil {
			return err
		}
	}
	// On a terminal the guest's control sequences are shown escaped; pipes get its bytes.
	outTerm, errTerm := o.IO.Terminals()
	p := &guestlog.Printer{Out: guestlog.ForTerminal(o.IO.Out, outTerm), Err: guestlog.ForTerminal(o.IO.ErrOut, errTerm), Timestamps: o.Timestamps}
	emit, end := p.Print, func() error { return nil }
	if o.JSON {
		emit, end = jsonArray(o.IO.Out)
	}
	offset, err := run.ReadOutput(filter, o.Tail, emit)
	if err != nil {
		return err
	}
	if o.JSON {
		return end()
	}
	if !o.Follow || st == nil || !st.Live() {
		return nil
	}
	err = run.FollowOutput(ctx, offset, filter, p.Print, func() bool { return store.Recording(st) })
	if err != nil && strings.Contains(err.Error(), "broken pipe") {
		return nil // the reader went away (logs -f | head)
	}
	return err
}

// jsonArray prints records one at a time as one indented JSON array, as cmdutil's PrintJSON
// prints a whole slice; end closes the array.
func jsonArray(w io.Writer) (emit func(guestlog.Record) error, end func() error) {
	n := 0
	emit = func(r guestlog.Record) error {
		b, err := json.MarshalIndent(r, "  ", "  ")
		if err != nil {
			return err
		}
		sep := ",\n  "
		if n == 0 {
			sep = "[\n  "
		}
		n++
		_, err = io.WriteString(w, sep+string(b))
		return err
	}
	end = func() error {
		text := "\n]\n"
		if n == 0 {
			text = "[]\n"
		}
		_, err := io.WriteString(w, text)
		return err
	}
	return emit, end
}
