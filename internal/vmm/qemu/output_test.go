package qemu

import (
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/vmm"
)

// TestOutputPortArgs: for a workload with a root process the output channel is a virtio-serial
// port (which init holds, one open per port), not the second UART (which any root process opens).
func TestOutputPortArgs(t *testing.T) {
	spec := vmm.Spec{Kernel: "/k", Accel: "kvm", ConsolePath: "/r/c", APISocket: "/s/a.qmp", OutputSocket: "/s/a.out"}
	got, _ := Args(spec)
	g := strings.Join(got, " ")
	if !strings.Contains(g, " ukernel.output=ttyS1 ") || !strings.Contains(g, "-chardev socket,id=out,path=/s/a.out,server=off -device isa-serial,chardev=out,index=1") {
		t.Errorf("the UART output channel is missing:\n%s", g)
	}
	spec.OutputPort = true
	got, _ = Args(spec)
	g = strings.Join(got, " ")
	if !strings.Contains(g, " ukernel.output=vport ") || strings.Contains(g, "isa-serial") ||
		!strings.Contains(g, "-device virtio-serial-device -chardev socket,id=out,path=/s/a.out,server=off -device virtserialport,chardev=out,name=ukernel.output") {
		t.Errorf("the output channel is not on its virtio-serial port:\n%s", g)
	}
}
