package root

import (
	"context"
	"testing"

	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// A second interrupt exits at once only in commands that leave nothing half-done.
func TestInterruptibleCommands(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"ps"}, true},
		{[]string{"stop", "nosuch"}, true},
		{[]string{"env", "show"}, false},
		{[]string{"build"}, false},
	} {
		ios, _, _, _ := iostreams.Test()
		f := &cmdutil.Factory{IO: ios, Dir: t.TempDir()}
		cmd := NewCmdRoot(f, "test")
		cmd.SetArgs(append([]string{"-C", f.Dir}, tc.args...))
		cmd.SetOut(ios.Out)
		cmd.SetErr(ios.ErrOut)
		cmd.ExecuteContext(context.Background()) // outcome beside the point
		if got := f.Interruptible.Load(); got != tc.want {
			t.Errorf("%v: interruptible %v, want %v", tc.args, got, tc.want)
		}
	}
}
