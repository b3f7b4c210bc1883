package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

var (
	cmdlineOnce sync.Once
	cmdline     string
)

// kernelCmdline returns /proc/cmdline ("" before /proc is mounted, or on error).
func kernelCmdline() string {
	cmdlineOnce.Do(func() {
		if b, err := os.ReadFile("/proc/cmdline"); err == nil {
			cmdline = strings.TrimSpace(string(b))
		}
	})
	return cmdline
}

// underFirecracker reports whether the kernel command line carries abi.FirecrackerFlag.
func underFirecracker(cmdline string) bool {
	for _, f := range strings.Fields(cmdline) {
		if f == abi.FirecrackerFlag {
			return true
		}
	}
	return false
}

// powerOffCmd is the reboot(2) command that ends the VM: Firecracker exits when the guest
// resets (reboot=k), while power-off would leave it running with halted vCPUs.
func powerOffCmd(cmdline string) int {
	if underFirecracker(cmdline) {
		return unix.LINUX_REBOOT_CMD_RESTART
	}
	return unix.LINUX_REBOOT_CMD_POWER_OFF
}

// ModuleParams returns the parameters for the module in file given on the kernel command line
// as <module>.<param>=<value>. The kernel applies those only to built-in code; for a loadable
// module the loader passes them (modprobe does). Firecracker declares its virtio-mmio devices
// this way (virtio_mmio.device=4K@0xd0000000:5), so virtio_mmio needs them to find any device.
func ModuleParams(cmdline, file string) string {
	name := filepath.Base(file)
	if i := strings.Index(name, ".ko"); i >= 0 {
		name = name[:i]
	}
	name = strings.ReplaceAll(name, "-", "_")
	var params []string
	for _, f := range strings.Fields(cmdline) {
		mod, param, ok := strings.Cut(f, ".")
		if ok && strings.ReplaceAll(mod, "-", "_") == name && param != "" {
			params = append(params, param)
		}
	}
	return strings.Join(params, " ")
}

// DialHostVsock connects to the host (CID 2) on port over AF_VSOCK.
func DialHostVsock(port uint32) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("vsock socket: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_HOST, Port: port}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vsock connect to host port %d: %w", port, err)
	}
	// In the runtime's poller, where a write deadline can end a write the host does not take.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vsock host port %d: %w", port, err)
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("vsock:2:%d", port)), nil
}

// ListenVsock listens on port for connections from the host.
func ListenVsock(port uint32) (int, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("vsock socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("vsock bind port %d: %w", port, err)
	}
	if err := unix.Listen(fd, 4); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("vsock listen port %d: %w", port, err)
	}
	return fd, nil
}

// openVsock is openPorts for Firecracker: events go to the host's EventsVsockPort, control
// messages come in on ControlVsockPort.
func (in *pid1) openVsock() error {
	ev, err := DialHostVsock(abi.EventsVsockPort)
	if err != nil {
		return fmt.Errorf("events over vsock: %w", err)
	}
	in.events.Attach(ev)
	if in.out == nil {
		if out, err := DialHostVsock(abi.OutputVsockPort); err != nil {
			in.log.Warn("no output channel: the workload's output goes to the console", "err", err)
		} else {
			in.out = NewOutput(out, in.console)
		}
	}
	if efd, err := ListenVsock(abi.ExecVsockPort); err != nil {
		in.log.Warn("no exec channel: exec and shell are not available", "err", err)
	} else {
		go in.acceptExec(efd)
	}
	lfd, err := ListenVsock(abi.ControlVsockPort)
	if err != nil {
		in.log.Warn("no control port: graceful stop from the host is not available", "err", err)
		return nil
	}
	go in.acceptControl(lfd)
	return nil
}

// acceptControl reads control lines from each host connection in turn.
func (in *pid1) acceptControl(lfd int) {
	for {
		fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			in.log.Warn("control: vsock accept", "err", err)
			return
		}
		f := os.NewFile(uintptr(fd), "vsock-control")
		in.controlLines(f)
		f.Close()
	}
}

// redialVsock reconnects the events and output channels after a restore under Firecracker: the
// guest's vsock driver resets every connection once it runs again after a snapshot
// (VIRTIO_VSOCK_EVENT_TRANSPORT_RESET; listening sockets, control and exec, stay), and the
// restoring Firecracker has its own sockets for them.
func (in *pid1) redialVsock() error {
	ev, err := DialHostVsock(abi.EventsVsockPort)
	if err != nil {
		return fmt.Errorf("events over vsock after the restore: %w", err)
	}
	in.events.Reattach(ev)
	if in.out != nil && in.out.Framed() {
		out, err := DialHostVsock(abi.OutputVsockPort)
		if err != nil {
			return fmt.Errorf("the output channel after the restore: %w", err)
		}
		if err := in.out.Reattach(out); err != nil {
			return fmt.Errorf("the output channel after the restore: %w", err)
		}
	}
	return nil
}
