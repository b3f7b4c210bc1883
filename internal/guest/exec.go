package guest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// The exec channel's guest side (see abi.ExecMagic): each session runs one process in the
// workload's root, on a new pseudo-terminal of the guest's own devpts or on pipes.

// execIdlePoll is how often a virtio-serial exec port whose host side is not connected is
// read again: such a port reads as end-of-file at once, and nothing wakes a reader when a
// host connects.
const execIdlePoll = 200 * time.Millisecond

// execOutputLinger bounds the wait, once a session's process has exited, for the rest of its
// output: a background child that keeps the pipe or terminal open must not hold the session.
const execOutputLinger = time.Second

// execHangupGrace is how long a session's process gets between SIGHUP (its host went away)
// and SIGKILL.
const execHangupGrace = 2 * time.Second

// execChannel is one session's connection: a virtio-serial port or a vsock connection, in the
// runtime's poller, where a write deadline ends a blocked write.
type execChannel interface {
	io.ReadWriter
	SetWriteDeadline(time.Time) error
}

// execPortCount is the number of exec ports the kernel command line announces.
func execPortCount(cmdline string) int {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, abi.ExecPortsFlag+"="); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 && n <= abi.ExecPorts {
				return n
			}
		}
	}
	return 0
}

// servePort serves sessions on a virtio-serial exec port for as long as the guest runs, one
// after another; init holds the port open, so no workload process can.
func (in *pid1) servePort(f *os.File) {
	for {
		in.serveExec(f)
		time.Sleep(execIdlePoll)
	}
}

// acceptExec serves a session on each vsock connection to abi.ExecVsockPort (Firecracker).
func (in *pid1) acceptExec(lfd int) {
	for {
		fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
		if err != nil {
			if err == unix.EINTR || err == unix.ECONNABORTED {
				continue
			}
			in.log.Warn("exec: vsock accept", "err", err)
			return
		}
		go func() {
			f := os.NewFile(uintptr(fd), "vsock-exec")
			defer f.Close()
			in.serveExec(f)
		}()
	}
}

// serveExec reads one connection: a start request runs a session; the connection's end (its
// host hung up, or a port with no host connected) returns.
func (in *pid1) serveExec(ch execChannel) {
	r := abi.NewExecReader(ch)
	for {
		m, err := r.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				in.log.Warn("exec: channel out of step; waiting for the host to reconnect", "err", err)
			}
			return
		}
		for m.Type == abi.ExecStart {
			_ = ch.SetWriteDeadline(time.Time{}) // a past session's hang-up set one
			s := &execSession{in: in, ch: ch, r: r}
			s.run(m.Payload)
			if s.next == nil {
				return
			}
			m = *s.next
		}
	}
}

// execSession is one running session.
type execSession struct {
	in    *pid1
	ch    execChannel
	r     *abi.ExecReader
	wmu   sync.Mutex // one message at a time
	wfail bool
	// next is a start request read in this session: the host hung up and a new one connected
	// to the port before this side saw the hang-up.
	next *abi.ExecMsg
}

// send writes one message; after a failed write the rest are dropped.
func (s *execSession) send(m abi.ExecMsg) {
	b, err := abi.AppendExec(nil, m)
	if err != nil {
		return
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.wfail {
		return
	}
	if _, err := s.ch.Write(b); err != nil {
		s.wfail = true
	}
}

// refuse ends a session that could not start: a message, then the exit code.
func (s *execSession) refuse(code int, format string, args ...any) {
	s.send(abi.ExecMsg{Type: abi.ExecError, Payload: []byte(fmt.Sprintf(format, args...))})
	s.send(abi.ExecExitMsg(code))
	s.drain()
}

// drain reads what the host still sends until it hangs up: a session ends with its host.
func (s *execSession) drain() {
	for {
		m, err := s.r.Next()
		if err != nil {
			return
		}
		if m.Type == abi.ExecStart {
			s.next = &m
			return
		}
	}
}

func (s *execSession) run(payload []byte) {
	in := s.in
	req, err := abi.DecodeExecStart(payload)
	if err != nil {
		s.refuse(126, "%v", err)
		return
	}
	if !in.manifest.Exec {
		s.refuse(126, "image %q does not allow exec: it was packed with --release or --readonly (set [debug] shell = true in ukernel.toml to allow it)", in.manifest.Name)
		return
	}
	u, err := LookupUser(in.manifest.Users, req.User)
	if err != nil {
		s.refuse(126, "%v", err)
		return
	}
	env := map[string]string{}
	for _, kv := range req.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	if req.TTY && env["TERM"] == "" {
		env["TERM"] = "xterm"
	}
	var runEnv map[string]string
	if in.cfg != nil {
		runEnv = in.cfg.Env
	}
	spec := in.procSpec("exec", req.Argv, req.Cwd, u, 0, nil, nil, in.manifest.Env, runEnv, env)
	spec.Env = withTools(spec.Env, in.layout.Root)
	if len(spec.Argv) == 0 {
		spec.Argv = []string{shellOf(u, spec)}
	}
	var (
		master  *os.File
		stdinW  *os.File
		outputs []*os.File // read ends: stdout, stderr (or the terminal's master)
		child   []*os.File // the process's ends, closed here once it has them
	)
	defer func() {
		for _, f := range child {
			f.Close()
		}
	}()
	if req.TTY {
		var slave *os.File
		if master, slave, err = openPTY(req.Rows, req.Cols); err != nil {
			s.refuse(126, "pseudo-terminal: %v", err)
			return
		}
		defer master.Close()
		spec.Stdin, spec.Stdout, spec.Stderr, spec.Ctty = slave, slave, slave, true
		child = append(child, slave)
		outputs = append(outputs, master)
	} else {
		pipes := make([][2]*os.File, 3)
		for i := range pipes {
			r, w, err := os.Pipe()
			if err != nil {
				s.refuse(126, "pipe: %v", err)
				return
			}
			pipes[i] = [2]*os.File{r, w}
		}
		spec.Stdin, stdinW = pipes[0][0], pipes[0][1]
		spec.Stdout, spec.Stderr = pipes[1][1], pipes[2][1]
		child = append(child, pipes[0][0], pipes[1][1], pipes[2][1])
		outputs = append(outputs, pipes[1][0], pipes[2][0])
		defer stdinW.Close()
		defer pipes[1][0].Close()
		defer pipes[2][0].Close()
	}
	p, err := in.sup.Start(spec)
	if err != nil {
		code := 126
		if errors.Is(err, errNotFound) || errors.Is(err, syscall.ENOENT) {
			code = 127
		}
		s.refuse(code, "%v", err)
		return
	}
	for _, f := range child {
		f.Close()
	}
	child = nil
	command := strings.Join(spec.Argv, " ")
	if len(command) > 256 {
		command = command[:256] + "..."
	}
	in.events.Emit(abi.Event{Type: abi.EventExecStart, Name: u.Name, Message: command, PID: p.PID})
	s.send(abi.ExecStartedMsg(p.PID))

	var copies sync.WaitGroup
	for i, f := range outputs {
		kind := byte(abi.ExecStdout)
		if i == 1 {
			kind = abi.ExecStderr
		}
		copies.Add(1)
		go func() {
			defer copies.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := f.Read(buf)
				if n > 0 {
					s.send(abi.ExecMsg{Type: kind, Payload: buf[:n]})
				}
				if err != nil {
					return // EOF, or EIO: the terminal's last holder closed it
				}
			}
		}()
	}
	hostGone := make(chan struct{})
	inputDone := make(chan struct{})
	go func() {
		defer close(inputDone)
		s.input(p, master, stdinW, hostGone)
	}()

	select {
	case <-p.Done():
	case <-hostGone:
		// Nobody reads the session any more: the process gets a hang-up, then a kill.
		_ = s.ch.SetWriteDeadline(time.Unix(1, 0))
		_ = syscall.Kill(-p.PID, syscall.SIGHUP)
		select {
		case <-p.Done():
		case <-time.After(execHangupGrace):
			_ = syscall.Kill(-p.PID, syscall.SIGKILL)
			<-p.Done()
		}
	}
	copied := make(chan struct{})
	go func() { copies.Wait(); close(copied) }()
	select {
	case <-copied:
	case <-time.After(execOutputLinger):
		for _, f := range outputs {
			_ = f.SetReadDeadline(time.Unix(1, 0))
		}
		<-copied
	}
	code := p.Code()
	in.events.Emit(abi.Event{Type: abi.EventExecExit, PID: p.PID, Code: &code})
	s.send(abi.ExecExitMsg(code))
	<-inputDone
}

// input passes the host's messages to the process until the host hangs up (closing hostGone).
// Its stdin is written from a goroutine of its own: a process that does not read it must not
// keep this loop from seeing the host hang up (a few MiB wait for it, then the loop waits for
// the process to read or exit).
func (s *execSession) input(p *Proc, master, stdinW *os.File, hostGone chan struct{}) {
	defer close(hostGone)
	stdin := master
	if stdin == nil {
		stdin = stdinW
	}
	feed := make(chan []byte, 64)
	defer close(feed)
	go func() {
		for b := range feed {
			switch {
			case len(b) > 0:
				_, _ = stdin.Write(b)
			case master != nil:
				_, _ = master.Write([]byte{4}) // end of input on a terminal: its EOF character
			default:
				_ = stdinW.Close()
			}
		}
	}()
	for {
		m, err := s.r.Next()
		if err != nil {
			return
		}
		switch m.Type {
		case abi.ExecStart:
			s.next = &m
			return
		case abi.ExecStdin:
			select {
			case feed <- m.Payload: // empty: the end of input
			case <-p.Done(): // nobody reads it any more
			}
		case abi.ExecResize:
			if master != nil {
				rows, cols := m.Uint16s()
				_ = setWinsize(master, rows, cols)
			}
		case abi.ExecSignal:
			sig := syscall.Signal(m.Payload[0])
			pgid := p.PID
			if fg := foreground(master); fg > 0 {
				pgid = fg // the terminal's foreground job, as a Ctrl-C typed there would
			}
			_ = syscall.Kill(-pgid, sig)
		}
	}
}

// withTools puts abi.ExecToolsDir after the image's own PATH, when the image has it.
func withTools(env []string, root string) []string {
	if _, err := os.Stat(path.Join(root, abi.ExecToolsDir)); err != nil {
		return env
	}
	for i, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			env[i] = "PATH=" + v + ":" + abi.ExecToolsDir
		}
	}
	return env
}

// shellOf is the shell a session without a command runs: the user's own when the image has
// it, else sh from the PATH (the development image's tools have one).
func shellOf(u abi.User, spec Spec) string {
	if u.Shell != "" && path.IsAbs(u.Shell) {
		if fi, err := os.Stat(path.Join(spec.Root, u.Shell)); err == nil && fi.Mode().IsRegular() {
			return u.Shell
		}
	}
	return "sh"
}

// openPTY opens a new pseudo-terminal pair on the guest's devpts, sized rows by cols.
func openPTY(rows, cols uint16) (master, slave *os.File, err error) {
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	master = os.NewFile(uintptr(mfd), "/dev/ptmx")
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("unlock: %w", err)
	}
	n, err := unix.IoctlGetUint32(mfd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("number: %w", err)
	}
	name := "/dev/pts/" + strconv.Itoa(int(n))
	sfd, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	slave = os.NewFile(uintptr(sfd), name)
	if rows > 0 && cols > 0 {
		_ = setWinsize(master, rows, cols)
	}
	return master, slave, nil
}

// foreground is the process group in the foreground of the terminal whose master is f (0: none,
// or no terminal).
func foreground(f *os.File) int {
	if f == nil {
		return 0
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	pgid := 0
	_ = rc.Control(func(fd uintptr) {
		if n, err := unix.IoctlGetInt(int(fd), unix.TIOCGPGRP); err == nil {
			pgid = n
		}
	})
	return pgid
}

func setWinsize(f *os.File, rows, cols uint16) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}); err != nil {
		return err
	}
	return ierr
}
