package guest

import (
	"bufio"
	"context"
	"io"
	"os"
	"sync"

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
type Output struct {
	mu      sync.Mutex // one frame or line at a time
	w       io.Writer
	framed  bool
	failed  bool       // the channel could not be written: the rest is dropped, never blocks
	keep    []*os.File // write ends held for restarts; closed by Close
	copiers sync.WaitGroup
}

// NewOutput writes frames to channel, or to console when channel is nil.
func NewOutput(channel io.Writer, console io.Writer) *Output {
	if channel == nil {
		return &Output{w: console}
	}
	o := &Output{w: channel, framed: true}
	o.write(abi.Frame{Kind: abi.FrameHello, Data: []byte(abi.Version)})
	return o
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
	o.mu.Lock()
	o.keep = append(o.keep, w)
	o.mu.Unlock()
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
	if o.failed {
		return
	}
	if _, err := o.w.Write(b); err != nil {
		o.failed = true
	}
}

func (o *Output) copyLines(r io.Reader, prefix string) {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
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
// reach the channel (for a serial port: to leave the UART; see openOutputSerial).
func (o *Output) Close(ctx context.Context) {
	o.mu.Lock()
	for _, w := range o.keep {
		w.Close()
	}
	o.keep = nil
	o.mu.Unlock()
	done := make(chan struct{})
	go func() {
		o.copiers.Wait()
		if d, ok := o.w.(interface{ Drain() error }); ok && o.framed {
			_ = d.Drain()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// serialChannel is the output channel on a serial port.
type serialChannel struct{ *os.File }

// Drain waits until the UART has sent what the tty holds: power-off would drop it.
func (s serialChannel) Drain() error { return unix.IoctlSetInt(int(s.Fd()), unix.TCSBRK, 1) }

// openOutputSerial opens the output channel's serial port in raw mode: no newline translation,
// no echo, no modem control lines to wait for.
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
	// Blocking writes: a host that reads slowly slows the workload down rather than lose output.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return serialChannel{os.NewFile(uintptr(fd), path)}, nil
}
