package guest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// The device-mapper ioctl interface (linux/dm-ioctl.h). dm-init is not built into the kernel,
// so init creates the verity device itself: create, load the table, resume.
const (
	dmControl     = "/dev/mapper/control"
	dmIoctlSize   = 312 // sizeof(struct dm_ioctl)
	dmSpecSize    = 40  // sizeof(struct dm_target_spec)
	dmNameLen     = 128
	dmReadonly    = 1 << 0
	dmDevCreate   = 3
	dmDevSuspend  = 6
	dmTableLoad   = 9
	dmIoctlMagic  = 0xfd
	dmVersionMaj  = 4
	verityDevName = "ukernel-root"
)

// dmIoctlNr is _IOWR(0xfd, cmd, struct dm_ioctl).
func dmIoctlNr(cmd uint) uint {
	return 3<<30 | dmIoctlSize<<16 | dmIoctlMagic<<8 | cmd
}

// dmRequest encodes a struct dm_ioctl for the device name, followed by one target spec when
// table (a line "start length type params") is not empty.
func dmRequest(name string, flags uint32, table string) ([]byte, error) {
	var payload []byte
	count := uint32(0)
	if table != "" {
		f := strings.Fields(table)
		if len(f) < 4 {
			return nil, fmt.Errorf("table line %q: want start, length, target type and parameters", table)
		}
		start, err1 := strconv.ParseUint(f[0], 10, 64)
		length, err2 := strconv.ParseUint(f[1], 10, 64)
		if err := errors.Join(err1, err2); err != nil || len(f[2]) >= 16 {
			return nil, fmt.Errorf("table line %q: bad start, length or target type", table)
		}
		params := strings.Join(f[3:], " ")
		count = 1
		payload = make([]byte, dmSpecSize)
		binary.LittleEndian.PutUint64(payload[0:], start)
		binary.LittleEndian.PutUint64(payload[8:], length)
		copy(payload[24:40], f[2])
		payload = append(payload, params...)
		payload = append(payload, 0)
		for len(payload)%8 != 0 {
			payload = append(payload, 0)
		}
	}
	b := make([]byte, dmIoctlSize, dmIoctlSize+len(payload))
	binary.LittleEndian.PutUint32(b[0:], dmVersionMaj)
	binary.LittleEndian.PutUint32(b[12:], uint32(dmIoctlSize+len(payload))) // data_size
	binary.LittleEndian.PutUint32(b[16:], dmIoctlSize)                      // data_start
	binary.LittleEndian.PutUint32(b[20:], count)                            // target_count
	binary.LittleEndian.PutUint32(b[28:], flags)
	copy(b[48:48+dmNameLen-1], name)
	return append(b, payload...), nil
}

// dmIoctl issues one device-mapper ioctl on the device name and returns the kernel's reply
// header.
func dmIoctl(ctl *os.File, cmd uint, name string, flags uint32, table string) ([]byte, error) {
	req, err := dmRequest(name, flags, table)
	if err != nil {
		return nil, err
	}
	// The kernel writes its reply into the buffer; give it room for a status string.
	buf := make([]byte, max(len(req), 16<<10))
	copy(buf, req)
	binary.LittleEndian.PutUint32(buf[12:], uint32(len(buf)))
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, ctl.Fd(), uintptr(dmIoctlNr(cmd)), uintptr(unsafe.Pointer(&buf[0])))
	if errno != 0 {
		return nil, errno
	}
	return buf[:dmIoctlSize], nil
}

// VerityRootHash returns the root hash the kernel command line carries (ukernel.verity=), or "".
func VerityRootHash(cmdline string) string {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, abi.VerityCmdlineKey+"="); ok {
			return v
		}
	}
	return ""
}

// CheckVerityParams decides whether the root is verified and checks that the manifest and the
// command line agree: either both name the same root hash or neither has one.
func CheckVerityParams(v *abi.Verity, cmdline string) error {
	cl := VerityRootHash(cmdline)
	switch {
	case v == nil && cl == "":
		return nil
	case v == nil:
		return fmt.Errorf("the kernel command line gives the root hash %s but the manifest has no verity parameters", cl)
	case cl == "":
		return fmt.Errorf("the manifest gives the root hash %s but the kernel command line has no %s=", v.RootHash, abi.VerityCmdlineKey)
	case cl != v.RootHash:
		return fmt.Errorf("the kernel command line gives the root hash %s, the manifest %s", cl, v.RootHash)
	}
	if v.BlockSize != 4096 || v.HashAlgorithm != "sha256" || v.DataBlocks <= 0 {
		return fmt.Errorf("unsupported verity parameters: %d data blocks of %d bytes, %q", v.DataBlocks, v.BlockSize, v.HashAlgorithm)
	}
	return nil
}

// SetupVerity creates the read-only dm-verity device over dev (the root partition, data and
// hash tree) and returns the path of its device node. The dm-verity modules must be loaded.
func SetupVerity(v *abi.Verity, dev string) (string, error) {
	ctl, err := openDMControl()
	if err != nil {
		return "", err
	}
	defer ctl.Close()
	if _, err := dmIoctl(ctl, dmDevCreate, verityDevName, 0, ""); err != nil {
		return "", fmt.Errorf("device-mapper: create %s: %w", verityDevName, err)
	}
	table := v.Table(dev)
	if _, err := dmIoctl(ctl, dmTableLoad, verityDevName, dmReadonly, table); err != nil {
		return "", fmt.Errorf("device-mapper: load the table %q: %w (see the kernel messages above)", table, err)
	}
	reply, err := dmIoctl(ctl, dmDevSuspend, verityDevName, 0, "")
	if err != nil {
		return "", fmt.Errorf("device-mapper: resume %s: %w", verityDevName, err)
	}
	devt := binary.LittleEndian.Uint64(reply[40:])
	node := filepath.Join(filepath.Dir(dmControl), verityDevName)
	if err := unix.Mknod(node, unix.S_IFBLK|0o400, int(devt)); err != nil && !errors.Is(err, unix.EEXIST) {
		return "", fmt.Errorf("create %s (%d:%d): %w", node, unix.Major(devt), unix.Minor(devt), err)
	}
	return node, nil
}

// openDMControl opens /dev/mapper/control, creating the node from sysfs if devtmpfs has not.
func openDMControl() (*os.File, error) {
	f, err := os.OpenFile(dmControl, os.O_RDWR, 0)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		if err != nil {
			return nil, fmt.Errorf("device-mapper: %w", err)
		}
		return f, nil
	}
	data, rerr := os.ReadFile("/sys/class/misc/device-mapper/dev")
	if rerr != nil {
		return nil, fmt.Errorf("device-mapper: %v, and no /sys/class/misc/device-mapper (is dm-mod loaded?)", err)
	}
	var maj, min uint32
	if _, err := fmt.Sscanf(string(bytes.TrimSpace(data)), "%d:%d", &maj, &min); err != nil {
		return nil, fmt.Errorf("device-mapper: /sys/class/misc/device-mapper/dev %q: %w", data, err)
	}
	if err := os.MkdirAll(filepath.Dir(dmControl), 0o755); err != nil {
		return nil, err
	}
	if err := unix.Mknod(dmControl, unix.S_IFCHR|0o600, int(unix.Mkdev(maj, min))); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("device-mapper: create %s: %w", dmControl, err)
	}
	f, err = os.OpenFile(dmControl, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("device-mapper: %w", err)
	}
	return f, nil
}

// VerityError is a block of the root that does not match its hash tree.
type VerityError struct {
	Dev      string
	Offset   int64
	RootHash string
	Err      error
}

func (e *VerityError) Error() string {
	return fmt.Sprintf("dm-verity: the root filesystem does not match its root hash %s: reading %s at byte %d (block %d) failed: %v; the image was modified after it was packed",
		e.RootHash, e.Dev, e.Offset, e.Offset/4096, e.Err)
}

// ReadAllVerified reads every block of the verity device once, bypassing the page cache, so a
// modified block stops the boot here rather than failing the workload later with EIO.
func ReadAllVerified(node string, v *abi.Verity) error {
	f, err := os.OpenFile(node, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", node, err)
	}
	defer f.Close()
	// O_DIRECT wants an aligned buffer; an anonymous mapping is page-aligned.
	buf, err := unix.Mmap(-1, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return fmt.Errorf("verity read buffer: %w", err)
	}
	defer unix.Munmap(buf)
	size := v.DataBlocks * int64(v.BlockSize)
	for off := int64(0); off < size; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if err != nil {
			// Find the first bad block for the message.
			for b := off; b < off+int64(len(buf)) && b < size; b += int64(v.BlockSize) {
				if _, berr := f.ReadAt(buf[:v.BlockSize], b); berr != nil {
					return &VerityError{Dev: node, Offset: b, RootHash: v.RootHash, Err: berr}
				}
			}
			return &VerityError{Dev: node, Offset: off, RootHash: v.RootHash, Err: err}
		}
		off += int64(n)
	}
	return nil
}

// verifiedRoot returns the device to mount as the root: dev itself, or for a read-only image
// the dm-verity device over it, after reading it whole. A mismatch is fatal: init refuses to
// run a workload on a root that is not the one the image was packed with.
func (in *pid1) verifiedRoot(dev string) (string, error) {
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return "", fail("read the kernel command line", err)
	}
	v := in.manifest.Root.Verity
	if err := CheckVerityParams(v, string(cmdline)); err != nil {
		return "", fail("verified root", err)
	}
	if v == nil {
		return dev, nil
	}
	t := Now()
	node, err := SetupVerity(v, dev)
	if err != nil {
		return "", fail("set up dm-verity on "+dev, err)
	}
	if err := ReadAllVerified(node, v); err != nil {
		return "", fail("verify the root filesystem", err)
	}
	in.events.Phase("verity", t)
	return node, nil
}
