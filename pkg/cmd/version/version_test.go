package version

import (
	"encoding/json"
	"strings"
	"testing"

	iversion "github.com/ukernel-dev/ukernel/internal/version"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

func TestNewCmdVersion(t *testing.T) {
	info := iversion.Info{Ukernel: "1.2.3", Go: "go1.0", ABI: "9.9"}
	ios, _, _, _ := iostreams.Test()
	var got *Options
	cmd := NewCmdVersion(&cmdutil.Factory{IO: ios, JSON: true}, info, func(o *Options) error { got = o; return nil })
	cmd.SetArgs(nil)
	if err := cmd.Execute(); err != nil || got == nil || got.Info != info || !got.JSON {
		t.Fatalf("version: err %v, options %+v", err, got)
	}
	cmd.SetArgs([]string{"extra"})
	cmd.SetOut(ios.Out)
	cmd.SetErr(ios.ErrOut)
	if err := cmd.Execute(); err == nil {
		t.Error("version extra: no error")
	}
}

func TestRun(t *testing.T) {
	info := iversion.Info{Ukernel: "1.2.3", Go: "go1.0", ABI: "9.9"}
	ios, _, out, _ := iostreams.Test()
	if err := Run(&Options{IO: ios, Info: info}); err != nil || !strings.Contains(out.String(), "1.2.3") {
		t.Errorf("version: err %v, stdout %q", err, out)
	}
	out.Reset()
	var back iversion.Info
	if err := Run(&Options{IO: ios, JSON: true, Info: info}); err != nil || json.Unmarshal(out.Bytes(), &back) != nil || back != info {
		t.Errorf("version --json: err %v, stdout %q", err, out)
	}
}
