package abi

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// The exec channel: `ukernel exec` and `ukernel shell` run a process in a running guest over a
// channel of their own (one session per connection), apart from the events, the control
// requests and the workload's output. Under QEMU it is one of ExecPorts virtio-serial ports
// (one session at a time on each; the host takes a free one), under Firecracker a vsock
// connection to ExecVsockPort (one per session). init holds the ports open from the moment it
// claims them, and a virtio-serial port opens only once: no workload process can read a
// session's input or forge its output and exit code.
//
// A message is a 4-byte header and its payload:
//
//	magic 'X' | type (1 byte) | payload length (2 bytes, big endian) | payload
//
// The host sends ExecStart first, then any of ExecStdin, ExecResize and ExecSignal. The guest
// answers ExecStarted (or ExecError), then ExecStdout and ExecStderr, and ends the session with
// ExecExit, its last message. Integers are big endian; strings are UTF-8 with a 2-byte length.
const (
	ExecMagic = 'X'

	ExecStart   = 'S' // host: ExecRequest (EncodeExecStart)
	ExecStdin   = 'I' // host: bytes for the process's stdin; an empty payload closes it
	ExecResize  = 'R' // host: rows (2 bytes), columns (2 bytes) of the terminal
	ExecSignal  = 'K' // host: a signal number (1 byte) for the process's group
	ExecStarted = 'A' // guest: the process runs; its pid (4 bytes)
	ExecStdout  = 'O' // guest: bytes the process wrote to stdout (with a terminal: everything)
	ExecStderr  = 'E' // guest: bytes the process wrote to stderr
	ExecError   = 'F' // guest: why the session could not start (a message), ExecExit follows
	ExecExit    = 'Z' // guest: the exit code (4 bytes, signed; 128+N for a signal N)

	// MaxExecPayload bounds a message's payload; longer data goes in several messages.
	MaxExecPayload = 1<<16 - 1
	execHeader     = 4

	// ExecPorts is how many sessions QEMU's guest serves at once: one virtio-serial port each,
	// named ExecPortName(i).
	ExecPorts = 4
	// ExecPortsFlag on the kernel command line, as ExecPortsFlag=N, tells init how many exec
	// ports the VMM offers, so it waits for each and no longer.
	ExecPortsFlag = "ukernel.exec_ports"
	// ExecVsockPort is where the guest listens for sessions under Firecracker.
	ExecVsockPort = 1027
	// Events of a session in the run's log: EventExecStart names the user (Name), the command
	// (Message) and the process (PID); EventExecExit the process and its Code.
	EventExecStart = "exec.start"
	EventExecExit  = "exec.exit"
	// ExecToolsDir holds the development image's static tools (busybox and its applets), put
	// after the image's own PATH in a session.
	ExecToolsDir = "/usr/lib/ukernel/tools"
)

// ExecPortName names the i-th virtio-serial port of the exec channel.
func ExecPortName(i int) string { return fmt.Sprintf("ukernel.exec%d", i) }

// ExecRequest is what a session runs: ExecStart's payload.
type ExecRequest struct {
	Argv []string // the command; empty: the user's shell
	Env  []string // KEY=VALUE, on top of the session's defaults
	Cwd  string   // "": the workload's directory
	User string   // "": root
	TTY  bool     // run on a new pseudo-terminal (stdout carries everything)
	Rows uint16   // the terminal's size, with TTY
	Cols uint16
}

// ExecMsg is one message of the exec channel.
type ExecMsg struct {
	Type    byte
	Payload []byte
}

// ErrBadExec is a message that cannot be read: the stream is out of step or corrupt.
var ErrBadExec = errors.New("exec channel: bad message")

func knownExecType(t byte) bool {
	switch t {
	case ExecStart, ExecStdin, ExecResize, ExecSignal, ExecStarted, ExecStdout, ExecStderr, ExecError, ExecExit:
		return true
	}
	return false
}

// fixedExecLen is the payload length of the types whose payload has a fixed size (-1: any).
func fixedExecLen(t byte) int {
	switch t {
	case ExecResize, ExecStarted, ExecExit:
		return 4
	case ExecSignal:
		return 1
	}
	return -1
}

// AppendExec appends m to dst as one message, or, for data (stdin, stdout, stderr) longer than
// MaxExecPayload, as several. An empty stdin message is the end of stdin.
func AppendExec(dst []byte, m ExecMsg) ([]byte, error) {
	if !knownExecType(m.Type) {
		return dst, fmt.Errorf("exec message: unknown type %q", m.Type)
	}
	if n := fixedExecLen(m.Type); n >= 0 && len(m.Payload) != n {
		return dst, fmt.Errorf("exec message %q: payload of %d bytes, want %d", m.Type, len(m.Payload), n)
	}
	split := m.Type == ExecStdin || m.Type == ExecStdout || m.Type == ExecStderr
	if !split && len(m.Payload) > MaxExecPayload {
		return dst, fmt.Errorf("exec message %q: payload of %d bytes; at most %d", m.Type, len(m.Payload), MaxExecPayload)
	}
	p := m.Payload
	for {
		n := min(len(p), MaxExecPayload)
		dst = append(dst, ExecMagic, m.Type)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
		dst = append(dst, p[:n]...)
		p = p[n:]
		if len(p) == 0 {
			return dst, nil
		}
	}
}

// ExecReader reads messages from a stream.
type ExecReader struct {
	r   *bufio.Reader
	hdr [execHeader]byte
}

// NewExecReader reads messages from r.
func NewExecReader(r io.Reader) *ExecReader {
	return &ExecReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// Next returns the next message; its payload is a new slice. A clean end of the stream gives
// io.EOF, one inside a message io.ErrUnexpectedEOF, anything else that is not a message
// ErrBadExec (nothing after it can be trusted to be in step).
func (er *ExecReader) Next() (ExecMsg, error) {
	if _, err := io.ReadFull(er.r, er.hdr[:]); err != nil {
		return ExecMsg{}, err
	}
	h := er.hdr
	if h[0] != ExecMagic {
		return ExecMsg{}, fmt.Errorf("%w: byte 0x%02x where a message starts", ErrBadExec, h[0])
	}
	if !knownExecType(h[1]) {
		return ExecMsg{}, fmt.Errorf("%w: unknown type 0x%02x", ErrBadExec, h[1])
	}
	n := int(binary.BigEndian.Uint16(h[2:4]))
	if want := fixedExecLen(h[1]); want >= 0 && n != want {
		return ExecMsg{}, fmt.Errorf("%w: %q message of %d bytes, want %d", ErrBadExec, h[1], n, want)
	}
	m := ExecMsg{Type: h[1]}
	if n > 0 {
		m.Payload = make([]byte, n)
		if _, err := io.ReadFull(er.r, m.Payload); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return ExecMsg{}, err
		}
	}
	return m, nil
}

// maxExecStrings bounds argv and env of an ExecRequest (which must fit one message anyway).
const maxExecStrings = 1024

// EncodeExecStart is ExecStart's payload for r: flags (1 byte: bit 0 TTY), rows, columns
// (2 bytes each), then the strings cwd, user, then argv and env, each a count (2 bytes) and
// that many strings.
func EncodeExecStart(r ExecRequest) ([]byte, error) {
	b := []byte{0}
	if r.TTY {
		b[0] = 1
	}
	b = binary.BigEndian.AppendUint16(b, r.Rows)
	b = binary.BigEndian.AppendUint16(b, r.Cols)
	var err error
	str := func(s string) {
		if err == nil && (len(s) > MaxExecPayload || !utf8.ValidString(s)) {
			err = fmt.Errorf("exec request: %q is not a UTF-8 string of at most %d bytes", truncate(s, 40), MaxExecPayload)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	str(r.Cwd)
	str(r.User)
	for _, list := range [][]string{r.Argv, r.Env} {
		if len(list) > maxExecStrings {
			return nil, fmt.Errorf("exec request: %d strings; at most %d", len(list), maxExecStrings)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(list)))
		for _, s := range list {
			str(s)
		}
	}
	if err != nil {
		return nil, err
	}
	if len(b) > MaxExecPayload {
		return nil, fmt.Errorf("exec request of %d bytes (command and environment); at most %d", len(b), MaxExecPayload)
	}
	return b, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// DecodeExecStart reads ExecStart's payload. Every byte must be accounted for.
func DecodeExecStart(p []byte) (ExecRequest, error) {
	bad := func(what string) (ExecRequest, error) {
		return ExecRequest{}, fmt.Errorf("%w: start request: %s", ErrBadExec, what)
	}
	if len(p) < 5 {
		return bad("shorter than its fixed part")
	}
	if p[0]&^1 != 0 {
		return bad(fmt.Sprintf("unknown flags 0x%02x", p[0]))
	}
	r := ExecRequest{TTY: p[0]&1 != 0, Rows: binary.BigEndian.Uint16(p[1:3]), Cols: binary.BigEndian.Uint16(p[3:5])}
	p = p[5:]
	u16 := func() (int, bool) {
		if len(p) < 2 {
			return 0, false
		}
		n := int(binary.BigEndian.Uint16(p))
		p = p[2:]
		return n, true
	}
	str := func() (string, bool) {
		n, ok := u16()
		if !ok || len(p) < n || !utf8.Valid(p[:n]) {
			return "", false
		}
		s := string(p[:n])
		p = p[n:]
		return s, true
	}
	var ok bool
	if r.Cwd, ok = str(); !ok {
		return bad("cut short in cwd")
	}
	if r.User, ok = str(); !ok {
		return bad("cut short in user")
	}
	for _, list := range []*[]string{&r.Argv, &r.Env} {
		n, ok := u16()
		if !ok || n > maxExecStrings {
			return bad("bad string count")
		}
		for range n {
			s, ok := str()
			if !ok {
				return bad("cut short in a string")
			}
			*list = append(*list, s)
		}
	}
	if len(p) != 0 {
		return bad(fmt.Sprintf("%d bytes after its end", len(p)))
	}
	return r, nil
}

// ExecResizeMsg is the resize message for a terminal of rows by cols.
func ExecResizeMsg(rows, cols uint16) ExecMsg {
	return ExecMsg{Type: ExecResize, Payload: binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, rows), cols)}
}

// ExecExitMsg is the exit message for code.
func ExecExitMsg(code int) ExecMsg {
	return ExecMsg{Type: ExecExit, Payload: binary.BigEndian.AppendUint32(nil, uint32(int32(code)))}
}

// ExecStartedMsg is the started message for the process pid.
func ExecStartedMsg(pid int) ExecMsg {
	return ExecMsg{Type: ExecStarted, Payload: binary.BigEndian.AppendUint32(nil, uint32(pid))}
}

// Uint16s reads a resize message's rows and columns; Int32 an exit or started message's number.
func (m ExecMsg) Uint16s() (uint16, uint16) {
	if len(m.Payload) != 4 {
		return 0, 0
	}
	return binary.BigEndian.Uint16(m.Payload), binary.BigEndian.Uint16(m.Payload[2:])
}

// Int32 is the number an exit or started message carries.
func (m ExecMsg) Int32() int {
	if len(m.Payload) != 4 {
		return 0
	}
	return int(int32(binary.BigEndian.Uint32(m.Payload)))
}
