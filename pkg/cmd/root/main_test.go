package root

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/lock"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/version"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"ukernel": func() { os.Exit(Main()) },
	})
}

// TestScripts drives the real ukernel binary through testdata/script/*.txtar.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(e *testscript.Env) error {
			e.Setenv("ABI", regexp.QuoteMeta(abi.Version))
			e.Setenv("GOVERSION", regexp.QuoteMeta(version.Go()))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){"status": cmdStatus},
	})
}

// cmdStatus runs a program and checks its exit code: status CODE PROG ARGS...
func cmdStatus(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: status CODE PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("%s: %v", args[1], err)
	}
	if got != want {
		ts.Fatalf("%s exited %d; want %d", strings.Join(args[1:], " "), got, want)
	}
}

// A reader that stops early (`ukernel env show | head`) ends ukernel quietly: no "broken
// pipe" error, the exit status of a process killed by SIGPIPE (as git's), whatever the command.
func TestClosedStdoutIsQuiet(t *testing.T) {
	dir := t.TempDir()
	env := &project.Env{Base: "python-3.11", Kernel: project.DefaultKernel, System: []string{}, Python: []string{}}
	if err := env.Save(dir); err != nil {
		t.Fatal(err)
	}
	// env show reads the request too: the base from ukernel.toml, the packages from env/ukernel.env.
	if err := os.WriteFile(filepath.Join(dir, project.ConfigFile), []byte("[project]\nname = \"demo\"\nlanguage = \"python\"\nentry = \"src/main.py\"\n[env]\nbase = \"python-3.11\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := &lock.Lock{Version: lock.FormatVersion, Base: env.Base, Request: lock.Request{Base: env.Base, Kernel: env.Kernel, System: []string{}, Python: []string{}}}
	for i := range 2000 { // far more than a pipe buffer holds
		l.Packages = append(l.Packages, lock.Package{Name: "pkg" + strconv.Itoa(i), Version: "1.0-1", Suite: "bookworm", Size: 1000})
	}
	if err := l.Save(dir); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"env", "show"}, {"--json", "env", "show"}, {"version"}, {"--json", "version"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			r.Close() // the reader has gone before ukernel writes
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			// testscript.Main put this test binary on PATH as ukernel.
			cmd := exec.CommandContext(ctx, "ukernel", append([]string{"-C", dir}, args...)...)
			cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+filepath.Join(dir, "cache"))
			cmd.Stdout = w
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err = cmd.Run()
			w.Close()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 141 {
				t.Errorf("exit: %v; want status 141", err)
			}
			if stderr.Len() > 0 {
				t.Errorf("stderr: %q; want nothing", stderr.String())
			}
		})
	}
}
