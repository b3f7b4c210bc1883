package pack

import (
	"testing"

	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

func TestNewCmdPack(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	var got *Options
	cmd := NewCmdPack(&cmdutil.Factory{IO: ios}, func(o *Options) error { got = o; return nil })
	cmd.SetArgs([]string{"--image", "out/x.img", "--readonly", "--release", "--offline", "--locked"})
	if err := cmd.Execute(); err != nil || got == nil || got.Image != "out/x.img" || !got.Readonly || !got.Release || !got.Offline || !got.Locked || got.JSON {
		t.Fatalf("pack --image out/x.img --readonly --release --offline --locked: %v %+v", err, got)
	}
}
