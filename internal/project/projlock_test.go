package project

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLockProject(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte("[project]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	release, err := LockProject(ctx, dir, "ukernel env add", time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	var waiting strings.Builder
	start := time.Now()
	_, err = LockProject(ctx, dir, "ukernel build", 300*time.Millisecond, &waiting)
	var locked *LockedError
	want := fmt.Sprintf("locked by PID %d (ukernel env add)", os.Getpid())
	if !errors.As(err, &locked) || !strings.Contains(err.Error(), want) || time.Since(start) > 5*time.Second {
		t.Fatalf("second locker: %v after %v, want %q", err, time.Since(start), want)
	}
	if !strings.Contains(waiting.String(), "held by PID") {
		t.Errorf("no waiting line: %q", waiting.String())
	}
	// Freed while another waits: the waiter gets it.
	go func() { time.Sleep(200 * time.Millisecond); release() }()
	release2, err := LockProject(ctx, dir, "ukernel build", 10*time.Second, nil)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	release2()

	// Not a project: nothing is created.
	other := t.TempDir()
	r, err := LockProject(ctx, other, "ukernel build", time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	r()
	if _, err := os.Stat(filepath.Join(other, StateDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a lock in a directory without %s created %s: %v", ConfigFile, StateDir, err)
	}
}
