package run_test

import (
	"context"
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
		{[]string{"extra"}, "unknown command"},
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
