package runstate

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStoreLockHasDeadline: a holder of the store's lock that never lets it go (stopped, as by
// Ctrl-Z, or stuck) makes the next run's Reserve fail within the lock's wait, naming the holder,
// instead of waiting for ever. The holder is this test binary, re-executed, stopped while it
// holds the lock.
func TestStoreLockHasDeadline(t *testing.T) {
	if dir := os.Getenv("UKT_LOCK_HELPER"); dir != "" {
		s, err := OpenAt(dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.lock("held"); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(dir+"/held", nil, 0o600)
		syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		return
	}
	dir := t.TempDir()
	s, err := OpenAt(dir)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestStoreLockHasDeadline$")
	cmd.Env = append(os.Environ(), "UKT_LOCK_HELPER="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(dir + "/held"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the holder never took the lock")
		}
	}
	saved := lockWait
	lockWait = time.Second
	defer func() { lockWait = saved }()
	done := make(chan error, 1)
	go func() { done <- s.Reserve("web") }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "locked by PID") {
			t.Errorf("Reserve under a held store lock: %v, want an error naming the holder", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Reserve still waits for the store's lock 15s later (its wait is 1s)")
	}
}
