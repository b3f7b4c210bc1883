package guest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// ext4 superblock fields: the superblock starts 1024 bytes into the device.
const (
	sbOffset    = 1024
	sbMagicOff  = 0x38
	sbLabelOff  = 0x78
	ext4Magic   = 0xEF53
	sbLabelSize = 16
)

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
