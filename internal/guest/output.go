package guest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// maxLine bounds a prefixed console line; longer output is cut into lines of this size.
const maxLine = 4096

// Output carries the workload's stdout and stderr to the host. On the output channel (see
// abi.FrameMagic) each read from a process's pipe becomes one frame naming its service and
// stream, so the host keeps them apart from each other and from the kernel's console. Without
// a channel (an image booted by a VMM that does not offer one) the output goes to the console
// as it always did: the entry's as it is, each service's line by line as "[name] line".
//
// While the workload runs, a host that reads slowly slows it down (a blocked write holds its
// pipe) rather than lose output; at power-off the wait is bounded (Close), so a host that stopped
// reading never keeps the guest from ending.
type Output struct {
	mu      sync.Mutex // one frame or line at a time; held across a write, so Close never takes it
	w       io.Writer
	framed  bool
	failed  atomic.Bool // the channel could not be written or was cut: the rest is dropped
	keepMu  sync.Mutex
	keep    []*os.File // write ends held for restarts; closed by Close
	copiers sync.WaitGroup
}

// helloTimeout bounds the hello frame's write: a channel that takes no 10 bytes then is not
// waited for; the output goes to the console instead. A variable for tests.
var helloTimeout = 5 * time.Second

// deadliner is a channel whose blocked writes a deadline ends (a file or socket in the runtime's
// poller: a serial port opened non-blocking, a vsock connection, a pipe).
type deadliner interface {
	SetWriteDeadline(time.Time) error
}

// drainer is a channel that holds written bytes beyond its writes (a UART's buffers).
type drainer interface {
	Drain(ctx context.Context) error
}

// NewOutput writes frames to channel, or to console when channel is nil or does not take the
// hello frame within helloTimeout.
func NewOutput(channel io.Writer, console io.Writer) *Output {
	if channel == nil {
		return &Output{w: console}
	}
	o := &Output{w: channel, framed: true}
	d, _ := channel.(deadliner)
	if d != nil {
		_ = d.SetWriteDeadline(time.Now().Add(helloTimeout))
	}
	o.write(abi.Frame{Kind: abi.FrameHello, Data: []byte(abi.Version)})
	if d != nil {
		_ = d.SetWriteDeadline(time.Time{})
	}
	if o.failed.Load() {
		fmt.Fprintf(console, "ukernel-init: warning: the output channel did not take its first frame within %s: the workload's output goes to the console\n", helloTimeout)
		return &Output{w: console}
	}
	return o
}

// Reattach moves the output channel to w, which starts with its hello frame as a new channel
// does, and closes the old one: after a restore under Firecracker, whose vsock connections the
// guest's driver resets (redialVsock). What failed to reach the old channel is lost; what comes
// next goes to w.
func (o *Output) Reattach(w io.Writer) error {
	hello, err := abi.AppendFrames(nil, abi.Frame{Kind: abi.FrameHello, Data: []byte(abi.Version)})
	if err != nil {
		return err
	}
	if d, ok := w.(deadliner); ok {
		_ = d.SetWriteDeadline(time.Now().Add(helloTimeout))
		defer d.SetWriteDeadline(time.Time{})
	}
	if _, err := w.Write(hello); err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if c, ok := o.w.(io.Closer); ok {
		c.Close()
	}
	o.w = w
	o.failed.Store(false)
	return nil
}

// Framed reports whether the output goes to the host's output channel.
func (o *Output) Framed() bool { return o.framed }

// Pipe returns the write end of a pipe for one stream (abi.FrameStdout or FrameStderr) of
// service ("" for the entry). The pipe is handed to each run of the process; it is copied until
// every write end is closed (Close closes init's own).
func (o *Output) Pipe(service string, kind byte) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	o.keepMu.Lock()
	o.keep = append(o.keep, w)
	o.keepMu.Unlock()
	o.copiers.Add(1)
	go func() {
		defer o.copiers.Done()
		defer r.Close()
		if o.framed {
			o.copyFrames(r, service, kind)
			return
		}
		prefix := ""
		if service != "" {
			prefix = "[" + service + "] "
		}
		o.copyLines(r, prefix)
	}()
	return w, nil
}

func (o *Output) copyFrames(r io.Reader, service string, kind byte) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			o.write(abi.Frame{Kind: kind, Service: service, Data: buf[:n]})
		}
		if err != nil {
			return
		}
	}
}

func (o *Output) write(f abi.Frame) {
	b, err := abi.AppendFrames(nil, f)
	if err != nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.failed.Load() {
		return
	}
	if _, err := o.w.Write(b); err != nil {
		o.failed.Store(true)
	}
}

func (o *Output) copyLines(r io.Reader, prefix string) {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 && !o.failed.Load() {
			out := make([]byte, 0, len(prefix)+len(line)+1)
			out = append(append(out, prefix...), line...)
			if out[len(out)-1] != '\n' {
				out = append(out, '\n')
			}
			o.mu.Lock()
			_, _ = o.w.Write(out)
			o.mu.Unlock()
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

// Close closes init's write ends and waits, until ctx ends, for what the workload wrote to
// reach the channel (for a serial port: to leave the UART). It reports whether all of it did.
// When ctx ends first the rest is cut: a write blocked on the channel ends (its write deadline)
// and what the pipes still hold is dropped. Close never waits beyond ctx: power-off must not
// depend on the host reading.
func (o *Output) Close(ctx context.Context) (complete bool) {
	o.keepMu.Lock()
	for _, w := range o.keep {
		w.Close()
	}
	o.keep = nil
	o.keepMu.Unlock()
	done := make(chan struct{})
	go func() {
		o.copiers.Wait()
		close(done)
	}()
	select {
	case <-done:
		if d, ok := o.w.(drainer); ok && o.framed {
			if err := d.Drain(ctx); err != nil {
				o.cut()
			}
		}
		return !o.failed.Load()
	case <-ctx.Done():
		o.cut()
		return false
	}
}

// cut drops what is not written yet and ends a write blocked on the channel (a channel without
// deadlines keeps its writer blocked; Close returns all the same).
func (o *Output) cut() {
	o.failed.Store(true)
	if d, ok := o.w.(deadliner); ok {
		_ = d.SetWriteDeadline(time.Unix(1, 0))
	}
}

// serialChannel is the output channel on a serial port, non-blocking underneath: its writes
// wait in the runtime's poller, where a deadline can end them.
type serialChannel struct{ *os.File }

// Drain waits until the UART has sent what the tty holds (power-off would drop it), or ctx
// ends. The line status register says when both the tty's buffer and the UART's are empty;
// polled rather than tcdrain(3), which waits without a deadline.
func (s serialChannel) Drain(ctx context.Context) error {
	rc, err := s.SyscallConn()
	if err != nil {
		return err
	}
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		var lsr int
		var ierr error
		if err := rc.Control(func(fd uintptr) { lsr, ierr = unix.IoctlGetInt(int(fd), unix.TIOCSERGETLSR) }); err != nil {
			return err
		}
		if ierr != nil || lsr&unix.TIOCSER_TEMT != 0 {
			return nil // sent (or not a UART: nothing of its own to wait for)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// openOutputSerial opens the output channel's serial port in raw mode: no newline translation,
// no echo, no flow control or modem control lines to wait for.
func openOutputSerial(path string) (io.Writer, error) {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CRTSCTS
	t.Cflag |= unix.CS8 | unix.CLOCAL
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// Left non-blocking: os.NewFile then puts it in the poller, so writes still wait for the
	// UART (backpressure) but a deadline can end them (Close).
	return serialChannel{os.NewFile(uintptr(fd), path)}, nil
}
