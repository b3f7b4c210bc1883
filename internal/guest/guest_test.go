package guest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

func drive(body []byte, length uint64) []byte {
	var b bytes.Buffer
	b.WriteString(abi.ConfigMagic)
	_ = binary.Write(&b, binary.LittleEndian, length)
	b.Write(body)
	return b.Bytes()
}

func TestReadConfig(t *testing.T) {
	good := []byte(`{"abi":"0.3.7","hostname":"h","env":{"TOKEN":"hunter2"},"network":{"mode":"none"}}`)
	cfg, err := ReadConfig(bytes.NewReader(append(drive(good, uint64(len(good))), make([]byte, 512)...)))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hostname != "h" || cfg.Env["TOKEN"] != "hunter2" || cfg.Network.Mode != "none" {
		t.Errorf("decoded %+v", cfg)
	}

	secretJSON := []byte(`{"abi":"0.3.0","env":{"TOKEN":"hunter2"`) // truncated JSON holding a secret
	for _, tc := range []struct {
		name string
		data []byte
		want string // substring of the error; "" means ErrNoConfig
	}{
		{"empty", nil, ""},
		{"short header", []byte("UKCON"), ""},
		{"other magic", append([]byte("\x00\x00\x00\x00\x00\x00\x00\x00"), make([]byte, 64)...), ""},
		{"zero length", drive(nil, 0), "out of range"},
		{"oversized", drive(nil, MaxConfigSize+1), "out of range"},
		{"huge", drive(nil, 1<<63), "out of range"},
		{"truncated", drive(good[:10], uint64(len(good))), "truncated"},
		{"corrupt", drive(secretJSON, uint64(len(secretJSON))), "JSON invalid"},
		{"wrong type", drive([]byte(`{"abi":"0.3.0","env":[1]}`), 25), `field "env" does not fit (want an object at byte 21)`},
		{"not an object", drive([]byte(`[1]`), 3), "does not fit a boot config (want an object at byte 0)"},
		{"abi mismatch", drive([]byte(`{"abi":"1.0.0"}`), 15), "ABI mismatch"},
		{"abi missing", drive([]byte(`{}`), 2), "did not state an ABI"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadConfig(bytes.NewReader(tc.data))
			if tc.want == "" {
				if !errors.Is(err, ErrNoConfig) {
					t.Fatalf("got %v, want ErrNoConfig", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error leaks a config value: %v", err)
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig(&abi.Manifest{Name: "w", Run: abi.RunDefaults{Net: "user"}})
	want := abi.Network{Mode: "user", Address: "10.0.2.15/24", Gateway: "10.0.2.2", DNS: []string{"10.0.2.3"}}
	if !reflect.DeepEqual(c.Network, want) || c.Hostname != "w" || c.ABI != abi.Version {
		t.Errorf("got %+v", c)
	}
	if c := DefaultConfig(&abi.Manifest{Run: abi.RunDefaults{Net: "none"}}); c.Network.Address != "" {
		t.Errorf("net none got an address: %+v", c.Network)
	}
}

func TestParseUevent(t *testing.T) {
	kv := ParseUevent([]byte("MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nPARTN=1\nPARTNAME=ukernel-root\n\njunk\n"))
	want := map[string]string{"MAJOR": "254", "MINOR": "2", "DEVNAME": "vda2", "DEVTYPE": "partition", "PARTN": "1", "PARTNAME": "ukernel-root"}
	if !reflect.DeepEqual(kv, want) {
		t.Errorf("got %v", kv)
	}
}

// fakeSys builds a sysfs-like tree: class/block links into devices/, as the kernel lays it out.
func fakeSys(t *testing.T) string {
	t.Helper()
	sys := t.TempDir()
	write := func(p, s string) {
		t.Helper()
		p = filepath.Join(sys, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, name string) {
		t.Helper()
		p := filepath.Join(sys, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	dev := "devices/platform/virtio-mmio.0/virtio0/block/"
	write(dev+"vda/uevent", "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n")
	write(dev+"vda/vda1/uevent", "MAJOR=254\nMINOR=1\nDEVNAME=vda1\nDEVTYPE=partition\nPARTNAME=ukernel-boot\n")
	write(dev+"vda/vda2/uevent", "MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nPARTNAME=ukernel-root\n")
	write("devices/platform/virtio-mmio.1/virtio1/block/vdb/uevent", "DEVNAME=vdb\nDEVTYPE=disk\n")
	for _, n := range []string{"vda", "vda/vda1", "vda/vda2"} {
		link("../../"+dev+n, "class/block/"+filepath.Base(n))
	}
	link("../../devices/platform/virtio-mmio.1/virtio1/block/vdb", "class/block/vdb")
	write("class/virtio-ports/vport2p0/name", "\n") // port 0 of a virtio-serial device is unnamed
	write("class/virtio-ports/vport2p1/name", abi.EventsPort+"\n")
	write("class/virtio-ports/vport2p2/name", abi.ControlPort+"\n")
	return sys
}

func TestBlockDevicesAndPorts(t *testing.T) {
	sys := fakeSys(t)
	devs, err := BlockDevices(sys)
	if err != nil {
		t.Fatal(err)
	}
	want := []BlockDev{
		{Name: "vda", Disk: true},
		{Name: "vda1", PartName: "ukernel-boot", Parent: "vda"},
		{Name: "vda2", PartName: "ukernel-root", Parent: "vda"},
		{Name: "vdb", Disk: true},
	}
	if !reflect.DeepEqual(devs, want) {
		t.Errorf("got %+v\nwant %+v", devs, want)
	}
	root, ok := FindPartition(devs, abi.RootLabel)
	if !ok || root.Name != "vda2" || root.Parent != "vda" {
		t.Errorf("root partition: %+v %v", root, ok)
	}
	if _, ok := FindPartition(devs, "nope"); ok {
		t.Error("found a partition that does not exist")
	}
	ports, err := VirtioPorts(sys)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{abi.EventsPort: "vport2p1", abi.ControlPort: "vport2p2"}; !reflect.DeepEqual(ports, want) {
		t.Errorf("ports %v, want %v", ports, want)
	}
	// No virtio-serial device at all is "nothing yet", not an error.
	if p, err := VirtioPorts(t.TempDir()); err != nil || len(p) != 0 {
		t.Errorf("empty sysfs: %v %v", p, err)
	}
	if _, err := BlockDevices(t.TempDir()); err == nil {
		t.Error("missing class/block should be an error")
	}
}

func TestFindConfig(t *testing.T) {
	devDir := t.TempDir()
	body := []byte(`{"abi":"0.3.0","hostname":"cfg"}`)
	if err := os.WriteFile(filepath.Join(devDir, "vdb"), drive(body, uint64(len(body))), 0o644); err != nil {
		t.Fatal(err)
	}
	// The image disk: a protective MBR, never a config drive even when its bytes would match.
	if err := os.WriteFile(filepath.Join(devDir, "vda"), drive(body, uint64(len(body))), 0o644); err != nil {
		t.Fatal(err)
	}
	devs := []BlockDev{{Name: "vda", Disk: true}, {Name: "vda2", Parent: "vda"}, {Name: "vdb", Disk: true}, {Name: "vdc", Disk: true}}
	cfg, path, err := FindConfig(devs, devDir, "vda")
	if err != nil || cfg == nil || cfg.Hostname != "cfg" || path != devDir+"/vdb" {
		t.Fatalf("got %+v %q %v", cfg, path, err)
	}
	cfg, _, err = FindConfig(devs[:2], devDir, "vda")
	if cfg != nil || err != nil {
		t.Fatalf("no config drive: got %+v %v", cfg, err)
	}
}

func TestModulePaths(t *testing.T) {
	mods := []string{"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko", "kernel/fs/erofs/erofs.ko.xz"}
	got, err := ModulePaths("/", "6.1.0-56-cloud-amd64", mods)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/lib/modules/6.1.0-56-cloud-amd64/kernel/drivers/virtio/virtio_ring.ko",
		"/lib/modules/6.1.0-56-cloud-amd64/kernel/drivers/virtio/virtio.ko",
		"/lib/modules/6.1.0-56-cloud-amd64/kernel/fs/erofs/erofs.ko.xz",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v", got)
	}
	for _, bad := range []string{"/etc/passwd", "../../x.ko", "", "kernel/../../../x.ko"} {
		if _, err := ModulePaths("/", "r", []string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := ModulePaths("/", "", mods); err == nil {
		t.Error("empty release accepted")
	}
	if err := LoadModule(filepath.Join(t.TempDir(), "missing.ko")); err == nil || !strings.Contains(err.Error(), "missing.ko") {
		t.Errorf("missing module: %v", err)
	}
}

func TestMergeEnv(t *testing.T) {
	got := MergeEnv("/root",
		map[string]string{"B": "image", "A": "image", "LANG": "en_US.UTF-8"},
		map[string]string{"B": "run", "C": "run", "BAD=KEY": "x", "": "y"})
	want := []string{"PATH=" + BasePath, "HOME=/root", "LANG=en_US.UTF-8", "A=image", "B=run", "C=run"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		ws   syscall.WaitStatus
		want int
	}{
		{0, 0},
		{3 << 8, 3},
		{255 << 8, 255},
		{syscall.WaitStatus(syscall.SIGTERM), 143},
		{syscall.WaitStatus(syscall.SIGKILL), 137},
		{syscall.WaitStatus(syscall.SIGSEGV) | 0x80, 139}, // core dumped
	} {
		if got := ExitCode(tc.ws); got != tc.want {
			t.Errorf("ExitCode(%#x) = %d, want %d", uint32(tc.ws), got, tc.want)
		}
	}
}

func TestEmitter(t *testing.T) {
	em := NewEmitter(4)
	em.Emit(abi.Event{Type: abi.EventHello, ABI: abi.Version})
	em.Phase("init", Now())
	for i := 0; i < 5; i++ {
		em.Emit(abi.Event{Type: abi.EventHealth})
	}
	if em.Dropped() != 3 {
		t.Errorf("dropped %d, want 3", em.Dropped())
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	em.Attach(w) // queued events are written once the port exists
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	em.Close(ctx)
	em.Emit(abi.Event{Type: abi.EventPowerOff}) // after Close: ignored, no panic
	w.Close()
	var out bytes.Buffer
	if _, err := out.ReadFrom(r); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], `{"type":"hello","t_ns":`) || !strings.Contains(lines[1], `"name":"init"`) {
		t.Errorf("got %q", lines)
	}

	// A writer that never accepts must not hold Close past its deadline.
	blocked := NewEmitter(4)
	br, bw, _ := os.Pipe()
	defer br.Close()
	defer bw.Close()
	big := strings.Repeat("x", 1<<20)
	blocked.Emit(abi.Event{Type: abi.EventError, Message: big}) // larger than the pipe buffer
	blocked.Attach(bw)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	start := time.Now()
	blocked.Close(ctx2)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
}

func TestSupervisor(t *testing.T) {
	s := NewSupervisor()
	sigchld := make(chan os.Signal, 8)
	signal.Notify(sigchld, syscall.SIGCHLD)
	defer signal.Stop(sigchld)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		for {
			select {
			case <-sigchld:
				s.Reap()
			case <-ctx.Done():
				return
			}
		}
	}()
	env := MergeEnv("/", map[string]string{"X": "42"})
	p, err := s.Start(Spec{Name: "exit", Argv: []string{"sh", "-c", `test "$X" = 42 && test "$(pwd)" = /tmp && exit 5`}, Env: env, Dir: "/tmp"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		t.Fatal("process did not exit")
	}
	if p.Code() != 5 {
		t.Errorf("code %d, want 5", p.Code())
	}

	// NoNewPrivs really reaches the child.
	out, err := os.CreateTemp(t.TempDir(), "status")
	if err != nil {
		t.Fatal(err)
	}
	p, err = s.Start(Spec{Name: "nnp", Argv: []string{"grep", "NoNewPrivs", "/proc/self/status"}, Env: env, Dir: "/", Stdout: out, NoNewPrivs: true})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	b, _ := os.ReadFile(out.Name())
	if !strings.Contains(string(b), "NoNewPrivs:\t1") {
		t.Errorf("child status: %q", b)
	}

	// Stop: SIGTERM to the group, SIGKILL after grace for one that ignores it.
	p, err = s.Start(Spec{Name: "stubborn", Argv: []string{"sh", "-c", `trap "" TERM; while :; do sleep 0.1; done`}, Env: env, Dir: "/"})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let the trap be set
	start := time.Now()
	s.Stop(ctx, 300*time.Millisecond)
	if p.Code() != 137 || time.Since(start) > 5*time.Second {
		t.Errorf("stubborn: code %d after %v", p.Code(), time.Since(start))
	}

	if _, err := s.Start(Spec{Name: "missing", Argv: []string{"no-such-command-ukernel"}, Env: env, Dir: "/"}); err == nil || !strings.Contains(err.Error(), "not found in PATH") {
		t.Errorf("missing command: %v", err)
	}
	if _, err := s.Start(Spec{Name: "nodir", Argv: []string{"true"}, Env: env, Dir: "/no-such-dir-ukernel"}); err == nil || !strings.Contains(err.Error(), "working directory /no-such-dir-ukernel in the image: no such file or directory") {
		t.Errorf("missing working directory: %v", err)
	}
	if len(s.Running()) != 0 {
		t.Errorf("still running: %v", s.Running())
	}
}

// TestDirInRoot: an absolute symlink resolves inside the root, as it will for the chrooted process.
func TestDirInRoot(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "opt", "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/opt/app", filepath.Join(root, "srv")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := dirInRoot(root, "/srv"); err != nil {
		t.Errorf("/srv -> /opt/app inside the root: %v", err)
	}
	if err := dirInRoot(root, "/file"); !errors.Is(err, unix.ENOTDIR) {
		t.Errorf("a file: %v, want ENOTDIR", err)
	}
	if err := dirInRoot(root, "/missing"); !errors.Is(err, unix.ENOENT) {
		t.Errorf("missing: %v, want ENOENT", err)
	}
}

func TestEtcFiles(t *testing.T) {
	files := EtcFiles("web", []string{"10.0.2.3", "1.1.1.1"})
	if files["etc/resolv.conf"] != "nameserver 10.0.2.3\nnameserver 1.1.1.1\n" || files["etc/hostname"] != "web\n" ||
		!strings.Contains(files["etc/hosts"], "127.0.1.1\tweb\n") {
		t.Errorf("got %q", files)
	}
}

func TestPeakRSSKB(t *testing.T) {
	if kb := peakRSSKB(); kb <= 0 || kb > 1<<22 {
		t.Errorf("peak RSS of the test process: %d KiB", kb)
	}
}

// TestLinkUp brings lo up in a fresh network namespace, where it starts down.
func TestLinkUp(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	res := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends in its own namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			res <- err
			return
		}
		flags := func() uint16 {
			fd, _ := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
			defer unix.Close(fd)
			ifr, _ := unix.NewIfreq("lo")
			_ = unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr)
			return ifr.Uint16()
		}
		if flags()&unix.IFF_UP != 0 {
			res <- errors.New("lo is up in a new namespace already")
			return
		}
		if err := linkUp("lo"); err != nil {
			res <- err
			return
		}
		if flags()&unix.IFF_UP == 0 {
			res <- errors.New("lo is still down")
			return
		}
		if err := linkUp("no-such-link0"); err == nil {
			res <- errors.New("a missing interface gave no error")
			return
		}
		res <- nil
	}()
	if err := <-res; err != nil {
		t.Fatal(err)
	}
}

// TestMkdirLike: a directory created in the overlay's upper layer keeps the lower one's mode and
// owner (overlayfs shows the upper directory's).
func TestMkdirLike(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	lower, upper := t.TempDir(), t.TempDir()
	if err := os.MkdirAll(filepath.Join(lower, "etc", "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(lower, "etc"), 0o750)
	os.Chown(filepath.Join(lower, "etc"), 1000, 1001)
	if err := mkdirLike(upper, lower, "etc/app/conf.d"); err != nil {
		t.Fatal(err)
	}
	check := func(rel string, mode os.FileMode, uid, gid uint32) {
		t.Helper()
		fi, err := os.Stat(filepath.Join(upper, rel))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != mode || st.Uid != uid || st.Gid != gid {
			t.Errorf("%s: %v %d:%d, want %v %d:%d", rel, fi.Mode().Perm(), st.Uid, st.Gid, mode, uid, gid)
		}
	}
	check("etc", 0o750, 1000, 1001)
	check("etc/app", 0o755, 0, 0)
	check("etc/app/conf.d", 0o755, 0, 0) // not in the lower layer: the default
	if err := mkdirLike(upper, lower, "etc"); err != nil {
		t.Errorf("an existing directory: %v", err)
	}
}

func TestParseIdle(t *testing.T) {
	d, ok := parseIdle("cpu  1000 20 300 4000 50 6 7 0 0 0")
	if !ok || d != 40500*time.Millisecond {
		t.Errorf("got %v %v, want 40.5s", d, ok)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5", "cpu 1 2 3 x 5", "cpu 1 2"} {
		if _, ok := parseIdle(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
	if _, ok := idleTime(); !ok {
		t.Error("no idle time from this host's /proc/stat")
	}
	// settled ends by its bound, whatever the host does meanwhile.
	start := time.Now()
	settled(2 * time.Second)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("settled(2s) took %v", took)
	}
}

// TestSetReadahead sets a loop device's readahead and reads it back from sysfs.
func TestSetReadahead(t *testing.T) {
	if err := SetReadahead(filepath.Join(t.TempDir(), "missing"), 1); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing device: got %v, want an error naming it", err)
	}
	file := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(file, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := SetReadahead(file, 1); err == nil {
		t.Error("a regular file took a readahead")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for a loop device")
	}
	out, err := exec.Command("losetup", "--find", "--show", file).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "--detach", dev).Run()
	if err := SetReadahead(dev, RootReadaheadKB); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "queue", "read_ahead_kb"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != strconv.Itoa(RootReadaheadKB) {
		t.Errorf("%s: read_ahead_kb %s, want %d", dev, got, RootReadaheadKB)
	}
}

func TestPoll(t *testing.T) {
	calls := 0
	if err := Poll(time.Second, time.Millisecond, func() (string, error) { calls++; return "", nil }); err != nil || calls != 1 {
		t.Errorf("done at once: %v after %d checks", err, calls)
	}
	calls = 0
	if err := Poll(5*time.Second, time.Millisecond, func() (string, error) {
		if calls++; calls < 3 {
			return "the thing", nil
		}
		return "", nil
	}); err != nil || calls != 3 {
		t.Errorf("done at the third check: %v after %d checks", err, calls)
	}
	start := time.Now()
	err := Poll(50*time.Millisecond, 5*time.Millisecond, func() (string, error) { return "the disk", nil })
	if err == nil || !strings.Contains(err.Error(), "still missing the disk") || time.Since(start) > 2*time.Second {
		t.Errorf("never done: %v after %s", err, time.Since(start))
	}
	boom := errors.New("boom")
	if err := Poll(time.Second, time.Millisecond, func() (string, error) { return "", boom }); err != boom {
		t.Errorf("failing check: %v", err)
	}
}
