package guest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// ext4 superblock fields: the superblock starts 1024 bytes into the device.
const (
	sbOffset        = 1024
	sbBlocksLoOff   = 0x04
	sbLogBlockOff   = 0x18
	sbMagicOff      = 0x38
	sbIncompatOff   = 0x60
	sbLabelOff      = 0x78
	sbBlocksHiOff   = 0x150
	ext4Magic       = 0xEF53
	sbLabelSize     = 16
	incompat64Bit   = 0x80
	ext4IocResizeFS = 0x40086610 // _IOW('f', 16, __u64)
)

// ext4Blocks reads the block count and block size from the ext4 superblock in r.
func ext4Blocks(r io.ReaderAt) (blocks uint64, blockSize uint64, err error) {
	sb := make([]byte, sbBlocksHiOff+4)
	if _, err := r.ReadAt(sb, sbOffset); err != nil {
		return 0, 0, fmt.Errorf("reading the ext4 superblock: %w", err)
	}
	if binary.LittleEndian.Uint16(sb[sbMagicOff:]) != ext4Magic {
		return 0, 0, errors.New("no ext4 superblock")
	}
	blocks = uint64(binary.LittleEndian.Uint32(sb[sbBlocksLoOff:]))
	if binary.LittleEndian.Uint32(sb[sbIncompatOff:])&incompat64Bit != 0 {
		blocks |= uint64(binary.LittleEndian.Uint32(sb[sbBlocksHiOff:])) << 32
	}
	return blocks, 1024 << binary.LittleEndian.Uint32(sb[sbLogBlockOff:]), nil
}

// GrowData grows the ext4 filesystem on dev, mounted at dir, to fill dev when the host has made
// the volume larger ([data] disk_mb raised); ext4 resizes a mounted filesystem online. It
// returns the new block count, or 0 when there was nothing to do.
func GrowData(dev, dir string) (uint64, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var size uint64
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); errno != 0 {
		return 0, fmt.Errorf("size of %s: %w", dev, errno)
	}
	blocks, bsize, err := ext4Blocks(f)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", dev, err)
	}
	want := size / bsize
	if want <= blocks {
		return 0, nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, d.Fd(), ext4IocResizeFS, uintptr(unsafe.Pointer(&want))); errno != 0 {
		return 0, fmt.Errorf("growing %s from %d to %d blocks: %w", dev, blocks, want, errno)
	}
	return want, nil
}

// IsDataVolume reports whether r holds an ext4 filesystem labelled abi.DataLabel: that is how the
// guest tells the data disk from the image and the config drive, whatever the backend.
func IsDataVolume(r io.ReaderAt) bool {
	sb := make([]byte, sbLabelOff+sbLabelSize)
	if _, err := r.ReadAt(sb, sbOffset); err != nil {
		return false
	}
	if binary.LittleEndian.Uint16(sb[sbMagicOff:]) != ext4Magic {
		return false
	}
	label := sb[sbLabelOff : sbLabelOff+sbLabelSize]
	if i := bytes.IndexByte(label, 0); i >= 0 {
		label = label[:i]
	}
	return string(label) == abi.DataLabel
}

// FindDataDisk returns the /dev path of the whole disk among devs (read under devRoot) that is
// the data volume, skipping the image's own disk.
func FindDataDisk(devs []BlockDev, devRoot, skip string) (string, bool) {
	for _, d := range devs {
		if !d.Disk || d.Name == skip {
			continue
		}
		p := devRoot + "/" + d.Name
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		ok := IsDataVolume(f)
		f.Close()
		if ok {
			return p, true
		}
	}
	return "", false
}

// MountData mounts the data volume dev at abi.DataDir inside root and, while its top directory
// still belongs to root (a fresh volume), hands it to owner: mode 0755, or 01777 when shared
// says the workload runs as several users (each makes its own directory, as in /tmp).
func MountData(root, dev string, owner abi.User, shared bool) error {
	target := filepath.Join(root, abi.DataDir)
	m := mountSpec{dev, target, "ext4", unix.MS_NOSUID | unix.MS_NODEV, ""}
	if err := m.mount(); err != nil {
		return fmt.Errorf("data volume: %w", err)
	}
	if err := claimData(target, owner, shared); err != nil {
		// Not left mounted: poweroff only unmounts a data volume that was set up.
		_ = unix.Unmount(target, 0)
		return err
	}
	return nil
}

func claimData(dir string, owner abi.User, shared bool) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data volume: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid != 0 || owner.UID == 0 {
		return nil // already handed over, or the workload is root
	}
	if err := os.Chown(dir, owner.UID, owner.GID); err != nil {
		return fmt.Errorf("data volume: chown %s to %s (%d:%d): %w", abi.DataDir, owner.Name, owner.UID, owner.GID, err)
	}
	mode := os.FileMode(0o755)
	if shared {
		mode = 0o777 | os.ModeSticky
	}
	if err := os.Chmod(dir, mode); err != nil {
		return fmt.Errorf("data volume: chmod %s: %w", abi.DataDir, err)
	}
	return nil
}

// DataOwner is who gets the data volume: the entry's user, or without an entry the first
// service's; shared tells whether other processes run as other users.
func DataOwner(m *abi.Manifest) (owner string, shared bool) {
	var users []string
	if len(m.Entry) > 0 {
		users = append(users, m.User)
	}
	for _, s := range m.Services {
		users = append(users, s.User)
	}
	if len(users) == 0 {
		return "", false
	}
	for _, u := range users[1:] {
		if u != users[0] {
			shared = true
		}
	}
	return users[0], shared
}
