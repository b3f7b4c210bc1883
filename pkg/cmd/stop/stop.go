// Package stop implements `ukernel stop`: stop a running guest, gracefully then forced.
package stop

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/launch"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

// NewCmdStop returns the stop command.
func NewCmdStop(f *cmdutil.Factory) *cobra.Command {
	var timeout time.Duration
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
			if timeout <= 0 {
				return cmdutil.Usagef("--timeout must be positive")
			}
			store, err := runstate.Open()
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
			for _, name := range args {
				if err := runstate.ValidateName(name); err != nil {
					errs = append(errs, err)
					continue
				}
				// Each step of the stop has its own deadline; this bounds the whole. A first
				// Ctrl-C does not abandon a guest half-stopped; a second one exits.
				ctx, cancel := context.WithTimeout(context.WithoutCancel(cmd.Context()), timeout+15*time.Second)
				res, err := launch.StopGuest(ctx, store, name, timeout, f.Logger)
				cancel()
				if err != nil {
					errs = append(errs, fmt.Errorf("stop %s: %w", name, err))
					continue
				}
				switch res {
				case vmm.AlreadyGone:
					f.Progress("%s was not running (see ps -a)", name)
				case vmm.StoppedGracefully:
					f.Progress("Stopped %s", name)
				default:
					f.Progress("Stopped %s (%s: it did not stop by itself within %s)", name, res, timeout)
				}
				report = append(report, stopped{Name: name, Result: string(res)})
				if !f.JSON {
					fmt.Fprintln(f.IO.Out, name)
				}
			}
			if f.JSON {
				if err := f.PrintJSON(report); err != nil {
					return err
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", launch.DefaultStopTimeout, "how long the guest gets to stop by itself")
	return cmd
}
