package workdir

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// The helper process makes a work directory and a work file, then dies by SIGKILL.
func init() {
	if dir := os.Getenv("WORKDIR_TEST_DIE_IN"); dir != "" {
		if _, err := Mkdir(dir, ".build-tmp-"); err != nil {
			os.Exit(2)
		}
		if _, err := Create(dir, ".x.img.tmp-"); err != nil {
			os.Exit(2)
		}
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n []string
	for _, e := range entries {
		n = append(n, e.Name())
	}
	return n
}

func TestSweepRemovesOnlyWhatDeadProcessesLeft(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	die := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	die.Env = append(os.Environ(), "WORKDIR_TEST_DIE_IN="+dir)
	if err := die.Run(); err == nil || die.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper: %v", err)
	}
	if n := names(t, dir); len(n) != 2 {
		t.Fatalf("the killed helper left %q, want its two work entries", n)
	}

	mine, err := Mkdir(dir, ".build-tmp-")
	if err != nil {
		t.Fatal(err)
	}
	// A running process's entry, and one whose pid now belongs to another process.
	sleep := exec.CommandContext(ctx, "sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer sleep.Process.Kill()
	running := ".build-tmp-" + owner(sleep.Process.Pid) + "123"
	reused := ".build-tmp-" + strconv.Itoa(sleep.Process.Pid) + ".1-123"
	other := "build-tmp-notours"
	for _, n := range []string{running, reused, other, ".build-tmp-garbage"} {
		os.Mkdir(filepath.Join(dir, n), 0o755)
	}

	for _, prefix := range []string{".build-tmp-", ".x.img.tmp-"} {
		if _, err := Sweep(dir, prefix); err != nil {
			t.Fatal(err)
		}
	}
	got := names(t, dir)
	want := []string{filepath.Base(mine), running, other, ".build-tmp-garbage"}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("after Sweep: %q, want %q", got, want)
	}
}
