package diff

import (
	"testing"

	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

func TestNewCmdDiff(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	var got *Options
	cmd := NewCmdDiff(&cmdutil.Factory{IO: ios}, func(o *Options) error { got = o; return nil })
	cmd.SetArgs([]string{"--exit-code", "old.lock", "env/ukernel.lock"})
	if err := cmd.Execute(); err != nil || got == nil || got.A != "old.lock" || got.B != "env/ukernel.lock" || !got.ExitCode {
		t.Fatalf("diff --exit-code old.lock env/ukernel.lock: %v %+v", err, got)
	}
	cmd = NewCmdDiff(&cmdutil.Factory{IO: ios}, func(*Options) error { t.Error("ran with one argument"); return nil })
	cmd.SetArgs([]string{"a.img"})
	cmd.SetOut(ios.Out)
	cmd.SetErr(ios.ErrOut)
	if err := cmd.Execute(); err == nil {
		t.Error("diff a.img: no error")
	}
}
