package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/vmm"
)

// ExecSocket is the unix socket of the guest's i-th exec port, for exec socket prefix prefix.
func ExecSocket(prefix string, i int) string { return prefix + strconv.Itoa(i) }

// execArgs adds the exec channel's virtio-serial ports: abi.ExecPorts of them, each on a unix
// socket QEMU listens on (one host connection at a time), and tells init how many to wait for.
func execArgs(a []string, spec vmm.Spec, p *passed) []string {
	if spec.ExecSocket == "" {
		return a
	}
	for i := range abi.ExecPorts {
		sock := "path=" + escape(ExecSocket(spec.ExecSocket, i))
		if p != nil {
			sock = "fd=" + p.fd(p.exec[i])
		}
		id := "exec" + strconv.Itoa(i)
		a = append(a, "-chardev", "socket,id="+id+","+sock+",server=on,wait=off",
			"-device", "virtserialport,chardev="+id+",name="+abi.ExecPortName(i))
	}
	return a
}

// execCmdline is the kernel command line word that announces the exec ports.
func execCmdline() string { return fmt.Sprintf("%s=%d", abi.ExecPortsFlag, abi.ExecPorts) }

// DialExec connects to a free exec port of the guest of h. QEMU serves one connection per
// port and would leave a second one waiting unanswered, so a port is taken by an exclusive
// lock on its lock file first: a session that ends, however it ends, frees it.
func (b *Backend) DialExec(ctx context.Context, h vmm.Handle) (net.Conn, error) {
	if h.ExecSocket == "" {
		return nil, errors.New("the guest was started without an exec channel (by an older ukernel): restart it")
	}
	for i := range abi.ExecPorts {
		sock := ExecSocket(h.ExecSocket, i)
		lock, err := os.OpenFile(sock+".flock", os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, fmt.Errorf("exec channel: %w", err)
		}
		if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			lock.Close()
			continue // another session has this port
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", sock)
		if err != nil {
			lock.Close()
			return nil, fmt.Errorf("exec channel %s: %w", sock, err)
		}
		return &lockedConn{Conn: c, lock: lock}, nil
	}
	return nil, fmt.Errorf("all %d exec sessions of the guest are in use: end one first", abi.ExecPorts)
}

// lockedConn is a connection to an exec port that frees the port's lock when closed.
type lockedConn struct {
	net.Conn
	lock *os.File
}

func (c *lockedConn) Close() error {
	err := c.Conn.Close()
	c.lock.Close()
	return err
}
