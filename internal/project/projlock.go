package project

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ProjectLockFile is the lock that commands writing a project's files (env add/remove/lock/
// upgrade, build, pack) hold, so two of them never interleave their read-modify-write. It is an
// flock, released when the process dies, and the file is never removed (removing an flocked file
// races with lockers). The generated .gitignore covers .ukernel/.
const ProjectLockFile = StateDir + "/lock"

// LockWaitEnv overrides how long a command waits for another one's project lock (a Go duration).
const LockWaitEnv = "UKERNEL_LOCK_WAIT"

// DefaultLockWait is how long a command waits for the project lock: longer than a usual lock or
// build, short enough that a hung holder is reported rather than waited on for ever.
const DefaultLockWait = 2 * time.Minute

// LockedError is returned when the project lock stayed held for the whole wait.
type LockedError struct {
	Dir    string
	Holder string // "PID 123 (ukernel env add)", or "another ukernel process" if unrecorded
	Waited time.Duration
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("project %s is locked by %s (waited %s): wait for it to finish and try again; if no such process runs, the lock is already free (it dies with its holder)", e.Dir, e.Holder, e.Waited.Round(time.Second))
}

// LockProject takes dir's project lock for command (e.g. "ukernel env add"), waiting for another
// holder at most wait (0: LockWaitEnv or DefaultLockWait). waiting, if not nil, is told once who
// holds it when the lock is not free at once. release frees it.
func LockProject(ctx context.Context, dir, command string, wait time.Duration, waiting io.Writer) (release func(), err error) {
	if wait == 0 {
		wait = DefaultLockWait
		if s := os.Getenv(LockWaitEnv); s != "" {
			if wait, err = time.ParseDuration(s); err != nil || wait < 0 {
				return nil, fmt.Errorf("%s=%q: expected a duration such as 30s or 2m", LockWaitEnv, s)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ConfigFile)); err != nil {
		// Not a project: the command reports that itself, and no .ukernel/ is left behind.
		return func() {}, nil
	}
	path := filepath.Join(dir, ProjectLockFile)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("project lock: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("project lock: %w", err)
	}
	start := time.Now()
	told := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("project lock %s: %w", path, err)
		}
		if time.Since(start) >= wait {
			f.Close()
			return nil, &LockedError{Dir: dir, Holder: holder(path), Waited: time.Since(start)}
		}
		if !told && waiting != nil {
			fmt.Fprintf(waiting, "Waiting for the project lock, held by %s\n", holder(path))
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Who holds it, for the error of the next one to wait; best effort.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(fmt.Sprintf("%d %s\n", os.Getpid(), command)), 0)
	}
	return func() {
		f.Truncate(0)
		f.Close()
	}, nil
}

// holder reads who holds the lock at path.
func holder(path string) string {
	data, err := os.ReadFile(path)
	if err == nil {
		pid, cmd, _ := strings.Cut(strings.TrimSpace(string(data)), " ")
		if _, err := strconv.Atoi(pid); err == nil && cmd != "" {
			return fmt.Sprintf("PID %s (%s)", pid, cmd)
		}
	}
	return "another ukernel process"
}
