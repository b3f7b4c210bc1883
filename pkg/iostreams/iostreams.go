// Package iostreams carries the standard streams a command writes to, so that every command can
// be run in tests with buffers instead of the process's own streams.
package iostreams

import (
	"bytes"
	"io"
	"os"

	"golang.org/x/term"
)

// IOStreams are the streams of one command invocation. Data goes to Out, progress and
// diagnostics to ErrOut.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	stderrTTY bool
}

// System returns the process's own streams.
func System() *IOStreams {
	return &IOStreams{
		In:        os.Stdin,
		Out:       os.Stdout,
		ErrOut:    os.Stderr,
		stderrTTY: term.IsTerminal(int(os.Stderr.Fd())) && os.Getenv("CI") == "",
	}
}

// Test returns streams backed by buffers: in, out, errOut.
func Test() (*IOStreams, *bytes.Buffer, *bytes.Buffer, *bytes.Buffer) {
	in, out, errOut := &bytes.Buffer{}, &bytes.Buffer{}, &bytes.Buffer{}
	return &IOStreams{In: in, Out: out, ErrOut: errOut}, in, out, errOut
}

// ProgressTTY reports whether progress bars may be drawn on ErrOut (a terminal, not CI).
func (s *IOStreams) ProgressTTY() bool { return s.stderrTTY }
