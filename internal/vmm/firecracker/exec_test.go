package firecracker

import (
	"bufio"
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/vmm"
)

// TestDialExecOverVsock: a session is a host-initiated vsock connection to the guest's exec
// port, through Firecracker's handshake; the session's messages follow on it. Several at once.
func TestDialExecOverVsock(t *testing.T) {
	uds := filepath.Join(t.TempDir(), "v.sock")
	l, err := net.Listen("unix", uds)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan string, 2)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				line, _ := br.ReadString('\n')
				c.Write([]byte("OK 1073741824\n"))
				m, err := abi.NewExecReader(br).Next()
				if err != nil {
					got <- line + " " + err.Error()
					return
				}
				r, _ := abi.DecodeExecStart(m.Payload)
				got <- line + r.Argv[0]
			}()
		}
	}()
	b := New(nil)
	h := vmm.Handle{Backend: Name, ControlSocket: uds}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, cmd := range []string{"ls", "ps"} {
		c, err := b.DialExec(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		p, _ := abi.EncodeExecStart(abi.ExecRequest{Argv: []string{cmd}})
		msg, _ := abi.AppendExec(nil, abi.ExecMsg{Type: abi.ExecStart, Payload: p})
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]bool{"CONNECT 1027\nls": true, "CONNECT 1027\nps": true}
	for range 2 {
		select {
		case g := <-got:
			if !want[g] {
				t.Errorf("the guest side got %q", g)
			}
			delete(want, g)
		case <-ctx.Done():
			t.Fatal("no session reached the guest side")
		}
	}
}
