// Package vmmtest builds small real guests for tests and benchmarks of the VMM backends: an
// initramfs with the host's static busybox as the whole userland and a shell script as /init.
package vmmtest

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
)

// Busybox is where Debian's busybox-static installs the static busybox.
const Busybox = "/bin/busybox"

// ControlModules are the modules (in load order, relative to lib/modules/<release>/) a guest
// needs for virtio-mmio devices and virtio-serial ports on microvm.
var ControlModules = []string{
	"kernel/drivers/virtio/virtio_ring.ko",
	"kernel/drivers/virtio/virtio.ko",
	"kernel/drivers/virtio/virtio_mmio.ko",
	"kernel/drivers/char/virtio_console.ko",
}

// Preamble mounts the pseudo filesystems and loads /lib/mod/NN.ko in order.
const Preamble = `#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in /lib/mod/*.ko; do insmod "$m"; done
`

// PortFunc is a shell function that prints the /dev node of the virtio-serial port named $1.
// Ports are announced asynchronously after the driver loads, so it retries for up to 5 s.
const PortFunc = `port() {
	for i in $(seq 50); do
		for p in /sys/class/virtio-ports/*; do
			[ "$(cat "$p/name" 2>/dev/null)" = "$1" ] && { echo "/dev/${p##*/}"; return; }
		done
		sleep 0.1
	done
}
`

// WriteInitrd writes a newc initramfs to out holding busybox (with its applets linked under
// /bin), the modules (absolute paths, loaded in the given order by Preamble) and script as /init.
func WriteInitrd(out, script string, modules []string) error {
	bb, err := os.ReadFile(Busybox)
	if err != nil {
		return fmt.Errorf("%w (install busybox-static)", err)
	}
	recs := []cpio.Record{
		cpio.Directory("bin", 0o755), cpio.Directory("dev", 0o755), cpio.Directory("proc", 0o755),
		cpio.Directory("sys", 0o755), cpio.Directory("lib", 0o755), cpio.Directory("lib/mod", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.StaticFile("bin/busybox", string(bb), 0o755),
	}
	for _, applet := range []string{"sh", "mount", "insmod", "cat", "echo", "sleep", "poweroff", "printf", "ls", "seq"} {
		recs = append(recs, cpio.Symlink("bin/"+applet, "busybox"))
	}
	for i, m := range modules {
		b, err := os.ReadFile(m)
		if err != nil {
			return err
		}
		recs = append(recs, cpio.StaticFile(fmt.Sprintf("lib/mod/%02d.ko", i), string(b), 0o644))
	}
	recs = append(recs, cpio.StaticFile("init", script, 0o755))
	err = atomicfile.Write(out, 0o644, func(f *os.File) error {
		w := cpio.Newc.Writer(f)
		if err := cpio.WriteRecords(w, recs); err != nil {
			return err
		}
		return cpio.WriteTrailer(w)
	})
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}

// ModulePaths joins ControlModules to a kernel's modules directory.
func ModulePaths(modulesDir string) []string {
	var out []string
	for _, m := range ControlModules {
		out = append(out, filepath.Join(modulesDir, m))
	}
	return out
}
