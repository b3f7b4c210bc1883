package qemu

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/vmm"
)

func TestExecArgs(t *testing.T) {
	spec := vmm.Spec{Kernel: "/k", Accel: "kvm", ConsolePath: "/r/c", APISocket: "/s/a.qmp", ExecSocket: "/s/a.exec"}
	got, err := Args(spec)
	if err != nil {
		t.Fatal(err)
	}
	g := strings.Join(got, " ")
	for i := range abi.ExecPorts {
		want := fmt.Sprintf("-chardev socket,id=exec%d,path=/s/a.exec%d,server=on,wait=off -device virtserialport,chardev=exec%d,name=ukernel.exec%d", i, i, i, i)
		if !strings.Contains(g, want) {
			t.Errorf("args lack %q:\n%s", want, g)
		}
	}
	if !strings.Contains(g, "-device virtio-serial-device") || !strings.Contains(g, " ukernel.exec_ports=4 ") {
		t.Errorf("args lack the virtio-serial device or the ports' count on the command line:\n%s", g)
	}
	spec.ExecSocket = ""
	got, _ = Args(spec)
	if g := strings.Join(got, " "); strings.Contains(g, "exec") {
		t.Errorf("exec ports without an exec socket:\n%s", g)
	}
}

// TestDialExecTakesFreePorts: each session takes a port of its own, a fifth is refused while
// four run, and a session's end frees its port.
func TestDialExecTakesFreePorts(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "g.exec")
	for i := range abi.ExecPorts {
		l, err := net.Listen("unix", ExecSocket(prefix, i))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
	}
	b := New(nil)
	h := vmm.Handle{Backend: Name, ExecSocket: prefix}
	var conns []net.Conn
	seen := map[string]bool{}
	for range abi.ExecPorts {
		c, err := b.DialExec(context.Background(), h)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		seen[c.RemoteAddr().String()] = true
	}
	if len(seen) != abi.ExecPorts {
		t.Fatalf("sessions share ports: %v", seen)
	}
	if _, err := b.DialExec(context.Background(), h); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a fifth session: %v, want all in use", err)
	}
	conns[2].Close()
	c, err := b.DialExec(context.Background(), h)
	if err != nil {
		t.Fatalf("after a session ended: %v", err)
	}
	if c.RemoteAddr().String() != ExecSocket(prefix, 2) {
		t.Errorf("took %s, want the freed port %s", c.RemoteAddr(), ExecSocket(prefix, 2))
	}
	c.Close()
	for _, c := range conns {
		c.Close()
	}
	if _, err := b.DialExec(context.Background(), vmm.Handle{Backend: Name}); err == nil || !strings.Contains(err.Error(), "restart it") {
		t.Errorf("a guest without exec sockets: %v", err)
	}
}
