package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

type mountSpec struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

func (m mountSpec) mount() error {
	if err := os.MkdirAll(m.target, 0o755); err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
	}
	if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
		what := m.fstype
		if what == "" {
			what = m.source
		}
		return fmt.Errorf("mount %s (%s) on %s: %w", what, m.source, m.target, err)
	}
	return nil
}

// MountEarly mounts the pseudo filesystems init itself needs, in the initramfs.
func MountEarly() error {
	const nodev = unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV
	for _, m := range []mountSpec{
		{"proc", "/proc", "proc", nodev, ""},
		{"sysfs", "/sys", "sysfs", nodev, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666"},
		{"tmpfs", "/dev/shm", "tmpfs", nodev, "mode=1777"},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
		{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	} {
		if err := m.mount(); err != nil {
			return err
		}
	}
	return nil
}

// RootReadaheadKB is the readahead of the device the root is mounted from. The kernel's default,
// 128 KiB, reads a starting program's libraries in many small pieces as its page faults reach
// them, each through the block layer and erofs' decompression: under software emulation dash's
// start to its first line took about 70 ms that way and about 50 ms with 2 MiB, which reads a
// library at its first fault (measured, docs/PERFORMANCE.md). Reads stop at the end of a file,
// so small files cost no more; the root is read-only and small, so little read ahead goes unused.
const RootReadaheadKB = 2048

// SetReadahead sets the readahead of the block device dev (a partition's applies to its disk; a
// dm-verity device has its own, which is what reads of the root filesystem on it use).
func SetReadahead(dev string, kb int) error {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("set readahead of %s: %w", dev, err)
	}
	defer unix.Close(fd)
	// BLKRASET takes 512-byte sectors, by value.
	if err := unix.IoctlSetInt(fd, unix.BLKRASET, kb*2); err != nil {
		return fmt.Errorf("set readahead of %s: %w", dev, err)
	}
	return nil
}

// Layout names the directories of the root filesystem stack.
type Layout struct {
	Lower string // the read-only image root
	RW    string // tmpfs holding the overlay's upper and work directories
	Root  string // the merged root the workload is chrooted into
}

// DefaultLayout is where init assembles the workload's root.
var DefaultLayout = Layout{Lower: "/mnt/lower", RW: "/mnt/rw", Root: "/mnt/root"}

// MountRoot mounts dev (fstype, read-only) with a tmpfs overlay on top, then binds the pseudo
// filesystems into the merged root. files (paths relative to the root) are written into the
// overlay's upper layer before it is mounted: plain tmpfs writes, where writing them through the
// overlay would copy their directory up first. A file there also hides a symlink below (e.g.
// a resolv.conf pointing into /run) instead of writing through it.
func MountRoot(l Layout, dev, fstype string, files map[string]string) error {
	upper, work := filepath.Join(l.RW, "upper"), filepath.Join(l.RW, "work")
	steps := []mountSpec{
		{dev, l.Lower, fstype, unix.MS_RDONLY, ""},
		{"tmpfs", l.RW, "tmpfs", 0, "mode=0755"},
	}
	for _, m := range steps {
		if err := m.mount(); err != nil {
			return err
		}
	}
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("overlay: %w", err)
		}
	}
	for name, content := range files {
		p := filepath.Join(upper, name)
		if err := mkdirLike(upper, l.Lower, filepath.Dir(name)); err != nil {
			return fmt.Errorf("write /%s: %w", name, err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return fmt.Errorf("write /%s: %w", name, err)
		}
	}
	ov := mountSpec{"overlay", l.Root, "overlay", 0,
		"lowerdir=" + l.Lower + ",upperdir=" + upper + ",workdir=" + work}
	if err := ov.mount(); err != nil {
		if strings.Contains(err.Error(), "no such device") {
			return fmt.Errorf("%w (is overlay in the manifest's modules?)", err)
		}
		return err
	}
	for _, d := range []string{"/proc", "/sys", "/dev", "/run", "/tmp"} {
		b := mountSpec{d, filepath.Join(l.Root, d), "", unix.MS_BIND | unix.MS_REC, ""}
		if err := b.mount(); err != nil {
			return err
		}
	}
	return nil
}

// mkdirLike creates the directory rel (and its parents) under upper with the mode and owner of
// the same directory under lower, where it exists: overlayfs shows an upper directory's
// attributes for the merged one.
func mkdirLike(upper, lower, rel string) error {
	if rel == "." || rel == "/" || rel == "" {
		return nil
	}
	if err := mkdirLike(upper, lower, filepath.Dir(rel)); err != nil {
		return err
	}
	dir := filepath.Join(upper, rel)
	if _, err := os.Lstat(dir); err == nil {
		return nil
	}
	mode, uid, gid := os.FileMode(0o755), 0, 0
	if fi, err := os.Stat(filepath.Join(lower, rel)); err == nil && fi.IsDir() {
		mode = fi.Mode().Perm() | fi.Mode()&(os.ModeSetgid|os.ModeSticky)
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	if err := os.Lchown(dir, uid, gid); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}

// EtcFiles returns the contents of /etc/hostname, /etc/hosts and /etc/resolv.conf.
func EtcFiles(hostname string, dns []string) map[string]string {
	var resolv strings.Builder
	for _, s := range dns {
		resolv.WriteString("nameserver " + s + "\n")
	}
	return map[string]string{
		"etc/hostname":    hostname + "\n",
		"etc/hosts":       "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + hostname + "\n",
		"etc/resolv.conf": resolv.String(),
	}
}

// Unmount detaches what init mounted under the workload's root, innermost first, best effort:
// it runs right before power-off.
func Unmount(l Layout) {
	for _, d := range []string{"/tmp", "/run", "/dev", "/sys", "/proc"} {
		_ = unix.Unmount(filepath.Join(l.Root, d), unix.MNT_DETACH)
	}
	for _, d := range []string{l.Root, l.RW, l.Lower} {
		_ = unix.Unmount(d, 0)
	}
}
