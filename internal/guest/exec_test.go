package guest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// execInit is an init that serves exec sessions on this host (no chroot), its children reaped
// as PID 1 reaps them.
func execInit(t *testing.T, allow bool) *pid1 {
	t.Helper()
	in := &pid1{
		events: NewEmitter(64), sup: NewSupervisor(), log: slog.New(slog.DiscardHandler),
		manifest: &abi.Manifest{Name: "t", Exec: allow, Workdir: "/tmp"}, cfg: &abi.BootConfig{},
	}
	sigchld := make(chan os.Signal, 8)
	signal.Notify(sigchld, syscall.SIGCHLD)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { signal.Stop(sigchld); cancel() })
	go func() {
		for {
			select {
			case <-sigchld:
				in.sup.Reap()
			case <-ctx.Done():
				return
			}
		}
	}()
	return in
}

// host is the host's end of a session channel.
type host struct {
	t *testing.T
	c net.Conn
	r *abi.ExecReader
}

func (h *host) send(msgs ...abi.ExecMsg) {
	h.t.Helper()
	for _, m := range msgs {
		b, err := abi.AppendExec(nil, m)
		if err != nil {
			h.t.Fatal(err)
		}
		if _, err := h.c.Write(b); err != nil {
			h.t.Fatal(err)
		}
	}
}

func (h *host) start(req abi.ExecRequest) {
	h.t.Helper()
	p, err := abi.EncodeExecStart(req)
	if err != nil {
		h.t.Fatal(err)
	}
	h.send(abi.ExecMsg{Type: abi.ExecStart, Payload: p})
}

// until reads the guest's messages up to its exit: what it printed, and the exit code.
func (h *host) until() (out, errOut string, code int, refused string) {
	h.t.Helper()
	_ = h.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		m, err := h.r.Next()
		if err != nil {
			h.t.Fatalf("no exit message: %v (out %q, err %q)", err, out, errOut)
		}
		switch m.Type {
		case abi.ExecStdout:
			out += string(m.Payload)
		case abi.ExecStderr:
			errOut += string(m.Payload)
		case abi.ExecError:
			refused = string(m.Payload)
		case abi.ExecExit:
			return out, errOut, m.Int32(), refused
		}
	}
}

// pair is a buffered, connected pair of sockets, as a port or a vsock connection is.
func pair(t *testing.T) (guest, host net.Conn) {
	t.Helper()
	l, err := net.Listen("unix", t.TempDir()+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	host, err = net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if guest, err = l.Accept(); err != nil {
		t.Fatal(err)
	}
	return guest, host
}

func serve(t *testing.T, in *pid1) *host {
	g, c := pair(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		in.serveExec(g)
	}()
	t.Cleanup(func() {
		c.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the session did not end after its host hung up")
		}
	})
	return &host{t: t, c: c, r: abi.NewExecReader(c)}
}

// TestExecSessions: output and stderr apart, stdin and its end, the exit code; a start request
// that comes before this side saw the last host hang up (a quick reconnect to the same port)
// starts the next session instead of being taken for the last one's input.
func TestExecSessions(t *testing.T) {
	in := execInit(t, true)
	h := serve(t, in)
	h.start(abi.ExecRequest{Argv: []string{"sh", "-c", "read x; echo out:$x; echo err >&2; cat; exit 4"}, Env: []string{"A=1"}})
	h.send(abi.ExecMsg{Type: abi.ExecStdin, Payload: []byte("hello\nrest")}, abi.ExecMsg{Type: abi.ExecStdin})
	if out, errOut, code, _ := h.until(); out != "out:hello\nrest" || errOut != "err\n" || code != 4 {
		t.Errorf("stdout %q, stderr %q, code %d", out, errOut, code)
	}
	h.start(abi.ExecRequest{Argv: []string{"sh", "-c", "echo $A-$PWD"}, Env: []string{"A=2"}})
	if out, _, code, _ := h.until(); out != "2-/tmp\n" || code != 0 {
		t.Errorf("the next session: stdout %q, code %d", out, code)
	}
	h.start(abi.ExecRequest{Argv: []string{"no-such-program"}})
	if _, _, code, refused := h.until(); code != 127 || !strings.Contains(refused, "not found") {
		t.Errorf("a missing program: code %d, %q", code, refused)
	}
}

// TestExecTerminal: a session on a terminal of the guest's devpts, its size set and changed,
// a signal to its foreground job.
func TestExecTerminal(t *testing.T) {
	if _, err := os.Stat("/dev/ptmx"); err != nil {
		t.Skip("no /dev/ptmx")
	}
	in := execInit(t, true)
	h := serve(t, in)
	h.start(abi.ExecRequest{Argv: []string{"sh", "-c", `stty size; trap 'echo winch; stty size' WINCH; trap 'echo int; exit 9' INT; echo ready; while :; do sleep 0.1; done`}, TTY: true, Rows: 30, Cols: 100})
	var seen string
	wait := func(want string) {
		t.Helper()
		_ = h.c.SetReadDeadline(time.Now().Add(20 * time.Second))
		for !strings.Contains(seen, want) {
			m, err := h.r.Next()
			if err != nil {
				t.Fatalf("waiting for %q: %v; seen %q", want, err, seen)
			}
			if m.Type == abi.ExecStdout {
				seen += string(m.Payload)
			}
			if m.Type == abi.ExecExit {
				t.Fatalf("exit %d waiting for %q; seen %q", m.Int32(), want, seen)
			}
		}
	}
	wait("30 100\r\nready\r\n")
	h.send(abi.ExecResizeMsg(40, 120))
	wait("winch\r\n40 120\r\n")
	h.send(abi.ExecMsg{Type: abi.ExecSignal, Payload: []byte{byte(syscall.SIGINT)}})
	wait("int\r\n")
	_, _, code, _ := h.until()
	if code != 9 {
		t.Errorf("code %d, want 9", code)
	}
}

// TestExecRefused: an image that does not allow exec refuses every session with its reason.
func TestExecRefused(t *testing.T) {
	// One init per test: each reaps every child of the process (wait4(-1)), as PID 1 does.
	in := execInit(t, false)
	h := serve(t, in)
	h.start(abi.ExecRequest{Argv: []string{"true"}})
	if _, _, code, refused := h.until(); code != 126 || !strings.Contains(refused, "[debug] shell = true") {
		t.Errorf("code %d, %q", code, refused)
	}
	// The host hung up mid-session: the process gets a hang-up and the session ends.
	in.manifest.Exec = true
	g, c := pair(t)
	done := make(chan struct{})
	go func() { defer close(done); in.serveExec(g) }()
	h = &host{t: t, c: c, r: abi.NewExecReader(c)}
	h.start(abi.ExecRequest{Argv: []string{"sleep", "100"}})
	if m, err := h.r.Next(); err != nil || m.Type != abi.ExecStarted {
		t.Fatalf("%v %v", m, err)
	}
	go io.Copy(io.Discard, c)
	c.Close()
	select {
	case <-done:
	case <-time.After(execHangupGrace + 10*time.Second):
		t.Fatal("the session outlived its host")
	}
}
