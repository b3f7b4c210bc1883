package abi

import "time"

// FirecrackerFlag is what the Firecracker backend puts on the kernel command line: that VMM has
// no virtio-serial (events and control go over vsock) and no power-off (the guest resets).
const FirecrackerFlag = "ukernel.vmm=firecracker"

// DefaultStopGrace is how long a workload gets to stop by itself (SIGTERM to SIGKILL) when the
// host names no grace: run's --stop-timeout and stop's --timeout default to it, and the guest
// gives it to a stop request that carries none.
const DefaultStopGrace = 10 * time.Second

// UserNetwork is the guest's network under the VMM's user-mode network (NetUser): QEMU's fixed
// addresses for its one guest (slirp: guest 10.0.2.15, gateway 10.0.2.2, DNS 10.0.2.3).
func UserNetwork() Network {
	return Network{Mode: string(NetUser), Address: "10.0.2.15/24", Gateway: "10.0.2.2", DNS: []string{"10.0.2.3"}}
}
