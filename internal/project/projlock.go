package project

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ukernel-dev/ukernel/internal/filelock"
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
	var tell func(string)
	if waiting != nil {
		tell = func(holder string) { fmt.Fprintf(waiting, "Waiting for the project lock, held by %s\n", holder) }
	}
	release, err = filelock.Acquire(ctx, filepath.Join(dir, ProjectLockFile), command, wait, tell)
	var held *filelock.HeldError
	if errors.As(err, &held) {
		return nil, &LockedError{Dir: dir, Holder: held.Holder, Waited: held.Waited}
	}
	if err != nil {
		return nil, fmt.Errorf("project %w", err)
	}
	return release, nil
}
