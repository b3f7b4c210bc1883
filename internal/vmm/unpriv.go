package vmm

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The user a root ukernel runs QEMU as: nobody/nogroup, the Firecracker jailer's default. QEMU
// then has no capabilities and none of root's files: what it needs it gets as open files
// (qemu.Start), and under -sandbox it cannot change user or exec anything.
const (
	UnprivilegedUID = 65534
	UnprivilegedGID = 65534
)

// Unprivileged reports whether the VMM is started as UnprivilegedUID: when ukernel runs as
// root. A non-root ukernel starts it as itself (it has no capabilities to drop).
func Unprivileged() bool { return os.Geteuid() == 0 }

// UnprivilegedCredential is the process credential of a VMM started by root: UnprivilegedUID
// and GID and no supplementary group, but /dev/kvm's group under KVM (KVMAccess says whether
// that is enough).
func UnprivilegedCredential(kvm bool) *syscall.Credential {
	c := &syscall.Credential{Uid: UnprivilegedUID, Gid: UnprivilegedGID, Groups: []uint32{}}
	if kvm {
		if st, ok := kvmStat(); ok && st.Mode&0o060 == 0o060 && st.Gid != 0 && st.Gid != UnprivilegedGID {
			c.Groups = append(c.Groups, st.Gid)
		}
	}
	return c
}

func kvmStat() (unix.Stat_t, bool) {
	var st unix.Stat_t
	return st, unix.Stat("/dev/kvm", &st) == nil
}

// KVMAccess says why the unprivileged VMM user cannot open /dev/kvm, or "" when it can: by its
// mode for others, or through its group (the kvm group of distributions: root:kvm 0660), which
// UnprivilegedCredential gives. QEMU 7.2 opens /dev/kvm by that path only (no fd), so an open
// file cannot stand in.
func KVMAccess() string {
	st, ok := kvmStat()
	if !ok {
		return "" // no /dev/kvm: the KVM check says so itself
	}
	if st.Mode&0o006 == 0o006 || (st.Mode&0o060 == 0o060 && st.Gid != 0) {
		return ""
	}
	return fmt.Sprintf("KVM: /dev/kvm (mode %04o, group %d) may be opened by root only, and QEMU started by root runs as uid %d; give /dev/kvm to the kvm group (chgrp kvm /dev/kvm && chmod 660 /dev/kvm, as udev does) or use --accel tcg",
		st.Mode&0o7777, st.Gid, UnprivilegedUID)
}

// OpenReadable opens path for an unprivileged VMM to read as /proc/self/fd/N (QEMU opens
// -kernel and -initrd by path only): reopening that link skips the directories on the way,
// root's 0700 cache among them, but not the file's own mode. A file others may not read is
// copied into a memfd, which anyone may open.
func OpenReadable(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if fi.Mode().Perm()&0o004 != 0 {
		return f, nil
	}
	defer f.Close()
	fd, err := unix.MemfdCreate("ukernel:"+fi.Name(), unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("copy of %s for the VMM: %w", path, err)
	}
	m := os.NewFile(uintptr(fd), "memfd:"+path)
	if _, err := io.Copy(m, f); err != nil {
		m.Close()
		return nil, fmt.Errorf("copy of %s for the VMM: %w", path, err)
	}
	// Sealed: the VMM reads the file as it was, and cannot change it.
	if _, err := unix.FcntlInt(m.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_WRITE|unix.F_SEAL_GROW|unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL); err != nil {
		m.Close()
		return nil, fmt.Errorf("copy of %s for the VMM: seal: %w", path, err)
	}
	return m, nil
}

// UnprivilegedPortStart is the lowest TCP port a process without CAP_NET_BIND_SERVICE may bind
// (net.ipv4.ip_unprivileged_port_start, 1024 by default).
func UnprivilegedPortStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 1024
	}
	return n
}
