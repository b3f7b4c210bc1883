// Command ukernel is the host CLI: init, env, build, pack, run, inspect and friends.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ukernel-dev/ukernel/internal/version"
	"github.com/ukernel-dev/ukernel/pkg/cmd/root"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

func main() {
	os.Exit(run())
}

func run() int {
	exe, _ := os.Executable()
	f := &cmdutil.Factory{IO: iostreams.System(), Dir: ".", Executable: exe}
	// Commands that must handle interrupts themselves (run) see the cancellation through ctx.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := root.NewCmdRoot(f, version.String())
	err := cmd.ExecuteContext(ctx)
	code := cmdutil.ExitCode(err)
	if err != nil && err.Error() != "" {
		var msg = err.Error()
		if ee, ok := err.(*cmdutil.ExitError); ok && ee.Err == nil {
			msg = ""
		}
		if msg != "" {
			fmt.Fprintln(os.Stderr, "ukernel: "+strings.TrimSpace(msg))
			if code == 2 {
				fmt.Fprintln(os.Stderr, "Run 'ukernel --help' for usage.")
			}
		}
	}
	return code
}
