package firecracker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/testenv"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/bootfiles"
)

// TestJailerArgs asserts the jailer's exact command line, and that firecracker, which refuses an
// argument given twice, gets none twice: the jailer gives it --id and its start times, then the
// arguments after "--".
func TestJailerArgs(t *testing.T) {
	spec := testSpec("/run/r1")
	j := &jail{base: "/state/jail", id: InstanceID(spec.Name), uid: 65534, gid: 65534, netns: "/var/run/netns/fc"}
	got := j.args("/usr/bin/firecracker", spec)
	want := []string{"--id", "api-test", "--exec-file", "/usr/bin/firecracker", "--uid", "65534", "--gid", "65534",
		"--chroot-base-dir", "/state/jail", "--cgroup-version", "2", "--netns", "/var/run/netns/fc",
		"--", "--api-sock", "/state/api.sock"}
	if !slices.Equal(got, want) {
		t.Fatalf("jailer argv\n got %q\nwant %q", got, want)
	}
	fc := append([]string{"--id", j.id, "--start-time-us", "1", "--start-time-cpu-us", "1", "--parent-cpu-time-us", "0"},
		got[slices.Index(got, "--")+1:]...)
	seen := map[string]bool{}
	for _, a := range fc {
		if strings.HasPrefix(a, "--") && seen[a] {
			t.Errorf("firecracker would get %s twice: %q", a, fc)
		}
		seen[a] = true
	}
}

// TestGrantACL: the jail uid's ACL entry lets it write, and taking it back leaves the file as it
// was, with or without an ACL of its own.
func TestGrantACL(t *testing.T) {
	f := filepath.Join(t.TempDir(), "data.img")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	undo, err := grantACL(f, 65534, 6)
	if errors.Is(err, unix.EOPNOTSUPP) {
		t.Skip("no ACLs on", f)
	}
	if err != nil {
		t.Fatal(err)
	}
	acl, err := getACL(f)
	if err != nil || !slices.Contains(acl, aclEntry{aclUser, 6, 65534}) || !slices.Contains(acl, aclEntry{aclMask, 6, aclNoID}) {
		t.Fatalf("ACL after grant: %v %v", acl, err)
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Getxattr(f, aclAttr, nil); !errors.Is(err, unix.ENODATA) {
		t.Errorf("ACL left after undo: %v", err)
	}
	if fi, _ := os.Stat(f); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after undo %v, want 0600", fi.Mode().Perm())
	}

	// A file with an ACL of its own gets exactly that one back.
	own := []aclEntry{{aclUserObj, 6, aclNoID}, {aclGroupObj, 4, aclNoID}, {aclGroup, 4, 100}, {aclMask, 4, aclNoID}, {aclOther, 0, aclNoID}}
	if err := setACL(f, own); err != nil {
		t.Fatal(err)
	}
	before := rawACL(t, f)
	undo, err = grantACL(f, 65534, 6)
	if err != nil {
		t.Fatal(err)
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	if after := rawACL(t, f); !bytes.Equal(after, before) {
		t.Errorf("ACL after undo %x, want %x", after, before)
	}

	// An entry a crashed run left goes with the next run's.
	if err := setACL(f, []aclEntry{{aclUserObj, 6, aclNoID}, {aclUser, 6, 65534}, {aclGroupObj, 0, aclNoID}, {aclMask, 6, aclNoID}, {aclOther, 0, aclNoID}}); err != nil {
		t.Fatal(err)
	}
	if undo, err = grantACL(f, 65534, 6); err != nil {
		t.Fatal(err)
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Getxattr(f, aclAttr, nil); !errors.Is(err, unix.ENODATA) {
		t.Errorf("a crashed run's ACL entry left: %v", err)
	}
	if fi, _ := os.Stat(f); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after undo %v, want 0600", fi.Mode().Perm())
	}
}

func rawACL(t *testing.T, f string) []byte {
	t.Helper()
	buf := make([]byte, 256)
	n, err := unix.Getxattr(f, aclAttr, buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// fileState is what the jail must not change in a user's file.
type fileState struct {
	uid, gid uint32
	mode     os.FileMode
	nlink    uint64
	ctime    syscall.Timespec
}

func stateOf(t *testing.T, p string) fileState {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fileState{st.Uid, st.Gid, fi.Mode(), uint64(st.Nlink), st.Ctim}
}

// mountsUnder lists the mount points under dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			out = append(out, fields[4])
		}
	}
	return out
}

// TestJailedRun runs the backend under a stand-in jailer (chroot, uid 65534) with the fake
// firecracker, the project on another filesystem than the state directory. Firecracker gets
// each argument once; it opens the kernel, initrd and disks from the chroot as the jail uid; the
// guest's write to the data volume lands in the project's data.img; and the user's files keep
// their owner, mode, link count and ctime (the image verification cache keys on it). Once
// firecracker has its files open, nothing of the user's is left in the chroot, and after the run
// no mount, ACL entry or chroot is left.
func TestJailedRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds helper binaries and decompresses a kernel")
	}
	if os.Geteuid() != 0 {
		t.Skip("the jailer runs only as root")
	}
	bin := fakeFirecracker(t)
	jailer := buildHelper(t, "./testdata/fakejailer", "jailer")

	proj := t.TempDir()
	if err := unix.Mount("tmpfs", proj, "tmpfs", 0, "size=64m"); err != nil {
		t.Fatalf("mounting a tmpfs for the project (as root): %v", err)
	}
	t.Cleanup(func() { unix.Unmount(proj, unix.MNT_DETACH) })
	state := shortStateDir(t)
	setFakeEnv(t, "FAKEFC_FAIL=", "FAKEFC_LOG=", "FAKEFC_CONTROL=")
	kernel, cacheDir := testVmlinux(t)
	img := filepath.Join(proj, "dist", "app.img")
	initrd := filepath.Join(proj, "initrd.cpio")
	data := filepath.Join(proj, ".ukernel", "data.img")
	cfgDrive := filepath.Join(state, "config.drive")
	for _, f := range []struct {
		path string
		size int
		mode os.FileMode
	}{{img, 4096, 0o644}, {initrd, 512, 0o644}, {data, 1 << 20, 0o600}, {cfgDrive, 512, 0o600}} {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.path, make([]byte, f.size), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	user := []string{kernel, img, initrd, data, cfgDrive}
	before := map[string]fileState{}
	for _, p := range user {
		before[p] = stateOf(t, p)
	}

	spec := vmm.Spec{
		Name: "fake", Kernel: kernel, Initrd: initrd, Cmdline: "quiet",
		Disks: []vmm.Disk{{ID: "root", Path: img, ReadOnly: true}, {ID: "config", Path: cfgDrive, ReadOnly: true}, {ID: "data", Path: data}},
		VCPU:  1, MemoryMB: 256, Accel: vmm.AccelKVM, Net: vmm.Net{Mode: "none"},
		ConsolePath: filepath.Join(state, "console.log"), EventsPath: filepath.Join(state, "events.jsonl"),
		LogPath: filepath.Join(state, "vmm.log"), ControlSocket: filepath.Join(state, "ctl.sock"), APISocket: filepath.Join(state, "api.sock"),
	}
	b := &Backend{Binary: bin, Jailer: jailer, CacheDir: cacheDir, Log: New(nil).Log}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	vm, err := b.Start(ctx, spec)
	if err != nil {
		log, _ := os.ReadFile(spec.LogPath)
		t.Fatalf("%v\nvmm.log: %s", err, log)
	}
	jailDir := filepath.Join(state, "jail", "firecracker", "fake")
	if !vm.Alive() {
		t.Fatal("handle does not recognise the jailed firecracker")
	}
	// Firecracker has everything open: nothing of the user's is left in the chroot.
	if m := mountsUnder(t, state); len(m) > 0 {
		t.Errorf("mounts left in the chroot while running: %q", m)
	}
	for _, p := range user {
		if _, err := os.Lstat(filepath.Join(jailDir, "root", filepath.Base(p))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still in the chroot while running: %v", filepath.Base(p), err)
		}
	}
	if _, err := unix.Getxattr(data, aclAttr, nil); !errors.Is(err, unix.ENODATA) {
		t.Errorf("the jail's ACL entry on %s was not taken back: %v", data, err)
	}

	for {
		ev, _ := os.ReadFile(spec.EventsPath)
		if bytes.Contains(ev, []byte(`"type":"hello"`)) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no event relayed from the chroot's vsock socket; events.jsonl: %q", ev)
		}
		time.Sleep(20 * time.Millisecond)
	}
	res, err := vmm.Stop(ctx, b, vm.Handle, 2*time.Second, nil)
	if err != nil || res != vmm.StoppedGracefully {
		t.Fatalf("stop: %s %v", res, err)
	}
	if err := vm.Wait(ctx); err != nil {
		t.Fatal(err)
	}

	got, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	if line := "fake guest: /data written\n"; !bytes.HasPrefix(got, []byte(line)) {
		t.Errorf("the guest's write to /data is not in %s: starts %q", data, got[:len(line)])
	}
	for _, p := range user {
		a, b := before[p], stateOf(t, p)
		if p == data {
			a.ctime, b.ctime = syscall.Timespec{}, syscall.Timespec{} // the guest wrote it
		}
		if a != b {
			t.Errorf("%s changed:\n was %+v\n now %+v", p, a, b)
		}
	}
	if _, err := unix.Getxattr(data, aclAttr, nil); !errors.Is(err, unix.ENODATA) {
		t.Errorf("ACL left on %s: %v", data, err)
	}
	if m := mountsUnder(t, state); len(m) > 0 {
		t.Errorf("mounts left: %q", m)
	}
	if _, err := os.Stat(jailDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("chroot left: %v", err)
	}
	// The log and metrics outlive the chroot: copies, not links into it.
	for _, name := range []string{"firecracker.log", "firecracker-metrics.json"} {
		if fi, err := os.Lstat(filepath.Join(state, name)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s after the run: %v %v, want a regular file", name, fi, err)
		}
	}
	if console, _ := os.ReadFile(spec.ConsolePath); !strings.Contains(string(console), "fake guest: booted") {
		t.Errorf("console %q", console)
	}
}

// TestJailCrashLeftovers: a chroot a crashed run left, its mounts still on, is cleared by the
// next run of the guest without deleting what the mounts show, the user's files.
func TestJailCrashLeftovers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the jailer runs only as root")
	}
	state := shortStateDir(t)
	proj := t.TempDir()
	kernel, img, data := filepath.Join(proj, "vmlinux"), filepath.Join(proj, "app.img"), filepath.Join(proj, "data.img")
	for _, p := range []string{kernel, img, data} {
		if err := os.WriteFile(p, []byte("keep "+p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	spec := vmm.Spec{Name: "crash", Disks: []vmm.Disk{{ID: "root", Path: img, ReadOnly: true}, {ID: "data", Path: data}},
		ConsolePath: filepath.Join(state, "console.log"), APISocket: filepath.Join(state, "api.sock")}
	b := &Backend{}
	j, err := b.newJail(spec, "/usr/bin/firecracker")
	if err != nil {
		t.Fatal(err)
	}
	if err := j.stage(spec, kernel, runFilesFor(spec)); err != nil {
		t.Fatalf("stage: %v", err)
	}
	if m := mountsUnder(t, state); len(m) != 3 {
		t.Fatalf("mounts in the chroot: %q", m)
	}
	if _, err := unix.Getxattr(data, aclAttr, nil); err != nil {
		t.Fatalf("the jail uid got no ACL entry on the data disk (mode 0644): %v", err)
	}
	// The run crashes: nothing is released. The next one starts.
	if _, err := b.newJail(spec, "/usr/bin/firecracker"); err != nil {
		t.Fatal(err)
	}
	if m := mountsUnder(t, state); len(m) > 0 {
		t.Errorf("mounts left: %q", m)
	}
	if _, err := os.Stat(filepath.Dir(j.root)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("chroot left: %v", err)
	}
	if _, err := unix.Getxattr(data, aclAttr, nil); !errors.Is(err, unix.ENODATA) {
		t.Errorf("the crashed run's ACL entry on %s was not taken back: %v", data, err)
	}
	for _, p := range []string{kernel, img, data} {
		if got, err := os.ReadFile(p); err != nil || string(got) != "keep "+p {
			t.Errorf("%s: %q %v", p, got, err)
		}
	}
}

// shortStateDir is a state directory for a jailed run, removed after the test. It is short (not
// t.TempDir()): the events socket's path in the chroot holds it twice.
func shortStateDir(t *testing.T) string {
	t.Helper()
	state, err := os.MkdirTemp("", "fcj")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	return state
}

// setFakeEnv sets the fake firecracker's variables (testdata/fakefc), each NAME=VALUE.
func setFakeEnv(t *testing.T, kvs ...string) {
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// testVmlinux is the Debian kernel decompressed into the tests' cache, and that cache.
func testVmlinux(t *testing.T) (kernel, cacheDir string) {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	cacheDir = filepath.Join(cache, "ukernel-test", "vmlinux")
	kernel, err = bootfiles.Vmlinux(testenv.DebianKernel(t).Vmlinuz, "", cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	return kernel, cacheDir
}
