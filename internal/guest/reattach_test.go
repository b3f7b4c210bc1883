package guest

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/testenv"
)

// brokenConn is a guest's vsock connection after a restore under Firecracker: the guest's
// driver reset it, so a write fails; Reattach must close it.
type brokenConn struct{ closed bool }

func (c *brokenConn) Write([]byte) (int, error) { return 0, net.ErrClosed }
func (c *brokenConn) Close() error              { c.closed = true; return nil }

// TestEmitterReattach: events written to a channel that breaks (a restore's vsock reset) wait,
// the failed one included, and go to the channel Reattach gives, in order; the old one is
// closed. Close does not wait for a channel that never comes back.
func TestEmitterReattach(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	em := NewEmitter(8)
	old := &brokenConn{}
	em.Attach(old)
	em.Emit(abi.Event{Type: abi.EventHealth, Name: "before"})
	em.Emit(abi.Event{Type: abi.EventHealth, Name: "during"})
	time.Sleep(50 * time.Millisecond) // the writer has met the broken channel
	em.Reattach(w)
	em.Emit(abi.Event{Type: abi.EventReseeded})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	em.Close(ctx)
	w.Close()
	var out bytes.Buffer
	out.ReadFrom(r)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], `"name":"before"`) || !strings.Contains(lines[1], `"name":"during"`) || !strings.Contains(lines[2], `"type":"reseeded"`) {
		t.Errorf("events on the new channel %q", lines)
	}
	if !old.closed {
		t.Error("the broken channel was not closed")
	}

	stuck := NewEmitter(4)
	stuck.Attach(&brokenConn{})
	stuck.Emit(abi.Event{Type: abi.EventHealth})
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	start := time.Now()
	stuck.Close(ctx2)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close waited %v for a channel that never came back", d)
	}
}

// TestOutputReattach: after Reattach the output goes to the new channel, which starts with a
// hello frame as a new channel does, and the old one is closed.
func TestOutputReattach(t *testing.T) {
	var first, second testenv.SyncBuffer
	o := NewOutput(&first, io.Discard)
	old := &brokenConn{}
	o.w = old // the first channel, reset by a restore
	out, _ := o.Pipe("", abi.FrameStdout)
	out.WriteString("lost\n")
	time.Sleep(50 * time.Millisecond)
	if err := o.Reattach(&second); err != nil {
		t.Fatal(err)
	}
	out.WriteString("after the restore\n")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !o.Close(ctx) {
		t.Error("Close reported the output cut")
	}
	if !old.closed {
		t.Error("the old channel was not closed")
	}
	fr := abi.NewFrameReader(strings.NewReader(second.String()))
	hello, err1 := fr.Next()
	line, err2 := fr.Next()
	if err1 != nil || err2 != nil || hello.Kind != abi.FrameHello || string(hello.Data) != abi.Version || line.Kind != abi.FrameStdout || string(line.Data) != "after the restore\n" {
		t.Errorf("new channel: %+v %v, %+v %v", hello, err1, line, err2)
	}
}

// TestControlLinesStop: a stop request on a control connection (virtio-serial port or vsock,
// the same reader) becomes init's stop request; other lines are skipped.
func TestControlLinesStop(t *testing.T) {
	in := &pid1{stopReq: make(chan abi.Control, 1), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	in.controlLines(strings.NewReader("not json\n{\"type\":\"stop\",\"grace_s\":7}\n"))
	select {
	case c := <-in.stopReq:
		if c.GraceS != 7 {
			t.Errorf("stop %+v", c)
		}
	default:
		t.Fatal("no stop request")
	}
}
