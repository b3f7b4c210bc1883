// Package session is the host side of `ukernel exec` and `ukernel shell`: it finds a running
// guest's exec channel and runs one session over it (abi.ExecMagic): the request, the
// process's input, terminal size and signals to the guest, its output and exit code back.
package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/backends"
)

// StartTimeout bounds the wait for the guest's first answer to a start request. A guest whose
// init has no exec channel (an image packed by an older ukernel) never answers; under TCG on
// a loaded host a session starts within a few seconds.
const StartTimeout = 20 * time.Second

// writeTimeout bounds a control message's write (start, resize, signal): the guest reads
// them while its session runs.
const writeTimeout = 10 * time.Second

// Dial connects to an exec channel of the running guest called name.
func Dial(ctx context.Context, store *runstate.Store, name string, log *slog.Logger) (net.Conn, error) {
	st, err := store.Load(name)
	if err != nil {
		return nil, err
	}
	if st.Exited || st.Handle.PID == 0 || !st.Handle.Alive() {
		return nil, fmt.Errorf("guest %q is not running (see ukernel ps -a)", name)
	}
	e, err := backends.Get(st.Handle.Backend)
	if err != nil {
		return nil, err
	}
	x, ok := e.New(log).(vmm.Execer)
	if !ok {
		return nil, fmt.Errorf("guest %q runs under %s, which has no exec channel", name, st.Handle.Backend)
	}
	dctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	c, err := x.DialExec(dctx, st.Handle)
	if err != nil {
		return nil, fmt.Errorf("exec into %s: %w", name, err)
	}
	return c, nil
}

// Options are one session's request and streams.
type Options struct {
	Request abi.ExecRequest
	Stdin   io.Reader // nil: no input (the process's stdin ends at once)
	Stdout  io.Writer
	Stderr  io.Writer
	Resize  <-chan [2]uint16      // the terminal's new rows and columns
	Signals <-chan syscall.Signal // passed to the process (its terminal's foreground job)
	Started func(pid int)         // called once the process runs
	Timeout time.Duration         // for the first answer; StartTimeout when zero
}

// RefusedError is the guest's refusal to start a session (not allowed, no such user or
// command); Code is the exit code it gave.
type RefusedError struct {
	Code    int
	Message string
}

func (e *RefusedError) Error() string { return e.Message }

// Run runs one session on conn and returns the process's exit code. It closes conn. ctx ends
// the session from the host's side (the guest then hangs the process up).
func Run(ctx context.Context, conn net.Conn, o Options) (int, error) {
	defer conn.Close()
	start, err := abi.EncodeExecStart(o.Request)
	if err != nil {
		return 0, err
	}
	w := &writer{conn: conn}
	if err := w.send(abi.ExecMsg{Type: abi.ExecStart, Payload: start}, writeTimeout); err != nil {
		return 0, fmt.Errorf("exec channel: send the request: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	timeout := o.Timeout
	if timeout <= 0 {
		timeout = StartTimeout
	}
	r := abi.NewExecReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	first, err := r.Next()
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return 0, fmt.Errorf("the guest did not answer on its exec channel within %s: its init has no exec support (an image packed by an older ukernel: repack it and restart the guest), or it is still starting or hung", timeout)
		}
		return 0, fmt.Errorf("exec channel: %w (the guest hung up before it answered)", err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	switch first.Type {
	case abi.ExecStarted:
		if o.Started != nil {
			o.Started(first.Int32())
		}
	case abi.ExecError:
		code := 126
		if m, err := r.Next(); err == nil && m.Type == abi.ExecExit {
			code = m.Int32()
		}
		return code, &RefusedError{Code: code, Message: string(first.Payload)}
	default:
		return 0, fmt.Errorf("exec channel: the guest answered with a %q message, not started or error", first.Type)
	}

	done := make(chan struct{})
	defer close(done)
	go w.pumpStdin(o.Stdin, done)
	go func() {
		for {
			select {
			case <-done:
				return
			case rc := <-o.Resize:
				_ = w.send(abi.ExecResizeMsg(rc[0], rc[1]), writeTimeout)
			case sig := <-o.Signals:
				_ = w.send(abi.ExecMsg{Type: abi.ExecSignal, Payload: []byte{byte(sig)}}, writeTimeout)
			}
		}
	}()
	for {
		m, err := r.Next()
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, fmt.Errorf("exec channel: %w (the guest ended the session without an exit code: did it stop?)", err)
		}
		var out io.Writer
		switch m.Type {
		case abi.ExecStdout:
			out = o.Stdout
		case abi.ExecStderr:
			out = o.Stderr
		case abi.ExecExit:
			return m.Int32(), nil
		default:
			continue
		}
		if out != nil {
			if _, err := out.Write(m.Payload); err != nil {
				return 0, fmt.Errorf("session output: %w", err)
			}
		}
	}
}

// writer sends messages, one at a time.
type writer struct {
	mu   sync.Mutex
	conn net.Conn
}

// send writes m within timeout (0: until the connection closes, which ends the session).
func (w *writer) send(m abi.ExecMsg, timeout time.Duration) error {
	b, err := abi.AppendExec(nil, m)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if timeout > 0 {
		_ = w.conn.SetWriteDeadline(time.Now().Add(timeout))
		defer w.conn.SetWriteDeadline(time.Time{})
	}
	_, err = w.conn.Write(b)
	return err
}

// pumpStdin passes in to the process, then its end. A process that does not read its input
// holds the pump (the channel's backpressure), never the session: closing the connection ends
// the pump's write.
func (w *writer) pumpStdin(in io.Reader, done <-chan struct{}) {
	if in != nil {
		buf := make([]byte, 32<<10)
		for {
			n, err := in.Read(buf)
			if n > 0 {
				if w.send(abi.ExecMsg{Type: abi.ExecStdin, Payload: buf[:n]}, 0) != nil {
					return
				}
			}
			if err != nil {
				break
			}
			select {
			case <-done:
				return
			default:
			}
		}
	}
	_ = w.send(abi.ExecMsg{Type: abi.ExecStdin}, writeTimeout)
}
