package env

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// The env commands' flags and arguments are parsed without locking anything.
func TestNewCmdEnvOptions(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	f := &cmdutil.Factory{IO: ios, Dir: t.TempDir(), JSON: true}
	exec := func(cmd *cobra.Command, args ...string) error {
		cmd.SetArgs(args)
		cmd.SetOut(ios.Out)
		cmd.SetErr(ios.ErrOut)
		return cmd.Execute()
	}

	var add *AddOptions
	if err := exec(NewCmdAdd(f, func(o *AddOptions) error { add = o; return nil }), "--system", "--offline", "libssl", "curl=1"); err != nil ||
		add == nil || !add.System || !add.Offline || add.Locked || !slices.Equal(add.Packages, []string{"libssl", "curl=1"}) || !add.JSON || add.Command != "add" {
		t.Errorf("add --system --offline libssl curl=1: %v %+v", err, add)
	}
	if err := exec(NewCmdAdd(f, func(*AddOptions) error { t.Error("add ran without packages"); return nil })); err == nil || !strings.Contains(err.Error(), "requires at least 1 arg") {
		t.Errorf("add without packages: %v", err)
	}

	var rm *RemoveOptions
	if err := exec(NewCmdRemove(f, func(o *RemoveOptions) error { rm = o; return nil }), "--locked", "six"); err != nil ||
		rm == nil || rm.System || !rm.Locked || !slices.Equal(rm.Packages, []string{"six"}) {
		t.Errorf("remove --locked six: %v %+v", err, rm)
	}

	for _, upgrade := range []bool{false, true} {
		var lk *LockOptions
		if err := exec(NewCmdLock(f, upgrade, func(o *LockOptions) error { lk = o; return nil }), "--locked", "--offline"); err != nil ||
			lk == nil || lk.Upgrade != upgrade || !lk.Locked || !lk.Offline {
			t.Errorf("lock (upgrade %v) --locked --offline: %v %+v", upgrade, err, lk)
		}
	}

	var show *ShowOptions
	if err := exec(NewCmdShow(f, func(o *ShowOptions) error { show = o; return nil })); err != nil || show == nil || !show.JSON {
		t.Errorf("show: %v %+v", err, show)
	}
	if dir, err := show.ProjectDir(); err != nil || dir != f.Dir {
		t.Errorf("show's project directory: %q %v, want %q", dir, err, f.Dir)
	}
}
