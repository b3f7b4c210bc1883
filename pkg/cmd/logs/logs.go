// Package logs implements `ukernel logs`: print the console of the latest run.
package logs

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

// NewCmdLogs returns the logs command.
func NewCmdLogs(f *cmdutil.Factory) *cobra.Command {
	var follow bool
	var service string
	cmd := &cobra.Command{
		Use:         "logs [NAME]",
		Annotations: map[string]string{cmdutil.InterruptibleAnnotation: "true"}, // killed, it leaves nothing half-done
		Short:       "Print a guest's console",
		Long: `Logs prints the serial console of the project's latest run (logs/console.log), or of the
running guest NAME. With --follow it keeps printing while the guest runs and returns when
its VM is gone.

With --service NAME it prints only the output of that service, without the "[NAME] " prefix
the guest puts before each of its lines on the console (the entry's lines have no prefix).`,
		Example: `  ukernel logs
  ukernel logs --follow example-worker
  ukernel logs --service db
  ukernel -C ../api logs`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := runstate.Open()
			if err != nil {
				return err
			}
			var run runstate.Run
			var live *runstate.State
			if len(args) == 1 {
				st, err := store.Load(args[0])
				if err != nil {
					return err
				}
				if st.RunDir == "" {
					return fmt.Errorf("guest %q has not started yet", args[0])
				}
				run = runstate.Run{ID: st.RunID, Dir: st.RunDir}
				live = st
			} else {
				dir, err := f.ProjectDir()
				if err != nil {
					return err
				}
				if run, err = runstate.LatestRun(dir); err != nil {
					return err
				}
				live = liveGuestOf(store, run)
			}
			out := io.Writer(f.IO.Out)
			if service != "" {
				sf := runstate.NewServiceFilter(f.IO.Out, service)
				defer sf.Flush()
				out = sf
			}
			if !follow || live == nil || !live.Live() {
				return printFile(out, run.Console())
			}
			return followGuest(cmd.Context(), out, run, live)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing while the guest runs")
	cmd.Flags().StringVar(&service, "service", "", "print only the output of the service `NAME`")
	return cmd
}

func printFile(w io.Writer, path string) error {
	fh, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("console log: %w", err)
	}
	defer fh.Close()
	_, err = io.Copy(w, fh)
	return err
}

// liveGuestOf returns the running guest whose run is r, if any.
func liveGuestOf(store *runstate.Store, r runstate.Run) *runstate.State {
	states, err := store.List()
	if err != nil {
		return nil
	}
	for _, st := range states {
		if filepath.Clean(st.RunDir) == filepath.Clean(r.Dir) && st.Live() {
			return st
		}
	}
	return nil
}

// followGuest streams the console until the guest's VMM is gone (checked by pid and command
// line, so the wait is bounded by the guest's own life) or the user interrupts.
func followGuest(ctx context.Context, w io.Writer, r runstate.Run, st *runstate.State) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for st.Handle.Alive() {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	err := runstate.Follow(ctx, r.Console(), w, done)
	if ctx.Err() != nil {
		return nil // Ctrl-C ends a follow normally
	}
	return err
}
