package session

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"golang.org/x/term"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// Streams are the command's own standard streams.
type Streams struct {
	In          io.Reader
	Out, ErrOut io.Writer
}

// InterruptsToLeave is how many Ctrl-C (SIGINT) of a session without a terminal end it from
// this side: the first ones go to the guest's process, which may ignore them, or the guest may
// no longer answer.
const InterruptsToLeave = 3

// ErrLeft is the end of a session left from this side (InterruptsToLeave); the guest's process
// gets a hang-up.
var ErrLeft = errors.New("session left after repeated interrupts: the guest's process gets a hang-up")

// Attach runs req on conn with the command's streams: with req.TTY and a terminal for input,
// that terminal goes raw (every key, Ctrl-C included, reaches the guest's terminal, which
// makes the signal) and follows its size (SIGWINCH); otherwise SIGINT, SIGTERM and SIGHUP of
// this process go to the guest's process, and the InterruptsToLeave-th SIGINT ends the session
// (ErrLeft). It returns the process's exit code.
func Attach(ctx context.Context, conn net.Conn, req abi.ExecRequest, s Streams, started func(int)) (int, error) {
	o := Options{Request: req, Stdin: s.In, Stdout: s.Out, Stderr: s.ErrOut, Started: started}
	if req.TTY {
		o.Stderr = s.Out // a terminal has one stream
	}
	in, _ := s.In.(*os.File)
	if req.TTY && in != nil && term.IsTerminal(int(in.Fd())) {
		fd := int(in.Fd())
		if cols, rows, err := term.GetSize(fd); err == nil {
			o.Request.Rows, o.Request.Cols = uint16(rows), uint16(cols)
		}
		old, err := term.MakeRaw(fd)
		if err != nil {
			return 0, err
		}
		defer term.Restore(fd, old)
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		resize := make(chan [2]uint16, 1)
		o.Resize = resize
		go func() {
			for range winch {
				if cols, rows, err := term.GetSize(fd); err == nil {
					select {
					case resize <- [2]uint16{uint16(rows), uint16(cols)}:
					default:
					}
				}
			}
		}()
		// Raw mode makes no SIGINT of Ctrl-C here; a signal from elsewhere still ends the
		// session from this side.
	} else {
		sigs := make(chan os.Signal, 4)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
		defer signal.Stop(sigs)
		fwd := make(chan syscall.Signal, 4)
		o.Signals = fwd
		// The root's context ends on the first Ctrl-C: here it is the guest process's to
		// answer (it may ignore it), so the session goes on until the process exits.
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(context.WithoutCancel(ctx))
		defer cancel()
		var left atomic.Bool
		go func() {
			n := 0
			for sig := range sigs {
				if sig == os.Interrupt {
					if n++; n >= InterruptsToLeave {
						left.Store(true)
						cancel()
						continue
					}
				}
				select {
				case fwd <- sig.(syscall.Signal):
				default:
				}
			}
		}()
		code, err := Run(ctx, conn, o)
		if left.Load() && errors.Is(err, context.Canceled) {
			return 130, ErrLeft
		}
		return code, err
	}
	return Run(ctx, conn, o)
}
