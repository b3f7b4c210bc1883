package root

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ukernel-dev/ukernel/internal/version"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Main runs the ukernel CLI with the process's arguments and streams and returns the exit
// code. cmd/ukernel calls it; CLI tests run it as the real binary (testscript).
func Main() int {
	exe, _ := os.Executable()
	f := &cmdutil.Factory{IO: iostreams.System(), Dir: ".", Executable: exe}
	// Commands that must handle interrupts themselves (run) see the cancellation through ctx.
	// A closed terminal (SIGHUP) is handled like Ctrl-C, so a guest is stopped, not orphaned.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	// With SIGPIPE noticed, writing to a closed pipe (`ukernel run | head`) returns EPIPE to
	// the writer instead of killing the process before it can stop its guest.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	defer stop()
	// One interrupt cancels ctx. In a command that leaves nothing half-done when killed
	// (inspect hashing a large image, stop waiting for a guest) the next one exits at once;
	// the others (env add restoring its file, build removing its work directory) finish their
	// cleanup first.
	go func() {
		<-ctx.Done()
		if f.Interruptible.Load() {
			stop()
		}
	}()
	cmd := NewCmdRoot(f, version.String())
	err := cmd.ExecuteContext(ctx)
	code := cmdutil.ExitCode(err)
	if unknownCommand(err) {
		code = 2
	}
	if err != nil {
		var ee *cmdutil.ExitError
		silent := errors.As(err, &ee) && ee.Err == nil
		if msg := strings.TrimSpace(err.Error()); msg != "" && !silent {
			fmt.Fprintln(os.Stderr, "ukernel: "+msg)
			if code == 2 {
				fmt.Fprintln(os.Stderr, "Run 'ukernel --help' for usage.")
			}
		}
	}
	return code
}
