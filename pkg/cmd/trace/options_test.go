package trace

import (
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

func TestNewCmdTrace(t *testing.T) {
	parse := func(args ...string) (*Options, error) {
		ios, _, _, _ := iostreams.Test()
		var got *Options
		cmd := NewCmdTrace(&cmdutil.Factory{IO: ios}, func(o *Options) error { got = o; return nil })
		cmd.SetArgs(args)
		cmd.SetOut(ios.Out)
		cmd.SetErr(ios.ErrOut)
		return got, cmd.Execute()
	}
	if o, err := parse(); err != nil || o.Run != "" || o.Format != FormatTree || o.Output != "" {
		t.Errorf("trace: %v %+v; want the latest run as a tree on stdout", err, o)
	}
	if o, err := parse("r1", "--format", "otlp", "-o", "t.json", "--template", "api"); err != nil || o.Run != "r1" || o.Format != FormatOTLP ||
		o.Output != "t.json" || o.Template != "api" {
		t.Errorf("trace r1 --format otlp -o t.json --template api: %v %+v", err, o)
	}
	if o, err := parse("--format", "svg"); cmdutil.ExitCode(err) != 2 || !strings.Contains(err.Error(), "expected tree, chrome or otlp") || o != nil {
		t.Errorf("trace --format svg: %v; want a usage error before running", err)
	}
}
