package guest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// ParseUevent reads the KEY=VALUE lines of a sysfs uevent file.
func ParseUevent(data []byte) map[string]string {
	kv := make(map[string]string)
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && k != "" {
			kv[k] = v
		}
	}
	return kv
}

// BlockDev is one entry of /sys/class/block.
type BlockDev struct {
	Name     string // kernel name, also its /dev node: vda, vda2
	Disk     bool   // a whole disk rather than a partition
	PartName string // GPT partition name (PARTNAME=), partitions only
	Parent   string // the disk a partition belongs to
}

// BlockDevices lists the block devices under sysRoot (normally /sys), sorted by name.
func BlockDevices(sysRoot string) ([]BlockDev, error) {
	dir := filepath.Join(sysRoot, "class", "block")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	var devs []BlockDev
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(filepath.Join(p, "uevent"))
		if err != nil {
			continue // vanished or not a device
		}
		kv := ParseUevent(data)
		d := BlockDev{Name: kv["DEVNAME"], Disk: kv["DEVTYPE"] == "disk", PartName: kv["PARTNAME"]}
		if d.Name == "" {
			d.Name = e.Name()
		}
		if !d.Disk {
			// A partition's sysfs directory sits inside its disk's directory; its class link
			// (…/block/vda/vda2) says which, in one readlink where resolving it would stat
			// every component (slow under emulation).
			if target, err := os.Readlink(p); err == nil {
				d.Parent = filepath.Base(filepath.Dir(target))
			}
		}
		devs = append(devs, d)
	}
	sort.Slice(devs, func(i, j int) bool { return devs[i].Name < devs[j].Name })
	return devs, nil
}

// FindPartition returns the partition whose GPT name is partName.
func FindPartition(devs []BlockDev, partName string) (BlockDev, bool) {
	for _, d := range devs {
		if !d.Disk && d.PartName == partName {
			return d, true
		}
	}
	return BlockDev{}, false
}

// VirtioPorts maps the names of virtio-serial ports to their device names (vport2p1), read from
// sysRoot/class/virtio-ports/*/name: the numbers are not stable, the names are.
func VirtioPorts(sysRoot string) (map[string]string, error) {
	dir := filepath.Join(sysRoot, "class", "virtio-ports")
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return map[string]string{}, nil // no virtio-serial device (yet)
		}
		return nil, fmt.Errorf("list virtio ports: %w", err)
	}
	ports := make(map[string]string)
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name(), "name"))
		if err != nil {
			continue
		}
		if name := strings.TrimSpace(string(data)); name != "" {
			ports[name] = e.Name()
		}
	}
	return ports, nil
}

// Poll calls check at once, then every interval until it reports done, fails, or timeout has
// passed; the timeout's error names the last "what is missing" check gave. Its timers are made
// only after a first check that failed: on a boot's path the first check usually succeeds, and
// under software emulation the runtime's timer code costs milliseconds on its first run, which
// the workload's start need not pay.
func Poll(timeout, interval time.Duration, check func() (missing string, err error)) error {
	missing, err := check()
	if err != nil || missing == "" {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("still missing %s: %w", missing, context.Cause(ctx))
		case <-t.C:
		}
		if missing, err = check(); err != nil || missing == "" {
			return err
		}
	}
}
