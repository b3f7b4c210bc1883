package run_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/pkg/cmd/root"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// TestRunFlagErrors: bad flags are usage errors (exit 2) found before any build or boot.
func TestRunFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--vcpu", "99"}, "--vcpu 99 is out of range"},
		{[]string{"--memory", "10"}, "--memory 10 is out of range"},
		{[]string{"--publish", "80"}, "expected HOST:GUEST"},
		{[]string{"--publish", "0:80"}, "expected 1-65535"},
		{[]string{"--net", "bridge"}, "not a network mode"},
		{[]string{"--accel", "hvf"}, "expected auto, kvm or tcg"},
		{[]string{"--backend", "xen"}, "expected auto, firecracker or qemu"},
		{[]string{"--stop-timeout", "0s"}, "--stop-timeout must be positive"},
		{[]string{"extra"}, `run takes no arguments, got "extra"`},
	} {
		ios, _, _, _ := iostreams.Test()
		f := &cmdutil.Factory{IO: ios, Dir: t.TempDir()}
		cmd := root.NewCmdRoot(f, "test")
		cmd.SetArgs(append([]string{"-C", f.Dir, "run"}, tc.args...))
		cmd.SetOut(ios.Out)
		cmd.SetErr(ios.ErrOut)
		err := cmd.ExecuteContext(context.Background())
		if code := cmdutil.ExitCode(err); code != 2 || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %v: exit %d, err %v; want 2 and %q", tc.args, code, err, tc.want)
		}
	}
}

// TestRunBackendPrecheck: an explicit backend that cannot run what was asked is refused before
// any build (the directory has no project: a build would fail on that instead), with the words
// the backend choice uses at start.
func TestRunBackendPrecheck(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "firecracker"), []byte("#!/bin/sh\necho Firecracker v1.7.0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		args []string
		want string
	}{
		{t.TempDir(), []string{"--backend", "firecracker"}, "--backend firecracker: firecracker not found on PATH: install"},
		{bin, []string{"--backend", "firecracker", "--accel", "tcg"}, "--backend firecracker runs only under KVM, not --accel tcg"},
		{bin, []string{"--backend", "firecracker", "--net", "user"}, "--backend firecracker: firecracker has no user-mode networking"},
	} {
		t.Setenv("PATH", tc.path)
		ios, _, _, _ := iostreams.Test()
		f := &cmdutil.Factory{IO: ios, Dir: t.TempDir()}
		cmd := root.NewCmdRoot(f, "test")
		cmd.SetArgs(append([]string{"-C", f.Dir, "run"}, tc.args...))
		cmd.SetOut(ios.Out)
		cmd.SetErr(ios.ErrOut)
		err := cmd.ExecuteContext(context.Background())
		if code := cmdutil.ExitCode(err); code != 125 || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %v: exit %d, err %v; want 125 and %q", tc.args, code, err, tc.want)
		}
	}
}
