// Package iostreams carries the standard streams a command writes to, so that every command can
// be run in tests with buffers instead of the process's own streams.
package iostreams

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/term"

	"github.com/ukernel-dev/ukernel/internal/progress"
)

// IOStreams are the streams of one command invocation. Data goes to Out, progress and
// diagnostics to ErrOut.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	stderrTTY bool
	// outTerm and errTerm: Out and ErrOut are terminals (guest output shown there is
	// neutralised: guestlog.TerminalWriter).
	outTerm, errTerm bool
	// outClosed is set once a write to Out failed because its reader went away.
	outClosed *atomic.Bool

	progressOnce sync.Once
	progress     *progress.Writer
}

// System returns the process's own streams.
func System() *IOStreams {
	closed := &atomic.Bool{}
	return &IOStreams{
		In:        os.Stdin,
		Out:       pipeWriter{os.Stdout, closed},
		outClosed: closed,
		ErrOut:    os.Stderr,
		stderrTTY: term.IsTerminal(int(os.Stderr.Fd())) && os.Getenv("CI") == "",
		outTerm:   term.IsTerminal(int(os.Stdout.Fd())),
		errTerm:   term.IsTerminal(int(os.Stderr.Fd())),
	}
}

// Test returns streams backed by buffers: in, out, errOut.
func Test() (*IOStreams, *bytes.Buffer, *bytes.Buffer, *bytes.Buffer) {
	in, out, errOut := &bytes.Buffer{}, &bytes.Buffer{}, &bytes.Buffer{}
	return &IOStreams{In: in, Out: out, ErrOut: errOut}, in, out, errOut
}

// ProgressTTY reports whether progress bars may be drawn on ErrOut (a terminal, not CI).
func (s *IOStreams) ProgressTTY() bool { return s.stderrTTY }

// Terminals reports whether Out and ErrOut are terminals.
func (s *IOStreams) Terminals() (out, errOut bool) { return s.outTerm, s.errTerm }

// SetTerminals says that Out and ErrOut are terminals (tests).
func (s *IOStreams) SetTerminals(out, errOut bool) { s.outTerm, s.errTerm = out, errOut }

// StdoutClosed reports whether Out's reader went away (`ukernel env show | head`): the
// command's error for that is no failure to report, as for git or docker.
func (s *IOStreams) StdoutClosed() bool { return s.outClosed != nil && s.outClosed.Load() }

// pipeWriter notes EPIPE on a write. The root ignores SIGPIPE so that `run` can stop its
// guest when its output pipe closes; the write then fails with EPIPE instead.
type pipeWriter struct {
	w      io.Writer
	closed *atomic.Bool
}

func (p pipeWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	if errors.Is(err, syscall.EPIPE) {
		p.closed.Store(true)
	}
	return n, err
}

// Progress is the one writer of progress on ErrOut: steps, bars and lines all go through it,
// so a line never lands in the middle of a bar.
func (s *IOStreams) Progress() *progress.Writer {
	s.progressOnce.Do(func() { s.progress = progress.New(s.ErrOut, s.stderrTTY) })
	return s.progress
}
