// Package cmdutil holds what every command shares: the Factory that hands out IO streams and the
// project directory, and the error types that decide the process's exit code.
package cmdutil

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"

	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Factory is built once by the root command and passed to every command constructor.
type Factory struct {
	IO      *iostreams.IOStreams
	Dir     string // project directory (-C), "." by default
	JSON    bool   // --json: machine-readable output on stdout
	Verbose bool
	Logger  *slog.Logger
	// Executable is the path of the running ukernel binary; detached runs re-execute it.
	Executable string
	// Interruptible is set for a command that leaves nothing half-done when killed (it only
	// reads, or its writes are atomic): there a second interrupt exits at once.
	Interruptible atomic.Bool
}

// InterruptibleAnnotation marks such a command (cobra annotation key, value "true").
const InterruptibleAnnotation = "ukernel/interruptible"

// ProjectDir returns the absolute project directory.
func (f *Factory) ProjectDir() (string, error) {
	d, err := filepath.Abs(f.Dir)
	if err != nil {
		return "", fmt.Errorf("project directory %q: %w", f.Dir, err)
	}
	return d, nil
}

// LockProject takes the lock of the project in dir for command (its path, "ukernel env add")
// before it reads files it will write: a second such command waits for it (saying so on
// stderr), for a bounded time, then fails naming the holder.
func (f *Factory) LockProject(ctx context.Context, dir, command string) (release func(), err error) {
	return project.LockProject(ctx, dir, command, 0, f.IO.Progress())
}

// PrintJSON writes v as indented JSON on stdout.
func (f *Factory) PrintJSON(v any) error { return PrintJSON(f.IO, v) }

// PrintJSON writes v as indented JSON on ios's stdout: what every command prints under --json.
func PrintJSON(ios *iostreams.IOStreams, v any) error {
	enc := json.NewEncoder(ios.Out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// ProjectPath is a path given on the command line (an image, --image) as every command reads
// it: relative to the project directory dir (-C), not to the working directory, unless it is
// absolute. An empty path stays empty (the flag was not given).
func ProjectPath(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// UsageError is bad command-line usage: exit code 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// ExitError asks for a specific exit code; `run` uses it to pass the workload's code through.
// Err, when set, is printed; a nil Err exits silently.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}
func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode maps an error returned by a command to the process exit code:
// 0 ok, 2 bad usage, an ExitError's own code, 1 for any other failure.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}
