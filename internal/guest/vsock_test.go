package guest

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestModuleParams(t *testing.T) {
	cl := "console=ttyS0 reboot=k virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6 virtio-blk.foo=1 ukernel.vmm=firecracker"
	if got := ModuleParams(cl, "/lib/modules/6.1.0/kernel/drivers/virtio/virtio_mmio.ko"); got != "device=4K@0xd0000000:5 device=4K@0xd0001000:6" {
		t.Errorf("virtio_mmio: %q", got)
	}
	if got := ModuleParams(cl, "virtio_blk.ko.xz"); got != "foo=1" {
		t.Errorf("virtio_blk: %q", got)
	}
	if got := ModuleParams(cl, "erofs.ko"); got != "" {
		t.Errorf("erofs: %q", got)
	}
}

func TestFirecrackerFlag(t *testing.T) {
	if !underFirecracker("quiet ukernel.vmm=firecracker") || underFirecracker("quiet ukernel.vmm=firecrackerx") {
		t.Fatal("flag detection")
	}
	if powerOffCmd("ukernel.vmm=firecracker") != unix.LINUX_REBOOT_CMD_RESTART || powerOffCmd("quiet") != unix.LINUX_REBOOT_CMD_POWER_OFF {
		t.Fatal("power-off command")
	}
}
