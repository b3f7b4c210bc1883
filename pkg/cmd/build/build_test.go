package build

import (
	"testing"

	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

func TestNewCmdBuild(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	var got *Options
	cmd := NewCmdBuild(&cmdutil.Factory{IO: ios, JSON: true}, func(o *Options) error { got = o; return nil })
	cmd.SetArgs([]string{"--release", "--offline", "--locked", "--target", "shell"})
	if err := cmd.Execute(); err != nil || got == nil || !got.Release || !got.Offline || !got.Locked || got.Target != "shell" || !got.JSON || got.Command != "build" {
		t.Fatalf("build --release --offline --locked --target shell: %v %+v", err, got)
	}
	cmd = NewCmdBuild(&cmdutil.Factory{IO: ios}, func(*Options) error { t.Error("ran with an argument"); return nil })
	cmd.SetArgs([]string{"extra"})
	cmd.SetOut(ios.Out)
	cmd.SetErr(ios.ErrOut)
	if err := cmd.Execute(); err == nil {
		t.Error("build extra: no error")
	}
}
