package firecracker

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/vmm"
)

// jail is the jailer's chroot for one guest: <base>/firecracker/<id>/root. The files the guest
// needs appear inside it (see put): the kernel and initrd at /<name>, each drive at
// /drive-<id>, a snapshot's state and memory at jailState and jailMemory, the vsock socket at
// jailVsock. The API socket keeps its host path inside the chroot. The host paths of both
// sockets become symlinks to the chroot's, so the handle (and vmm.Handle.Alive, which looks for
// the API socket path on the command line) is the same with and without the jailer.
//
// Drives and vsock socket are at the same paths in every chroot, whatever the host files are:
// Firecracker records the paths it opened in a snapshot and reopens them on a restore, so a
// restore in a chroot of its own finds its own files there (its copy of the data volume, a blank
// config drive), and two restores of one snapshot never share one.
type jail struct {
	base, id, root string
	uid, gid       int
	netns          string

	mu     sync.Mutex     // release runs in Start and when firecracker exits
	staged []string       // the chroot's mount points and copies of the user's files
	undo   []func() error // takes back the ACL entries given to the jail uid
	// kept and keptUndo are the same for what Firecracker opens only later, when it saves a
	// snapshot (the memory file): they stay until releaseKept.
	kept     []string
	keptUndo []func() error
	logs     []string // run-directory links to the log and metrics files in the chroot
	socks    []string // host-side links to the chroot's sockets
	memory   string   // the memory file a snapshot boot saves to (Spec.Memory)
}

// Fixed paths inside every chroot (see jail).
const (
	jailVsock  = "/v.sock"
	jailState  = "/snapshot-state"
	jailMemory = "/snapshot-memory"
)

// drive is where the drive d is inside the chroot.
func drive(d vmm.Disk) string { return "/drive-" + d.ID }

func (j *jail) paths() Paths {
	return Paths{File: j.inside, Drive: drive, Vsock: func(string) string { return jailVsock }}
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
	// A chroot left by a crashed run, maybe with its mounts, would make the jailer refuse to start.
	if err := j.remove(); err != nil {
		return nil, err
	}
	return j, nil
}

// inside maps a host file to its path inside the chroot: /<base name>.
func (j *jail) inside(p string) string { return "/" + filepath.Base(p) }

// host is where a path inside the chroot is on the host.
func (j *jail) host(p string) string { return filepath.Join(j.root, p) }

// args is the jailer's command line: the arguments after "--" are appended to the ones the
// jailer gives firecracker (--id and its start times).
func (j *jail) args(fcPath string, spec vmm.Spec) []string {
	a := []string{"--id", j.id, "--exec-file", fcPath,
		"--uid", strconv.Itoa(j.uid), "--gid", strconv.Itoa(j.gid),
		"--chroot-base-dir", j.base, "--cgroup-version", "2"}
	if j.netns != "" {
		a = append(a, "--netns", j.netns)
	}
	return append(append(a, "--"), jailedArgs(spec)...)
}

// stage puts the kernel and initrd (or, for a restore, the snapshot's state and memory), the
// disks, the memory file a snapshot boot saves to, and the log and metrics files into the
// chroot, and makes the socket directories and host-side symlinks.
func (j *jail) stage(spec vmm.Spec, kernel string, rf runFiles) error {
	if err := os.MkdirAll(j.root, 0o755); err != nil {
		return fmt.Errorf("jailer chroot: %w", err)
	}
	type file struct {
		path, at    string
		write, keep bool
	}
	var files []file
	if spec.Incoming == "" {
		files = append(files, file{path: kernel, at: j.inside(kernel)})
		if spec.Initrd != "" {
			files = append(files, file{path: spec.Initrd, at: j.inside(spec.Initrd)})
		}
	} else {
		// Read-only: Firecracker maps the memory file privately, so its guest's writes never
		// reach it, and neither could anything else in the chroot.
		files = append(files, file{path: spec.Incoming, at: jailState}, file{path: spec.Memory.Path, at: jailMemory})
	}
	for _, d := range spec.Disks {
		files = append(files, file{path: d.Path, at: drive(d), write: !d.ReadOnly})
	}
	if spec.Memory != nil && spec.Memory.Shared {
		// A snapshot boot: Firecracker writes its guest's memory there when it saves.
		files = append(files, file{path: spec.Memory.Path, at: jailMemory, write: true, keep: true})
		j.memory = spec.Memory.Path
	}
	// The log and metrics files are the jail's own, created below: no user file may take
	// their names.
	seen := map[string]bool{j.host(j.inside(rf.logPath)): true, j.host(j.inside(rf.metricsPath)): true}
	for _, f := range files {
		dst := j.host(f.at)
		if seen[dst] {
			return fmt.Errorf("jailer chroot: two files named %s", filepath.Base(f.path))
		}
		seen[dst] = true
		if err := j.put(f.path, dst, f.write, f.keep); err != nil {
			return err
		}
	}
	// Log and metrics live in the chroot, in files of the jail's own; the run directory links
	// to them.
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
		j.logs = append(j.logs, p)
	}
	dir := j.host(filepath.Dir(spec.APISocket))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("jailer chroot: %w", err)
	}
	if err := os.Chown(dir, j.uid, j.gid); err != nil {
		return fmt.Errorf("jailer chroot: %w", err)
	}
	links := map[string]string{spec.APISocket: j.host(spec.APISocket)}
	if spec.ControlSocket != "" {
		links[spec.ControlSocket] = j.host(jailVsock)
	}
	for s, target := range links {
		if err := os.Symlink(target, s); err != nil {
			return fmt.Errorf("jailer: link %s: %w", s, err)
		}
		j.socks = append(j.socks, s)
	}
	return nil
}

// put makes the user's file src available to the jailed firecracker at dst, in the chroot,
// without changing src: no chown (the user's image, data volume and cached kernel keep their
// owner), no hard link (a link changes the ctime, which the image verification cache keys on,
// and needs one filesystem) and no copy of a disk the guest writes (its writes would go to the
// copy, deleted with the chroot).
//
// A bind mount meets all of that, across filesystems: dst is src, read-only unless the guest
// writes it. The jailer bind-mounts the chroot recursively into its own mount namespace, so
// firecracker sees it; release unmounts it once firecracker has the file open. As the jailed
// firecracker runs as the jail uid, what it may open is still up to src's mode: a read-only
// file it may not read (the run's 0600 config drive, small) is copied into a file of the jail's
// own, and a disk it may not write gets an ACL entry for the jail uid, which release takes
// back. (An idmapped mount would avoid the ACL but needs a user namespace and filesystem
// support; a loop device would need /dev/loop*.)
//
// A file kept (keep) stays until releaseKept rather than release.
func (j *jail) put(src, dst string, write, keep bool) error {
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("jailer chroot: %w", err)
	}
	staged, undos := &j.staged, &j.undo
	if keep {
		staged, undos = &j.kept, &j.keptUndo
	}
	if !write && !j.may(fi, 4) {
		if dst == j.host(jailMemory) {
			// Never a copy of a guest's memory: Save leaves it readable by the jail's group.
			return fmt.Errorf("jailer chroot: the jailed firecracker (uid %d, gid %d) may not read the snapshot's memory file %s (mode %v): take the snapshot again", j.uid, j.gid, src, fi.Mode().Perm())
		}
		return j.copyIn(src, dst)
	}
	if write && !j.may(fi, 6) {
		// Recorded before it is given, so that a run that dies before release still has it
		// taken back: by the next run of the guest, which removes the old chroot (remove).
		if err := j.recordGrant(src); err != nil {
			return err
		}
		undo, err := grantACL(src, j.uid, 6)
		if err != nil {
			return fmt.Errorf("jailer: the jailed firecracker runs as uid %d and may not write %s (mode %v), and an ACL entry to let it failed: %w; keep it on a filesystem with POSIX ACLs, make it writable by uid %d, or run ukernel without the jailer (it is used only as root, with jailer on PATH)",
				j.uid, src, fi.Mode().Perm(), err, j.uid)
		}
		*undos = append(*undos, undo)
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // the mount point
	if err != nil {
		return fmt.Errorf("jailer chroot: %w", err)
	}
	f.Close()
	*staged = append(*staged, dst)
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		// Never a copy instead: the guest's writes to it would be lost with the chroot.
		return fmt.Errorf("jailer chroot: bind-mount %s into %s: %w (the jailer needs mounts too; run ukernel without the jailer: not as root, or without jailer on PATH)", src, j.root, err)
	}
	if !write {
		flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
		if err := unix.Mount("", dst, "", flags, ""); err != nil {
			return fmt.Errorf("jailer chroot: read-only mount of %s: %w", src, err)
		}
	}
	return nil
}

// may says whether the jail uid may open a file with fi's owner and mode for perm (4 read,
// 6 read and write). ACLs aside: a file that needs one gets its own entry.
func (j *jail) may(fi os.FileInfo, perm uint32) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	mode := uint32(fi.Mode().Perm())
	switch {
	case int(st.Uid) == j.uid:
		mode >>= 6
	case int(st.Gid) == j.gid:
		mode >>= 3
	}
	return mode&perm == perm
}

// copyIn copies a read-only file the jail uid may not read into a file of the jail's own.
func (j *jail) copyIn(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("jailer chroot: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return fmt.Errorf("jailer chroot: %w", err)
	}
	j.staged = append(j.staged, dst)
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Chown(j.uid, j.gid)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("jailer chroot: copy %s: %w", src, err)
	}
	return nil
}

// release takes the user's files out of the chroot once firecracker has them open (it opens
// them when configured, and keeps them): the mounts go, lazily, so its open files stay; the
// copies, the config drive with the run's environment and secrets among them, are removed; the
// ACL entries are taken back.
func (j *jail) release() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return unstage(&j.staged, &j.undo)
}

// releaseKept is release for the files kept (the memory file of a snapshot boot), once
// Firecracker has written its snapshot.
func (j *jail) releaseKept() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return unstage(&j.kept, &j.keptUndo)
}

func unstage(staged *[]string, undos *[]func() error) error {
	var errs []error
	for _, p := range *staged {
		unmount(p)
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("jailer chroot: %w", err))
		}
	}
	*staged = nil
	for _, undo := range *undos {
		if err := undo(); err != nil {
			errs = append(errs, fmt.Errorf("jailer: taking back the jail's ACL entry: %w", err))
		}
	}
	*undos = nil
	return errors.Join(errs...)
}

// remove deletes the chroot. Mounts a crashed run left at its top level are taken off first:
// only the chroot's own files are deleted, never what a mount shows.
func (j *jail) remove() error {
	err := errors.Join(j.release(), j.releaseKept())
	if rerr := j.revokeRecorded(); rerr != nil {
		err = errors.Join(err, rerr)
	}
	j.keepLogs()
	for _, s := range j.socks {
		if target, lerr := os.Readlink(s); lerr == nil && strings.HasPrefix(target, j.root+"/") {
			os.Remove(s)
		}
	}
	if ents, rerr := os.ReadDir(j.root); rerr == nil {
		for _, e := range ents {
			unmount(filepath.Join(j.root, e.Name()))
		}
	}
	if rerr := os.RemoveAll(filepath.Dir(j.root)); rerr != nil {
		err = errors.Join(err, fmt.Errorf("jailer chroot: %w", rerr))
	}
	return err
}

// grantsFile lists, a line each ("uid path"), the ACL entries given to the jail uid; it sits
// beside the chroot, in a directory of root's that the jailed firecracker cannot write.
func (j *jail) grantsFile() string { return filepath.Join(filepath.Dir(j.root), "acl-grants") }

func (j *jail) recordGrant(path string) error {
	f, err := os.OpenFile(j.grantsFile(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err == nil {
		_, err = fmt.Fprintf(f, "%d %s\n", j.uid, path)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("jailer: recording the ACL entry for %s: %w", path, err)
	}
	return nil
}

// revokeRecorded takes back every ACL entry the grants file lists (those release already took
// back are gone: revoking them again changes nothing).
func (j *jail) revokeRecorded() error {
	data, err := os.ReadFile(j.grantsFile())
	if err != nil {
		return nil // nothing was granted
	}
	var errs []error
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		uid, path, ok := strings.Cut(line, " ")
		n, aerr := strconv.Atoi(uid)
		if !ok || aerr != nil {
			continue
		}
		if err := revokeACL(path, n); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("jailer: taking back the jail's ACL entry on %s: %w", path, err))
		}
	}
	if len(errs) == 0 {
		os.Remove(j.grantsFile())
	}
	return errors.Join(errs...)
}

// maxKeptLog bounds what keepLogs copies of one file (its end is kept).
const maxKeptLog = 8 << 20

// keepLogs replaces the run directory's links into the chroot with copies of the files, so the
// log outlives the chroot. The jailed firecracker owns those files: one that is no longer a
// regular file of the chroot (a symlink it planted) is not followed.
func (j *jail) keepLogs() {
	for _, p := range j.logs {
		target, err := os.Readlink(p)
		if err != nil {
			continue // already a copy
		}
		f, err := os.OpenFile(target, os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			os.Remove(p)
			continue
		}
		var data []byte
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			if off := fi.Size() - maxKeptLog; off > 0 {
				f.Seek(off, io.SeekStart)
			}
			data, _ = io.ReadAll(io.LimitReader(f, maxKeptLog))
		}
		f.Close()
		os.Remove(p)
		_ = os.WriteFile(p, data, 0o644)
	}
}

// unmount detaches every mount on p; it ends when p is no longer a mount point (EINVAL). It
// never follows a symlink: the jailed firecracker owns the chroot's top directory and could
// put one there.
func unmount(p string) {
	for unix.Unmount(p, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW) == nil {
	}
}
