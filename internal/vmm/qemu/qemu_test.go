package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/runlog"
	"github.com/ukernel-dev/ukernel/internal/testenv"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/vmmtest"
)

func TestArgs(t *testing.T) {
	spec := vmm.Spec{
		Kernel: "/c/vmlinuz", Initrd: "/c/initrd.img", Cmdline: "quiet", VCPU: 2, MemoryMB: 512, Accel: "tcg",
		Disks:       []vmm.Disk{{ID: "root", Path: "/p/dist/a,b.img", ReadOnly: true}, {ID: "config", Path: "/s/a.config", ReadOnly: true}},
		Net:         vmm.Net{Mode: "user", Publish: []vmm.Port{{Host: 8080, Guest: 80}, {Host: 2222, Guest: 22}}},
		ConsolePath: "/r/console.log", EventsPath: "/r/events.jsonl", ControlSocket: "/s/a.ctl", APISocket: "/s/a.qmp",
	}
	got, err := Args(spec)
	if err != nil {
		t.Fatal(err)
	}
	want := "-M microvm,pit=on,pic=on,rtc=on -accel tcg -cpu max,erms=off,fsrm=off " +
		"-object memory-backend-memfd,id=ram,size=512M -machine memory-backend=ram -m 512 -smp 2 -nodefaults -no-user-config -nographic -no-reboot " +
		"-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny " +
		"-kernel /c/vmlinuz -initrd /c/initrd.img -append quiet console=ttyS0 tsc_early_khz=" + strconv.FormatInt(hostTSCKHz(), 10) + " tsc=reliable " +
		"-chardev file,id=con,path=/r/console.log,append=on -serial chardev:con " +
		"-drive id=root,file=/p/dist/a,,b.img,format=raw,if=none,readonly=on -device virtio-blk-device,drive=root " +
		"-drive id=config,file=/s/a.config,format=raw,if=none,readonly=on -device virtio-blk-device,drive=config " +
		"-device virtio-serial-device -chardev file,id=ev,path=/r/events.jsonl -device virtserialport,chardev=ev,name=ukernel.events " +
		"-chardev socket,id=ctl,path=/s/a.ctl,server=on,wait=off -device virtserialport,chardev=ctl,name=ukernel.ctl " +
		"-netdev user,id=n0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=tcp:127.0.0.1:2222-:22 -device virtio-net-device,netdev=n0 " +
		"-qmp unix:/s/a.qmp,server=on,wait=off"
	if g := strings.Join(got, " "); g != want {
		t.Errorf("args:\n got %s\nwant %s", g, want)
	}

	spec.Accel, spec.Net = "kvm", vmm.Net{Mode: "tap", Iface: "tap0"}
	got, err = Args(spec)
	if err != nil {
		t.Fatal(err)
	}
	g := strings.Join(got, " ")
	if strings.Contains(g, "memory-backend") {
		t.Errorf("kvm args use a memfd backend (KVM wants huge pages): %s", g)
	}
	for _, s := range []string{"-accel kvm -m 512", "-netdev tap,id=n0,ifname=tap0,script=no,downscript=no", "-append quiet console=ttyS0 -chardev"} {
		if !strings.Contains(g, s) {
			t.Errorf("kvm/tap args lack %q: %s", s, g)
		}
	}
	spec.Net.Publish = []vmm.Port{{Host: 1, Guest: 1}}
	if _, err := Args(spec); err == nil || !strings.Contains(err.Error(), "--net user") {
		t.Errorf("publish on tap: got %v, want an error naming --net user", err)
	}
}

func TestMissingTapFailsBeforeQEMU(t *testing.T) {
	dir := t.TempDir()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := New(nil).Start(ctx, vmm.Spec{
		Kernel: "/nonexistent", Accel: "tcg", Net: vmm.Net{Mode: "tap", Iface: "ukmissing0"},
		ConsolePath: filepath.Join(dir, "console.log"), APISocket: filepath.Join(dir, "q.qmp"),
	})
	if err == nil || !strings.Contains(err.Error(), `tap device "ukmissing0" does not exist`) {
		t.Fatalf("got %v, want a missing-tap error", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("missing tap took %s to report", d)
	}
	if _, err := os.Stat(filepath.Join(dir, "q.qmp")); err == nil {
		t.Error("QEMU was started despite the missing tap")
	}
}

func TestBusyPublishedPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	err = CheckNet(vmm.Net{Mode: "user", Publish: []vmm.Port{{Host: port, Guest: 80}}})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("host port %d on 127.0.0.1 is not free", port)) {
		t.Fatalf("got %v, want a busy-port error", err)
	}
}

// guest holds the files of one test guest.
type guest struct {
	spec vmm.Spec
	run  runlog.Run
}

func newGuest(t *testing.T, initrd string) guest {
	t.Helper()
	testenv.RequireTools(t, vmm.QEMUBinary)
	k := testenv.DebianKernel(t)
	// Sockets need short paths: t.TempDir() under a long test name can pass sun_path's 107 bytes.
	sock, err := os.MkdirTemp("", "ukq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sock) })
	run := runlog.Run{ID: "test", Dir: t.TempDir()}
	return guest{run: run, spec: vmm.Spec{
		Kernel: k.Vmlinuz, Initrd: initrd, Cmdline: "quiet panic=-1", MemoryMB: 256, Accel: "tcg",
		Net:         vmm.Net{Mode: "none"},
		ConsolePath: run.Console(), EventsPath: run.Events(), LogPath: run.VMMLog(),
		ControlSocket: filepath.Join(sock, "g.ctl"), APISocket: filepath.Join(sock, "g.qmp"),
	}}
}

func startGuest(t *testing.T, g guest) *vmm.VM {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	vm, err := New(nil).Start(ctx, g.spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if vm.Alive() {
			t.Errorf("QEMU pid %d still runs at the end of the test; killing it", vm.PID)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			vmm.Stop(ctx, New(nil), vm.Handle, time.Second, nil)
		}
	})
	return vm
}

func waitConsole(t *testing.T, g guest, vm *vmm.VM, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(g.run.Console())
		if strings.Contains(string(b), want) {
			return
		}
		if vm != nil && !vm.Alive() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(g.run.Console())
	t.Fatalf("console did not show %q within %s; console:\n%s", want, d, lastBytes(b, 2000))
}

func lastBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func TestKernelPanicIsReported(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	// No initrd and no root device: the kernel panics ("VFS: Unable to mount root fs"),
	// panic=-1 reboots, -no-reboot makes QEMU exit.
	g := newGuest(t, "")
	vm := startGuest(t, g)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := vm.Wait(ctx); err != nil {
		t.Fatalf("QEMU: %v", err)
	}
	out := runlog.ReadOutcome(g.run)
	if out.Code != 125 || out.Reported || !strings.Contains(out.Reason, "kernel panic") || !strings.Contains(out.Reason, "Unable to mount root fs") {
		t.Errorf("outcome %+v, want 125 with a kernel panic reason", out)
	}
}

func TestGracefulStopOverControlPort(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	k := testenv.DebianKernel(t)
	initrd := filepath.Join(t.TempDir(), "initrd")
	script := vmmtest.Preamble + vmmtest.PortFunc + `
ctl=$(port ukernel.ctl)
ev=$(port ukernel.events)
echo "guest ready ctl=$ctl ev=$ev"
# Reads return EOF while no host is connected to the port: retry until a line arrives.
line=
while [ -z "$line" ]; do read line < "$ctl" || sleep 0.1; done
echo "control: $line"
printf '{"type":"poweroff","t_ns":1,"code":3}\n' > "$ev"
poweroff -f
`
	if err := vmmtest.WriteInitrd(initrd, script, vmmtest.ModulePaths(k.ModulesDir)); err != nil {
		t.Fatal(err)
	}
	// Only root may read it: QEMU, which runs as another user when the test runs as root, gets
	// a copy.
	if err := os.Chmod(initrd, 0o600); err != nil {
		t.Fatal(err)
	}
	g := newGuest(t, initrd)
	vm := startGuest(t, g)
	waitConsole(t, g, vm, "guest ready ctl=/dev/vport", 60*time.Second)
	checkCredentials(t, vm.PID, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	res, err := vmm.Stop(ctx, New(nil), vm.Handle, 20*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res != vmm.StoppedGracefully {
		b, _ := os.ReadFile(g.run.Console())
		t.Fatalf("stop result %s, want graceful; console:\n%s", res, lastBytes(b, 2000))
	}
	if err := vm.Wait(ctx); err != nil {
		t.Errorf("QEMU exit: %v", err)
	}
	waitConsole(t, g, nil, `control: {"type":"stop","grace_s":19}`, time.Second)
	if out := runlog.ReadOutcome(g.run); out.Code != 3 || !out.Reported {
		t.Errorf("outcome %+v, want the guest's code 3", out)
	}
	if vm.Alive() {
		t.Error("QEMU still alive after a graceful stop")
	}
}

func TestStopFallsBackToQuit(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	initrd := filepath.Join(t.TempDir(), "initrd")
	// A guest that never reads its control port.
	if err := vmmtest.WriteInitrd(initrd, vmmtest.Preamble+"echo sleeping\nwhile :; do sleep 1; done\n", nil); err != nil {
		t.Fatal(err)
	}
	g := newGuest(t, initrd)
	// As root, a privileged published port: QEMU keeps the one capability that binds it.
	low, caps := 0, uint64(0)
	if vmm.Unprivileged() {
		low, caps = freeLowPort(t), 1<<unix.CAP_NET_BIND_SERVICE
		g.spec.Net = vmm.Net{Mode: "user", Publish: []vmm.Port{{Host: low, Guest: 80}}}
	}
	vm := startGuest(t, g)
	waitConsole(t, g, vm, "sleeping", 60*time.Second)
	checkCredentials(t, vm.PID, caps)
	if low != 0 {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", low), 5*time.Second); err != nil {
			t.Errorf("published port %d: %v", low, err)
		} else {
			c.Close()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	q, err := DialQMP(ctx, g.spec.APISocket)
	if err != nil {
		t.Fatal(err)
	}
	var status struct {
		Status string `json:"status"`
	}
	err = q.Execute(ctx, "query-status", nil, &status)
	q.Close()
	if err != nil || status.Status != "running" {
		t.Fatalf("query-status: %+v, %v; want running", status, err)
	}
	start := time.Now()
	res, err := vmm.Stop(ctx, New(nil), vm.Handle, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res != vmm.StoppedByQuit {
		t.Errorf("stop result %s, want quit", res)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stop took %s", d)
	}
	if vm.Alive() {
		t.Error("QEMU still alive")
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", vm.PID)); err == nil {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", vm.PID)); strings.Contains(string(b), g.spec.APISocket) {
			t.Errorf("pid %d is still our QEMU", vm.PID)
		}
	}
}

func TestQEMUStartFailureIsClear(t *testing.T) {
	testenv.RequireTools(t, vmm.QEMUBinary)
	g := guest{run: runlog.Run{Dir: t.TempDir()}}
	sock, _ := os.MkdirTemp("", "ukq")
	defer os.RemoveAll(sock)
	g.spec = vmm.Spec{Kernel: filepath.Join(t.TempDir(), "no-such-kernel"), Accel: "tcg", Net: vmm.Net{Mode: "none"},
		ConsolePath: g.run.Console(), LogPath: g.run.VMMLog(), APISocket: filepath.Join(sock, "q")}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// As root, ukernel opens the kernel for QEMU (which runs as another user) and says so itself.
	_, err := New(nil).Start(ctx, g.spec)
	if err == nil || !strings.Contains(err.Error(), "no-such-kernel") ||
		!vmm.Unprivileged() && !strings.Contains(err.Error(), "QEMU exited while starting") {
		t.Fatalf("got %v, want a message about the kernel", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("start failure waited for the deadline")
	}
	// A kernel QEMU cannot load: QEMU's own message.
	if err := os.WriteFile(g.spec.Kernel, []byte("not a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = New(nil).Start(ctx, g.spec)
	if err == nil || !strings.Contains(err.Error(), "QEMU exited while starting") || !strings.Contains(err.Error(), "kernel") {
		t.Fatalf("got %v, want QEMU's own message about the kernel", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("start failure waited for the deadline")
	}
}

// TestTapAsRoot: QEMU started by root (as nobody) gets the tap device attached by root; by name
// it could not (/dev/net/tun and the device are root's).
func TestTapAsRoot(t *testing.T) {
	if testing.Short() || !vmm.Unprivileged() {
		t.Skip("boots a VM; makes a tap device as root")
	}
	testenv.RequireTools(t, "ip")
	tap := fmt.Sprintf("uktap%d", os.Getpid()%100000)
	if out, err := exec.Command("ip", "tuntap", "add", "dev", tap, "mode", "tap").CombinedOutput(); err != nil {
		t.Skipf("ip tuntap add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "tuntap", "del", "dev", tap, "mode", "tap").Run() })
	if out, err := exec.Command("ip", "link", "set", "dev", tap, "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set up: %v: %s", err, out)
	}
	carrier := func() string {
		b, _ := os.ReadFile(filepath.Join("/sys/class/net", tap, "carrier"))
		return strings.TrimSpace(string(b))
	}
	if c := carrier(); c != "0" {
		t.Fatalf("carrier %q before QEMU, want 0", c)
	}
	initrd := filepath.Join(t.TempDir(), "initrd")
	if err := vmmtest.WriteInitrd(initrd, vmmtest.Preamble+"echo sleeping\nwhile :; do sleep 1; done\n", nil); err != nil {
		t.Fatal(err)
	}
	g := newGuest(t, initrd)
	g.spec.Net = vmm.Net{Mode: "tap", Iface: tap}
	vm := startGuest(t, g)
	checkCredentials(t, vm.PID, 0)
	if c := carrier(); c != "1" {
		t.Errorf("carrier %q with QEMU attached, want 1", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := vmm.Stop(ctx, New(nil), vm.Handle, time.Second, nil); err != nil {
		t.Fatal(err)
	}
}

// TestKVMOnlyRootMayOpen: as root with a /dev/kvm only root may open, --accel kvm fails before
// QEMU starts, saying why (QEMU, as nobody, would fail on /dev/kvm).
func TestKVMOnlyRootMayOpen(t *testing.T) {
	if !vmm.Unprivileged() || vmm.KVMAccess() == "" {
		t.Skip("needs root and a /dev/kvm only root may open")
	}
	g := newGuest(t, "")
	g.spec.Accel = vmm.AccelKVM
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := New(nil).Start(ctx, g.spec); err == nil || !strings.Contains(err.Error(), "kvm group") {
		t.Fatalf("got %v, want the /dev/kvm error", err)
	}
	if _, err := os.Stat(g.run.VMMLog()); err == nil {
		t.Error("QEMU was started")
	}
}

func TestHostTSCKHz(t *testing.T) {
	// Every x86-64 host of the last decade runs its TSC between 1 and 5 GHz; and two
	// measurements in one process agree (it is measured once).
	khz := hostTSCKHz()
	if khz < 1_000_000 || khz > 5_000_000 {
		t.Fatalf("host TSC %d kHz is implausible", khz)
	}
	if !strings.Contains(Cmdline("quiet tsc_early_khz=2000000", vmm.AccelTCG), "tsc_early_khz="+strconv.FormatInt(khz, 10)) {
		t.Error("the measured rate does not override the image's default under TCG")
	}
	if c := Cmdline("quiet", vmm.AccelKVM); strings.Contains(c, "tsc_early_khz") || strings.Contains(c, "tsc=") {
		t.Errorf("TCG's clock settings added under KVM: %s", c)
	}
	if c := Cmdline("quiet tsc=unstable", vmm.AccelTCG); strings.Contains(c, "tsc=reliable") {
		t.Errorf("the image's own tsc= setting overridden: %s", c)
	}
}

func TestTSCCache(t *testing.T) {
	if bootID() == "" {
		t.Fatal("no /proc/sys/kernel/random/boot_id")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, cache.HostTSCFile)
	if _, ok := readTSCCache(path); ok {
		t.Fatal("a missing cache file gave a rate")
	}
	for content, want := range map[string]bool{
		bootID() + " 2596000\n":                        true,
		"00000000-0000-0000-0000-000000000000 2596000": false, // measured during another boot
		bootID() + " fast":                             false,
		bootID() + " 12":                               false, // implausible
		bootID():                                       false,
	} {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		khz, ok := readTSCCache(path)
		if ok != want || (ok && khz != 2596000) {
			t.Errorf("cache %q: got %d, %v; want ok=%v", content, khz, ok, want)
		}
	}
	// What hostTSCKHz wrote for this boot is what it reads back.
	if khz, ok := readTSCCache(tscCachePath()); !ok || khz != hostTSCKHz() {
		t.Errorf("cache at %s: got %d, %v; want %d", tscCachePath(), khz, ok, hostTSCKHz())
	}
}

// checkCredentials checks, when the test runs as root, that QEMU (pid) runs as
// vmm.UnprivilegedUID without supplementary groups, with the capabilities caps only and
// no_new_privs set (by its seccomp sandbox); as another user, that it runs as that user.
func checkCredentials(t *testing.T, pid int, caps uint64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	st := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			st[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	if !vmm.Unprivileged() {
		if u := strconv.Itoa(os.Geteuid()); st["Uid"] != u+" "+u+" "+u+" "+u {
			t.Errorf("QEMU's Uid %q, want this user's", st["Uid"])
		}
		return
	}
	want := map[string]string{
		"Uid": "65534 65534 65534 65534", "Gid": "65534 65534 65534 65534", "Groups": "",
		"CapEff": fmt.Sprintf("%016x", caps), "CapPrm": fmt.Sprintf("%016x", caps), "CapAmb": fmt.Sprintf("%016x", caps),
		"NoNewPrivs": "1",
	}
	for k, v := range want {
		if st[k] != v {
			t.Errorf("QEMU's %s: %q, want %q", k, st[k], v)
		}
	}
}

// freeLowPort returns a free TCP port on 127.0.0.1 below 1024 (one only root may bind).
func freeLowPort(t *testing.T) int {
	t.Helper()
	for p := 1000; p > 900; p-- {
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			l.Close()
			return p
		}
	}
	t.Fatal("no free port on 127.0.0.1 from 901 to 1000")
	return 0
}

// A command line with init arguments ("--" and the words after it, which the kernel hands to
// init) keeps them last: the backend's kernel words go before them, or init would get them as
// arguments and the kernel would not see them.
func TestCmdlineKeepsInitArgsLast(t *testing.T) {
	c := Cmdline("quiet rdinit=/usr/bin/python3 -- /app/main.py", vmm.AccelTCG)
	if !strings.HasSuffix(c, " -- /app/main.py") {
		t.Fatalf("init's arguments are not last: %s", c)
	}
	kernel, _, _ := strings.Cut(c, " -- ")
	for _, w := range []string{"console=ttyS0", "tsc_early_khz=", "tsc=reliable"} {
		if !strings.Contains(kernel, w) {
			t.Errorf("%s not among the kernel's words: %s", w, c)
		}
	}
	a, err := Args(vmm.Spec{
		Kernel: "/k", Cmdline: "quiet -- a b", Accel: vmm.AccelTCG, MemoryMB: 256,
		ConsolePath: "/c", APISocket: "/q", OutputSocket: "/o", ExecSocket: "/e",
	})
	if err != nil {
		t.Fatal(err)
	}
	appended := a[slices.Index(a, "-append")+1]
	if !strings.HasSuffix(appended, " -- a b") || !strings.Contains(appended, abi.OutputSerialFlag+" ") || !strings.Contains(appended, abi.ExecPortsFlag+"=") {
		t.Errorf("the output and exec flags are not kernel words before init's arguments: %s", appended)
	}
}
