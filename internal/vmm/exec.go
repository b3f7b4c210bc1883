package vmm

import (
	"context"
	"net"
)

// Execer is a backend that opens exec sessions into a running guest (abi.ExecMagic): each
// returned connection carries one session; closing it ends the session and frees its channel.
type Execer interface {
	DialExec(ctx context.Context, h Handle) (net.Conn, error)
}
