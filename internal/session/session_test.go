package session

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// guest plays the guest's side of one session on c with script, after reading the request.
func guest(t *testing.T, script func(c net.Conn, r *abi.ExecReader, req abi.ExecRequest)) net.Conn {
	host, g := net.Pipe()
	go func() {
		defer g.Close()
		r := abi.NewExecReader(g)
		m, err := r.Next()
		if err != nil || m.Type != abi.ExecStart {
			t.Errorf("first message %v %v, want a start request", m, err)
			return
		}
		req, err := abi.DecodeExecStart(m.Payload)
		if err != nil {
			t.Error(err)
			return
		}
		script(g, r, req)
	}()
	return host
}

func send(c net.Conn, msgs ...abi.ExecMsg) {
	for _, m := range msgs {
		b, _ := abi.AppendExec(nil, m)
		c.Write(b)
	}
}

// TestSession: the request reaches the guest whole; stdin, a resize and a signal follow it;
// stdout and stderr come back apart; the exit code is the process's.
func TestSession(t *testing.T) {
	got := make(chan string, 1)
	conn := guest(t, func(c net.Conn, r *abi.ExecReader, req abi.ExecRequest) {
		send(c, abi.ExecStartedMsg(42))
		var log []string
		for {
			m, err := r.Next()
			if err != nil {
				break
			}
			switch m.Type {
			case abi.ExecStdin:
				if len(m.Payload) == 0 {
					log = append(log, "eof")
					send(c, abi.ExecMsg{Type: abi.ExecStdout, Payload: []byte("out\n")},
						abi.ExecMsg{Type: abi.ExecStderr, Payload: []byte("err\n")}, abi.ExecExitMsg(7))
				} else {
					log = append(log, "in:"+string(m.Payload))
				}
			case abi.ExecSignal:
				log = append(log, "sig:"+syscall.Signal(m.Payload[0]).String())
			}
		}
		got <- strings.Join(req.Argv, " ") + "|" + req.User + "|" + strings.Join(log, ",")
	})
	var out, errOut bytes.Buffer
	sigs := make(chan syscall.Signal, 1)
	sigs <- syscall.SIGINT
	stdin, feed := io.Pipe()
	go func() {
		time.Sleep(50 * time.Millisecond) // the signal first
		feed.Write([]byte("hi"))
		feed.Close()
	}()
	pid := 0
	code, err := Run(context.Background(), conn, Options{
		Request: abi.ExecRequest{Argv: []string{"cat", "-"}, User: "app"},
		Stdin:   stdin, Stdout: &out, Stderr: &errOut, Signals: sigs,
		Started: func(p int) { pid = p },
	})
	if err != nil || code != 7 || pid != 42 {
		t.Fatalf("code %d, pid %d, err %v; want 7, 42", code, pid, err)
	}
	if out.String() != "out\n" || errOut.String() != "err\n" {
		t.Errorf("stdout %q, stderr %q", out.String(), errOut.String())
	}
	if g := <-got; g != "cat -|app|sig:interrupt,in:hi,eof" {
		t.Errorf("the guest saw %q", g)
	}
}

// TestNoAnswer: a guest whose init has no exec channel never answers; the session fails with
// a reason within its timeout instead of hanging.
func TestNoAnswer(t *testing.T) {
	conn := guest(t, func(c net.Conn, r *abi.ExecReader, _ abi.ExecRequest) {
		io.Copy(io.Discard, c)
	})
	start := time.Now()
	_, err := Run(context.Background(), conn, Options{Request: abi.ExecRequest{Argv: []string{"ls"}}, Timeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "did not answer") || !strings.Contains(err.Error(), "repack") {
		t.Fatalf("err %v, want no answer naming the fix", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
}

// TestRefused: the guest's refusal comes back as its message and code.
func TestRefused(t *testing.T) {
	conn := guest(t, func(c net.Conn, r *abi.ExecReader, _ abi.ExecRequest) {
		send(c, abi.ExecMsg{Type: abi.ExecError, Payload: []byte("image does not allow exec")}, abi.ExecExitMsg(126))
		io.Copy(io.Discard, c)
	})
	_, err := Run(context.Background(), conn, Options{Request: abi.ExecRequest{TTY: true}})
	var re *RefusedError
	if !errors.As(err, &re) || re.Code != 126 || re.Message != "image does not allow exec" {
		t.Fatalf("err %v", err)
	}
}

// TestGuestGone: a guest that ends the session without an exit code (it stopped) is an error,
// and the host's cancellation ends a session at once.
func TestGuestGone(t *testing.T) {
	conn := guest(t, func(c net.Conn, r *abi.ExecReader, _ abi.ExecRequest) {
		send(c, abi.ExecStartedMsg(1), abi.ExecMsg{Type: abi.ExecStdout, Payload: []byte("x")})
	})
	if _, err := Run(context.Background(), conn, Options{Stdout: io.Discard}); err == nil || !strings.Contains(err.Error(), "without an exit code") {
		t.Fatalf("err %v", err)
	}
	conn = guest(t, func(c net.Conn, r *abi.ExecReader, _ abi.ExecRequest) {
		send(c, abi.ExecStartedMsg(1))
		io.Copy(io.Discard, c)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := Run(ctx, conn, Options{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled session: %v", err)
	}
}

// TestInterruptsLeave: without a terminal, Ctrl-C goes to the guest's process; one that
// ignores it (or a guest that no longer answers) is left at the third, with 130.
func TestInterruptsLeave(t *testing.T) {
	sigs := make(chan string, 8)
	started := make(chan struct{})
	conn := guest(t, func(c net.Conn, r *abi.ExecReader, _ abi.ExecRequest) {
		send(c, abi.ExecStartedMsg(9))
		for {
			m, err := r.Next()
			if err != nil {
				close(sigs)
				return
			}
			if m.Type == abi.ExecSignal {
				sigs <- syscall.Signal(m.Payload[0]).String()
			}
		}
	})
	go func() {
		<-started
		for range InterruptsToLeave {
			time.Sleep(100 * time.Millisecond)
			syscall.Kill(syscall.Getpid(), syscall.SIGINT)
		}
	}()
	code, err := Attach(context.Background(), conn, abi.ExecRequest{Argv: []string{"sleep", "1000"}},
		Streams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard}, func(int) { close(started) })
	if code != 130 || !errors.Is(err, ErrLeft) {
		t.Fatalf("code %d, err %v; want 130, ErrLeft", code, err)
	}
	var got []string
	for s := range sigs {
		got = append(got, s)
	}
	if len(got) != InterruptsToLeave-1 || got[0] != "interrupt" {
		t.Errorf("the guest got %v, want %d interrupts", got, InterruptsToLeave-1)
	}
}
