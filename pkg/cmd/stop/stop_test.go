package stop_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/pkg/cmd/root"
	"github.com/ukernel-dev/ukernel/pkg/cmd/stop"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// A name that cannot be stopped does not keep stop from the names after it.
func TestStopGoesOnAfterAFailure(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	store, err := runstate.Open()
	if err != nil {
		t.Fatal(err)
	}
	// A stale guest: its owner (a pid that cannot exist) is gone and no VMM was started.
	if err := store.Save(&runstate.State{Name: "stale", Owner: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	ios, _, out, errOut := iostreams.Test()
	f := &cmdutil.Factory{IO: ios, Dir: t.TempDir()}
	cmd := root.NewCmdRoot(f, "test")
	cmd.SetArgs([]string{"stop", "nosuch", "stale"})
	cmd.SetOut(ios.Out)
	cmd.SetErr(ios.ErrOut)
	err = cmd.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), "stop nosuch") || cmdutil.ExitCode(err) != 1 {
		t.Fatalf("stop nosuch stale: exit %d, err %v; want 1 naming nosuch", cmdutil.ExitCode(err), err)
	}
	if !strings.Contains(out.String(), "stale") || !strings.Contains(errOut.String(), "stale was not running") {
		t.Errorf("stale was not handled after nosuch failed: stdout %q, stderr %q", out, errOut)
	}
	if st, err := store.Load("stale"); err != nil || !st.Exited {
		t.Errorf("the stale guest is not recorded as finished (for ps -a): %+v %v", st, err)
	}
}

func TestNewCmdStop(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	var got *stop.Options
	cmd := stop.NewCmdStop(&cmdutil.Factory{IO: ios}, func(o *stop.Options) error { got = o; return nil })
	cmd.SetArgs([]string{"--timeout", "30s", "api", "db"})
	if err := cmd.Execute(); err != nil || got == nil || got.Timeout != 30*time.Second || len(got.Names) != 2 || got.Names[1] != "db" {
		t.Fatalf("stop --timeout 30s api db: %v %+v", err, got)
	}
	for _, args := range [][]string{{"--timeout", "0s", "api"}, {}} {
		cmd := stop.NewCmdStop(&cmdutil.Factory{IO: ios}, func(*stop.Options) error { t.Error("ran"); return nil })
		cmd.SetArgs(args)
		cmd.SetOut(ios.Out)
		cmd.SetErr(ios.ErrOut)
		if err := cmd.Execute(); err == nil {
			t.Errorf("stop %q: no error", args)
		}
	}
}
