package exec_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/runstate"
	execcmd "github.com/ukernel-dev/ukernel/pkg/cmd/exec"
	"github.com/ukernel-dev/ukernel/pkg/cmd/shell"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

func TestNewCmdExec(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	var got *execcmd.Options
	cmd := execcmd.NewCmdExec(&cmdutil.Factory{IO: ios}, func(o *execcmd.Options) error { got = o; return nil })
	cmd.SetArgs([]string{"-t", "-u", "app", "-w", "/tmp", "-e", "A=b c", "-e", "D=", "api", "--", "ls", "-l", "--", "x"})
	if err := cmd.Execute(); err != nil || got == nil {
		t.Fatalf("%v", err)
	}
	if got.Name != "api" || !slices.Equal(got.Argv, []string{"ls", "-l", "--", "x"}) || !got.TTY || got.User != "app" ||
		got.Workdir != "/tmp" || !slices.Equal(got.Env, []string{"A=b c", "D="}) {
		t.Errorf("options %+v", got)
	}
	for _, args := range [][]string{
		{"api", "ls"},            // no --
		{"api", "--"},            // no command
		{"--", "ls"},             // no name
		{"a", "b", "--", "ls"},   // two names
		{"bad/name", "--", "ls"}, // not a guest name
	} {
		cmd := execcmd.NewCmdExec(&cmdutil.Factory{IO: ios}, func(*execcmd.Options) error { t.Fatalf("%v ran", args); return nil })
		cmd.SetArgs(args)
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		if err := cmd.Execute(); cmdutil.ExitCode(err) != 2 {
			t.Errorf("exec %v: exit %d (%v), want 2", args, cmdutil.ExitCode(err), err)
		}
	}
}

func TestNewCmdShell(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	var got *shell.Options
	cmd := shell.NewCmdShell(&cmdutil.Factory{IO: ios}, func(o *shell.Options) error { got = o; return nil })
	cmd.SetArgs([]string{"--user", "app"})
	if err := cmd.Execute(); err != nil || got == nil || got.Name != "" || got.User != "app" {
		t.Fatalf("%+v %v", got, err)
	}
}

// TestExecNotRunning: a guest that is not running is named, with where to look.
func TestExecNotRunning(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	ios, _, _, _ := iostreams.Test()
	cmd := execcmd.NewCmdExec(&cmdutil.Factory{IO: ios}, nil)
	cmd.SetArgs([]string{"gone", "--", "ls"})
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	store, err := runstate.Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Save(&runstate.State{Name: "gone", Owner: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), `"gone" is not running`) {
		t.Fatalf("exec into a stopped guest: %v", err)
	}
}
