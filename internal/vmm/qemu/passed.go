package qemu

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/vmm"
)

// passed holds what QEMU started as vmm.UnprivilegedUID gets as open files, since it may open
// none of root's paths (the 0700 state directory, root's cache, the project): drives and file
// chardevs through fd sets (-add-fd, file=/dev/fdset/N), sockets as chardev fd=, the kernel and
// initrd as /proc/self/fd/N. No ACL on the user's files is needed, and none is left behind.
type passed struct {
	kernel, initrd  *os.File
	disks           [][]*os.File // per spec.Disks: read-only, and read-write for a writable disk
	console, events *os.File
	output          *os.File   // connected to the host's output listener
	control, qmp    *os.File   // listening sockets
	exec            []*os.File // listening sockets of the exec ports
	tap             *os.File
	memory          *os.File // the RAM file of a snapshot (spec.Memory), read-write

	extra []*os.File // exec.Cmd.ExtraFiles: QEMU's fd 3 onwards, in the order args uses them
	sets  int
}

// fd passes f to QEMU and returns its number there.
func (p *passed) fd(f *os.File) string {
	p.extra = append(p.extra, f)
	return strconv.Itoa(2 + len(p.extra))
}

// proc is the path under which QEMU reopens f.
func (p *passed) proc(f *os.File) string { return "/proc/self/fd/" + p.fd(f) }

// fdset puts fs in a new fd set, adding its -add-fd options to a, and returns the set's path.
// QEMU picks the file whose access mode it opens with; path names them in query-fdsets.
func (p *passed) fdset(a *[]string, path string, fs ...*os.File) string {
	p.sets++
	set := strconv.Itoa(p.sets)
	for _, f := range fs {
		*a = append(*a, "-add-fd", "fd="+p.fd(f)+",set="+set+",opaque="+escape(path))
	}
	return "/dev/fdset/" + set
}

func (p *passed) close() {
	for _, f := range []*os.File{p.kernel, p.initrd, p.console, p.events, p.output, p.control, p.qmp, p.tap, p.memory} {
		if f != nil {
			f.Close()
		}
	}
	for _, f := range p.exec {
		f.Close()
	}
	for _, fs := range p.disks {
		for _, f := range fs {
			f.Close()
		}
	}
}

// openPassed opens what QEMU needs for spec, as root; output is the host's listener for the
// output channel (QEMU is its client). The sockets are made here, and stay where the host looks
// for them.
func openPassed(spec vmm.Spec, output net.Listener) (_ *passed, err error) {
	p := &passed{}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	if p.kernel, err = vmm.OpenReadable(spec.Kernel); err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	if spec.Initrd != "" {
		if p.initrd, err = vmm.OpenReadable(spec.Initrd); err != nil {
			return nil, fmt.Errorf("initrd: %w", err)
		}
	}
	for _, d := range spec.Disks {
		// QEMU opens a writable disk read-only first, then read-write.
		ro, err := os.Open(d.Path)
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", d.ID, err)
		}
		fs := []*os.File{ro}
		if !d.ReadOnly {
			rw, err := os.OpenFile(d.Path, os.O_RDWR, 0)
			if err != nil {
				ro.Close()
				return nil, fmt.Errorf("disk %s: %w", d.ID, err)
			}
			fs = append(fs, rw)
		}
		p.disks = append(p.disks, fs)
	}
	if p.console, err = os.OpenFile(spec.ConsolePath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	if spec.EventsPath != "" {
		if p.events, err = os.OpenFile(spec.EventsPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
			return nil, fmt.Errorf("events: %w", err)
		}
	}
	if output != nil {
		c, err := net.Dial("unix", spec.OutputSocket)
		if err != nil {
			return nil, fmt.Errorf("output channel: %w", err)
		}
		p.output, err = c.(*net.UnixConn).File()
		c.Close()
		if err != nil {
			return nil, fmt.Errorf("output channel: %w", err)
		}
	}
	if spec.ControlSocket != "" {
		if p.control, err = listenFile(spec.ControlSocket); err != nil {
			return nil, fmt.Errorf("control channel: %w", err)
		}
	}
	if spec.ExecSocket != "" {
		for i := range abi.ExecPorts {
			f, err := listenFile(ExecSocket(spec.ExecSocket, i))
			if err != nil {
				return nil, fmt.Errorf("exec channel: %w", err)
			}
			p.exec = append(p.exec, f)
		}
	}
	if p.qmp, err = listenFile(spec.APISocket); err != nil {
		return nil, fmt.Errorf("QMP: %w", err)
	}
	if spec.Net.Mode == abi.NetTap {
		if p.tap, err = openTap(spec.Net.Iface); err != nil {
			return nil, err
		}
	}
	if spec.Memory != nil {
		if p.memory, err = openMemory(spec.Memory.Path); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// listenFile listens on the unix socket path and returns the listening socket; the path stays
// (QEMU, which cannot remove it, does not own it: runstate removes it with the guest).
func listenFile(path string) (*os.File, error) {
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	f, err := ul.File()
	ul.Close()
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	return f, nil
}

// openTap attaches to the existing tap device iface, as QEMU would by name (and as root may
// whoever owns the device): IFF_VNET_HDR, which QEMU reads back from the fd, as QEMU asks for.
func openTap(iface string) (*os.File, error) {
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("tap device %s: %w", iface, err)
	}
	ifr, err := unix.NewIfreq(iface)
	if err == nil {
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		err = unix.IoctlIfreq(int(f.Fd()), unix.TUNSETIFF, ifr)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("tap device %s: attach: %w", iface, err)
	}
	return f, nil
}
