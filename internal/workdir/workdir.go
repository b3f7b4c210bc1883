// Package workdir makes the temporary files and directories a step works in beside its output
// (a build's staging tree, a pack's work directory, an unpacked kernel before its rename) under
// names that record their owner: the process id and its start time. A process killed with
// SIGKILL cannot remove its own; the next one that works in the same place calls Sweep, which
// removes those whose owner is gone and never one of a process still running.
package workdir

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// owner is "<pid>.<start>-", start being the process's start time in clock ticks since boot
// (field 22 of /proc/PID/stat): with it, a pid reused by another process does not keep a dead
// owner's leftovers alive forever.
func owner(pid int) string {
	return strconv.Itoa(pid) + "." + strconv.FormatUint(startTime(pid), 10) + "-"
}

// startTime returns the start time of process pid, or 0 when it cannot be read.
func startTime(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces or parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state); the start time is field 22.
	if len(fields) < 20 {
		return 0
	}
	n, _ := strconv.ParseUint(fields[19], 10, 64)
	return n
}

// Mkdir creates a new directory in dir named prefix, the owner and a random suffix.
func Mkdir(dir, prefix string) (string, error) {
	return os.MkdirTemp(dir, prefix+owner(os.Getpid()))
}

// Create creates a new file in dir named prefix, the owner and a random suffix, opened for
// reading and writing.
func Create(dir, prefix string) (*os.File, error) {
	return os.CreateTemp(dir, prefix+owner(os.Getpid()))
}

// Sweep removes the entries of dir that Mkdir or Create made with prefix for a process that is
// no longer running, and returns how many it removed. Entries of a running process, of another
// user's process, or whose name does not record an owner are kept.
func Sweep(dir, prefix string) (int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var removed int
	var errs []error
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		own, _, ok := strings.Cut(rest, "-")
		pidText, startText, ok2 := strings.Cut(own, ".")
		pid, err1 := strconv.Atoi(pidText)
		start, err2 := strconv.ParseUint(startText, 10, 64)
		if !ok || !ok2 || err1 != nil || err2 != nil || pid <= 0 || alive(pid, start) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, fmt.Errorf("removing what a dead process left: %w", err))
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
}

// alive tells whether process pid, started at start, may still be running.
func alive(pid int, start uint64) bool {
	if pid == os.Getpid() {
		return true
	}
	err := syscall.Kill(pid, 0)
	if errors.Is(err, syscall.ESRCH) {
		return false
	}
	// Running (or another user's: EPERM). A start time that differs is a reused pid; one that
	// cannot be read proves nothing.
	if now := startTime(pid); now != 0 && start != 0 && now != start {
		return false
	}
	return true
}

// DieWithParent makes cmd, a tool that writes into a work directory, get SIGKILL when ukernel
// dies, so that it stops writing there: a killed ukernel's orphaned mkfs would otherwise go on
// writing into a directory the next ukernel is removing.
func DieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
