package root

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"strconv"
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
	cmd := NewCmdRoot(f, version.Version)
	failed, err := cmd.ExecuteContextC(ctx)
	code := cmdutil.ExitCode(err)
	if err != nil && f.IO.StdoutClosed() && errors.Is(err, syscall.EPIPE) {
		// Whoever read the output has stopped (`| head`): exit quietly with the status a
		// process killed by SIGPIPE has, as git does.
		return 128 + int(syscall.SIGPIPE)
	}
	var path string
	if failed != nil {
		path = failed.CommandPath()
	}
	cmdutil.PrintError(os.Stderr, err, code, f.JSON || jsonRequested(os.Args[1:]), path)
	return code
}

// jsonRequested reports whether --json is among args: a command line that fails to parse may
// stop before the flag is read, and its error must still come out as JSON.
func jsonRequested(args []string) bool {
	on := false
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "--json" {
			on = true
		} else if v, ok := strings.CutPrefix(a, "--json="); ok {
			on, _ = strconv.ParseBool(v)
		}
	}
	return on
}
