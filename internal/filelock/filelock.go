// Package filelock is the lock ukernel's commands hold while they change files others read (a
// project, a template): an flock on a file that records who holds it, so the next one to wait
// can say so. The kernel releases an flock when its holder dies, so a killed command never
// leaves a stale lock, and the file itself is never removed (removing an flocked file races
// with lockers).
package filelock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// HeldError is returned when the lock stayed held for the whole wait.
type HeldError struct {
	Path   string
	Holder string // "PID 123 (ukernel env add)", or "another ukernel process" if unrecorded
	Waited time.Duration
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("%s is locked by %s (waited %s)", e.Path, e.Holder, e.Waited.Round(time.Second))
}

// Acquire takes the lock at path for command (e.g. "ukernel template build"), creating the file
// and its directory when needed, and waits for another holder at most wait. waiting, if not
// nil, is called once with the holder when the lock is not free at once. release frees it.
func Acquire(ctx context.Context, path, command string, wait time.Duration, waiting func(holder string)) (release func(), err error) {
	f, err := acquire(ctx, path, syscall.LOCK_EX, wait, waiting)
	if err != nil {
		return nil, err
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

// AcquireShared takes the lock at path shared: any number of shared holders at once, none while
// Acquire's holder has it, which waits for them all. Shared holders are not named in the file
// (they would overwrite each other); a wait for them says "another ukernel process".
func AcquireShared(ctx context.Context, path string, wait time.Duration) (release func(), err error) {
	f, err := acquire(ctx, path, syscall.LOCK_SH, wait, nil)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}

func acquire(ctx context.Context, path string, how int, wait time.Duration, waiting func(holder string)) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	start := time.Now()
	told := false
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if time.Since(start) >= wait {
			f.Close()
			return nil, &HeldError{Path: path, Holder: Holder(path), Waited: time.Since(start)}
		}
		if !told && waiting != nil {
			waiting(Holder(path))
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return f, nil
}

// Holder reads who holds the lock at path.
func Holder(path string) string {
	data, err := os.ReadFile(path)
	if err == nil {
		pid, cmd, _ := strings.Cut(strings.TrimSpace(string(data)), " ")
		if _, err := strconv.Atoi(pid); err == nil && cmd != "" {
			return fmt.Sprintf("PID %s (%s)", pid, cmd)
		}
	}
	return "another ukernel process"
}
