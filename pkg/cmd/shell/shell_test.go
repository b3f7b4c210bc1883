package shell

import (
	"os"
	"strings"
	"testing"

	"github.com/creack/pty"

	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// A shell gets a guest terminal only for a terminal here: from a pipe or /dev/null the guest's
// terminal would turn the end of input into a ^D its shell may read as a NUL, and never end.
func TestShellTerminalOnlyFromATerminal(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pty here: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, c := range []struct {
		name string
		in   *os.File
		tty  bool
	}{{"terminal", tty, true}, {"/dev/null", null, false}, {"pipe", r, false}} {
		ios, _, _, stderr := iostreams.Test()
		ios.In = c.in
		req := request(&Options{IO: ios, User: "app"})
		if req.TTY != c.tty || req.User != "app" {
			t.Errorf("%s: %+v, want TTY %v", c.name, req, c.tty)
		}
		if said := strings.Contains(stderr.String(), "stdin is not a terminal"); said == c.tty {
			t.Errorf("%s: stderr %q", c.name, stderr)
		}
	}
}
