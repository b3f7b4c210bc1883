package firecracker

import (
	"context"
	"net"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/vmm"
)

// DialExec opens an exec session over vsock: one connection to the guest's ExecVsockPort per
// session, as many at once as the guest accepts.
func (b *Backend) DialExec(ctx context.Context, h vmm.Handle) (net.Conn, error) {
	return DialVsock(ctx, h.ControlSocket, abi.ExecVsockPort)
}
