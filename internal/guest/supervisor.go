package guest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Spec says how to start one workload process (the entry or, later, a service).
type Spec struct {
	Name       string   // "entry" or the service's name, for messages and events
	Argv       []string // argv[0] without a slash is looked up in PATH inside Root
	Env        []string
	Dir        string   // working directory inside Root
	Root       string   // directory the process is chrooted into
	Stdin      *os.File // nil: /dev/null
	Stdout     *os.File
	Stderr     *os.File
	Ctty       bool                // Stdin is a terminal to make the process's controlling terminal
	Credential *syscall.Credential // nil: root
	NoNewPrivs bool                // set PR_SET_NO_NEW_PRIVS before exec
}

// Proc is a started process. Its exit status is delivered by the Supervisor's reaper.
type Proc struct {
	Name   string
	PID    int
	done   chan struct{}
	status syscall.WaitStatus
}

// Done is closed when the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Code is the process's exit code (see ExitCode); valid once Done is closed.
func (p *Proc) Code() int { return ExitCode(p.status) }

// Supervisor starts workload processes and, as PID 1 must, reaps every child, including orphans
// that were reparented to it. One reaper owns wait4, so no exit status is stolen: statuses of
// known processes go to their Proc, others are discarded.
type Supervisor struct {
	mu    sync.Mutex // held across fork+register and across reaping, so a fast exit is never missed
	procs map[int]*Proc
}

// NewSupervisor returns an empty supervisor. Call Reap whenever SIGCHLD arrives.
func NewSupervisor() *Supervisor {
	return &Supervisor{procs: make(map[int]*Proc)}
}

// Start starts spec in its own session and process group. Errors name the program, root and
// working directory; the caller says which process it was.
func (s *Supervisor) Start(spec Spec) (*Proc, error) {
	if len(spec.Argv) == 0 {
		return nil, errors.New("empty command")
	}
	argv0, err := lookPath(spec.Root, spec.Argv[0], spec.Env)
	if err != nil {
		return nil, err
	}
	// exec reports a missing working directory as ENOENT, which reads like a missing program.
	if spec.Dir != "" {
		if err := dirInRoot(spec.Root, spec.Dir); err != nil {
			return nil, fmt.Errorf("working directory %s in the image: %w", spec.Dir, err)
		}
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	attr := &syscall.ProcAttr{
		Dir:   spec.Dir,
		Env:   spec.Env,
		Files: []uintptr{fdOr(spec.Stdin, devnull), fdOr(spec.Stdout, os.Stdout), fdOr(spec.Stderr, os.Stderr)},
		Sys:   &syscall.SysProcAttr{Chroot: spec.Root, Setsid: true, Setctty: spec.Ctty, Credential: spec.Credential},
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	var pid int
	if spec.NoNewPrivs {
		pid, err = forkExecNoNewPrivs(argv0, spec.Argv, attr)
	} else {
		pid, err = syscall.ForkExec(argv0, spec.Argv, attr)
	}
	if err != nil {
		return nil, fmt.Errorf("exec %s in root %s, cwd %s: %w", argv0, spec.Root, spec.Dir, err)
	}
	p := &Proc{Name: spec.Name, PID: pid, done: make(chan struct{})}
	s.procs[pid] = p
	return p, nil
}

func fdOr(f, def *os.File) uintptr {
	if f != nil {
		return f.Fd()
	}
	return def.Fd()
}

// forkExecNoNewPrivs forks from a thread that has no_new_privs set; the flag is per thread and
// inherited by the child. The thread is never unlocked, so the Go runtime discards it afterwards
// instead of reusing a restricted thread.
func forkExecNoNewPrivs(argv0 string, argv []string, attr *syscall.ProcAttr) (int, error) {
	type result struct {
		pid int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			ch <- result{err: fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)}
			return
		}
		pid, err := syscall.ForkExec(argv0, argv, attr)
		ch <- result{pid, err}
	}()
	r := <-ch
	return r.pid, r.err
}

// dirInRoot checks that dir is a directory under root, resolving symlinks the way the process
// chrooted there will (an absolute link stays inside root).
func dirInRoot(root, dir string) error {
	if root == "" {
		root = "/"
	}
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(rfd)
	fd, err := unix.Openat2(rfd, dir, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// errNotFound is a command name lookPath finds nowhere (exec answers 127, as a shell does).
var errNotFound = errors.New("not found")

// lookPath resolves a command name the way a shell would, but inside root.
func lookPath(root, name string, env []string) (string, error) {
	if name == "" {
		return "", errors.New("empty command name")
	}
	if strings.Contains(name, "/") {
		return name, nil
	}
	pathVar := BasePath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathVar = v
		}
	}
	for _, dir := range filepath.SplitList(pathVar) {
		if dir == "" || dir[0] != '/' {
			continue
		}
		p := path.Join(dir, name)
		if fi, err := os.Stat(path.Join(root, p)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w in PATH %s of the root filesystem", name, errNotFound, pathVar)
}

// Reap collects every exited child without blocking and delivers known processes' statuses.
func (s *Supervisor) Reap() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if p, ok := s.procs[pid]; ok {
			p.status = ws
			delete(s.procs, pid)
			close(p.done)
		}
	}
}

// Running lists the processes that have not exited yet.
func (s *Supervisor) Running() []*Proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Proc, 0, len(s.procs))
	for _, p := range s.procs {
		out = append(out, p)
	}
	return out
}

// Signal sends sig to the process group of every running process.
func (s *Supervisor) Signal(sig syscall.Signal) {
	for _, p := range s.Running() {
		_ = syscall.Kill(-p.PID, sig)
	}
}

// Stop asks every process to end with SIGTERM and kills what is left with SIGKILL after grace.
// It returns once all have been reaped or ctx ends.
func (s *Supervisor) Stop(ctx context.Context, grace time.Duration) {
	procs := s.Running()
	s.Signal(syscall.SIGTERM)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	for _, p := range procs {
		select {
		case <-p.Done():
			continue
		case <-timer.C:
		case <-ctx.Done():
			return
		}
		s.Signal(syscall.SIGKILL)
		break
	}
	for _, p := range procs {
		select {
		case <-p.Done():
		case <-ctx.Done():
			return
		}
	}
}
