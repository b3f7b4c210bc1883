package perf

import (
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

func TestNewCmdPerf(t *testing.T) {
	parse := func(args ...string) (*Options, error) {
		ios, _, _, _ := iostreams.Test()
		var got *Options
		cmd := NewCmdPerf(&cmdutil.Factory{IO: ios}, func(o *Options) error { got = o; return nil })
		cmd.SetArgs(args)
		cmd.SetOut(ios.Out)
		cmd.SetErr(ios.ErrOut)
		return got, cmd.Execute()
	}
	if o, err := parse(); err != nil || o.Runs != 10 || o.Image != "" || o.SVG != "" || o.Accel != "auto" || o.Timeout != 2*time.Minute || o.Offline {
		t.Errorf("perf: %v %+v; want 10 runs of the project's image", err, o)
	}
	if o, err := parse("--runs", "3", "--image", "dist/a.img", "--svg", "boot.svg", "--accel", "tcg", "--timeout", "30s", "--offline"); err != nil ||
		o.Runs != 3 || o.Image != "dist/a.img" || o.SVG != "boot.svg" || o.Accel != "tcg" || o.Timeout != 30*time.Second || !o.Offline {
		t.Errorf("perf with every flag: %v %+v", err, o)
	}
	if o, err := parse("--runs", "0"); cmdutil.ExitCode(err) != 2 || !strings.Contains(err.Error(), "--runs 0: expected at least 1") || o != nil {
		t.Errorf("perf --runs 0: %v; want a usage error before running", err)
	}
	if o, err := parse("--template", "api", "--image", "a.img"); cmdutil.ExitCode(err) != 2 || !strings.Contains(err.Error(), "exclude each other") || o != nil {
		t.Errorf("perf --template api --image a.img: %v; want a usage error before running", err)
	}
	if o, err := parse("--template", "api@r2"); err != nil || o.Template != "api@r2" {
		t.Errorf("perf --template api@r2: %v %+v", err, o)
	}
}
