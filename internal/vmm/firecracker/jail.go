package firecracker

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/ukernel-dev/ukernel/internal/vmm"
)

// jail is the jailer's chroot for one guest: <base>/firecracker/<id>/root. Files the guest
// needs are hard-linked (copied across filesystems) to /<name> inside it. Sockets keep their
// host path inside the chroot, and the host path becomes a symlink to the chroot's socket, so
// the handle (and vmm.Handle.Alive, which looks for the API socket path on the command line)
// is the same with and without the jailer.
type jail struct {
	base, id, root string
	uid, gid       int
	netns          string
}

func (b *Backend) newJail(spec vmm.Spec, fcPath string) (*jail, error) {
	uid, gid := b.JailUID, b.JailGID
	if uid == 0 {
		uid = 65534
	}
	if gid == 0 {
		gid = 65534
	}
	base := filepath.Join(filepath.Dir(spec.APISocket), "jail")
	id := InstanceID(spec.Name)
	j := &jail{base: base, id: id, root: filepath.Join(base, filepath.Base(fcPath), id, "root"), uid: uid, gid: gid, netns: b.NetNS}
	// A chroot left by a crashed run would make the jailer refuse to start.
	if err := os.RemoveAll(filepath.Dir(j.root)); err != nil {
		return nil, fmt.Errorf("jailer chroot: %w", err)
	}
	return j, nil
}

// inside maps a host file to its path inside the chroot: sockets keep their path, files are
// linked to /<base name>.
func (j *jail) inside(p string) string { return "/" + filepath.Base(p) }

// host is where a path inside the chroot is on the host.
func (j *jail) host(p string) string { return filepath.Join(j.root, p) }

// args is the jailer's command line: firecracker's own arguments follow "--".
func (j *jail) args(fcPath string, spec vmm.Spec) []string {
	a := []string{"--id", j.id, "--exec-file", fcPath,
		"--uid", strconv.Itoa(j.uid), "--gid", strconv.Itoa(j.gid),
		"--chroot-base-dir", j.base, "--cgroup-version", "2"}
	if j.netns != "" {
		a = append(a, "--netns", j.netns)
	}
	return append(append(a, "--"), Args(spec)...)
}

// stage puts the kernel, initrd, disks, log and metrics files into the chroot, and makes the
// socket directories and host-side symlinks.
func (j *jail) stage(spec vmm.Spec, kernel string, rf runFiles) error {
	if err := os.MkdirAll(j.root, 0o755); err != nil {
		return fmt.Errorf("jailer chroot: %w", err)
	}
	files := []string{kernel}
	if spec.Initrd != "" {
		files = append(files, spec.Initrd)
	}
	for _, d := range spec.Disks {
		files = append(files, d.Path)
	}
	seen := map[string]bool{}
	for _, f := range files {
		dst := j.host(j.inside(f))
		if seen[dst] {
			return fmt.Errorf("jailer chroot: two files named %s", filepath.Base(f))
		}
		seen[dst] = true
		if err := linkOrCopy(f, dst); err != nil {
			return err
		}
		if err := os.Chown(dst, j.uid, j.gid); err != nil {
			return fmt.Errorf("jailer chroot: %w", err)
		}
	}
	// Log and metrics live in the chroot; the run directory links to them.
	for _, p := range []string{rf.logPath, rf.metricsPath} {
		dst := j.host(j.inside(p))
		if err := os.WriteFile(dst, nil, 0o644); err != nil {
			return fmt.Errorf("jailer chroot: %w", err)
		}
		if err := os.Chown(dst, j.uid, j.gid); err != nil {
			return fmt.Errorf("jailer chroot: %w", err)
		}
		os.Remove(p)
		if err := os.Symlink(dst, p); err != nil {
			return fmt.Errorf("jailer: link %s: %w", p, err)
		}
	}
	socks := []string{spec.APISocket}
	if spec.ControlSocket != "" {
		socks = append(socks, spec.ControlSocket)
	}
	for _, s := range socks {
		dir := j.host(filepath.Dir(s))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("jailer chroot: %w", err)
		}
		if err := os.Chown(dir, j.uid, j.gid); err != nil {
			return fmt.Errorf("jailer chroot: %w", err)
		}
		if err := os.Symlink(j.host(s), s); err != nil {
			return fmt.Errorf("jailer: link %s: %w", s, err)
		}
	}
	return nil
}

// dropConfigDrive removes the chroot's link to the config drive once Firecracker has it open.
func (j *jail) dropConfigDrive(spec vmm.Spec) {
	for _, d := range spec.Disks {
		if d.ID == "config" {
			os.Remove(j.host(j.inside(d.Path)))
		}
	}
}

func (j *jail) remove() { os.RemoveAll(filepath.Dir(j.root)) }

func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrExist) && !isCrossDevice(err) {
		return fmt.Errorf("jailer chroot: link %s: %w", src, err)
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("jailer chroot: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("jailer chroot: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("jailer chroot: copy %s: %w", src, err)
	}
	return out.Close()
}

func isCrossDevice(err error) bool {
	var le *os.LinkError
	return errors.As(err, &le) && errors.Is(le.Err, syscall.EXDEV)
}
