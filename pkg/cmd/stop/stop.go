// Package stop implements `ukernel stop`: stop a running guest, gracefully then forced.
package stop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/launch"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Options are the inputs of `stop`.
type Options struct {
	IO        *iostreams.IOStreams
	JSON      bool
	Logger    *slog.Logger
	OpenStore func() (*runstate.Store, error)

	Names   []string
	Timeout time.Duration
}

// NewCmdStop returns the stop command; runF, when set, gets the parsed options instead of
// stopRun (tests).
func NewCmdStop(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, OpenStore: runstate.Open}
	cmd := &cobra.Command{
		Use:         "stop NAME...",
		Annotations: map[string]string{cmdutil.InterruptibleAnnotation: "true"}, // a stop cut short leaves a guest the next stop or ps cleans
		Short:       "Stop running guests",
		Long: `Stop asks each guest over its control channel to stop its workload and power off. A guest
still running after --timeout is stopped by its VMM (QMP quit), and the VMM is killed if it
does not exit within a few more seconds. Stop leaves no VMM process and no state behind.`,
		Example: `  ukernel stop example-worker
  ukernel stop --timeout 30s api`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON, opts.Logger, opts.Names = f.JSON, f.Logger, args
			if opts.Timeout <= 0 {
				return cmdutil.Usagef("--timeout must be positive")
			}
			if runF != nil {
				return runF(opts)
			}
			return stopRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", launch.DefaultStopTimeout, "how long the guest gets to stop by itself")
	return cmd
}

func stopRun(ctx context.Context, opts *Options) error {
	store, err := opts.OpenStore()
	if err != nil {
		return err
	}
	// Every name is tried: one that fails does not leave the others running.
	var errs []error
	type stopped struct {
		Name   string `json:"name"`
		Result string `json:"result"` // graceful, quit, killed, gone
	}
	report := []stopped{}
	progress := opts.IO.Progress()
	for _, name := range opts.Names {
		if err := runstate.ValidateName(name); err != nil {
			errs = append(errs, err)
			continue
		}
		// Each step of the stop has its own deadline; this bounds the whole. A first Ctrl-C
		// does not abandon a guest half-stopped; a second one exits.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opts.Timeout+15*time.Second)
		res, err := launch.StopGuest(sctx, store, name, opts.Timeout, opts.Logger)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", name, err))
			continue
		}
		switch res {
		case vmm.AlreadyGone:
			progress.Printf("%s was not running (see ps -a)", name)
		case vmm.StoppedGracefully:
			progress.Printf("Stopped %s", name)
		default:
			progress.Printf("Stopped %s (%s: it did not stop by itself within %s)", name, res, opts.Timeout)
		}
		report = append(report, stopped{Name: name, Result: string(res)})
		if !opts.JSON {
			fmt.Fprintln(opts.IO.Out, name)
		}
	}
	if opts.JSON {
		if err := cmdutil.PrintJSON(opts.IO, report); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}
