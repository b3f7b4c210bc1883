package guest_test

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/testenv"
)

// bootModules are what a guest with a root disk, the event ports and a NIC needs; their
// dependencies are resolved from each module's .modinfo.
var bootModules = []string{"virtio_mmio", "virtio_blk", "virtio_console", "virtio_net", "erofs", "overlay"}

// qemuArgs is the command line the tests validated (see FACTS.md); the QEMU backend uses the
// same settings.
func qemuArgs(kernel, initrd, disk, configDrive, console, events, ctlSock string) []string {
	args := []string{
		"-M", "microvm,pit=on,pic=on,rtc=on", "-accel", "tcg", "-m", "256",
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 tsc_early_khz=2000000 quiet",
		"-chardev", "file,id=con,path=" + console, "-serial", "chardev:con",
		"-drive", "id=root,file=" + disk + ",format=raw,if=none,readonly=on",
		"-device", "virtio-blk-device,drive=root",
	}
	if configDrive != "" {
		args = append(args, "-drive", "id=cfg,file="+configDrive+",format=raw,if=none,readonly=on",
			"-device", "virtio-blk-device,drive=cfg")
	}
	args = append(args,
		"-netdev", "user,id=n0", "-device", "virtio-net-device,netdev=n0",
		"-device", "virtio-serial-device",
		"-chardev", "file,id=ev,path="+events, "-device", "virtserialport,chardev=ev,name="+abi.EventsPort)
	if ctlSock != "" {
		args = append(args, "-chardev", "socket,id=ctl,path="+ctlSock+",server=on,wait=off",
			"-device", "virtserialport,chardev=ctl,name="+abi.ControlPort)
	}
	return args
}

type guestImage struct {
	kernel, initrd, disk string
}

// buildGuest builds ukernel-init, an initramfs with it, the manifest and the modules, and a GPT
// disk whose ukernel-root partition holds an erofs with busybox.
func buildGuest(t *testing.T, m abi.Manifest) guestImage {
	t.Helper()
	testenv.RequireTools(t, "qemu-system-x86_64", "sgdisk", "mkfs.erofs", "busybox")
	k := testenv.DebianKernel(t)
	dir := t.TempDir()

	initBin := filepath.Join(dir, "init")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", initBin, "../../cmd/ukernel-init")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build ukernel-init: %v\n%s", err, out)
	}

	mods := resolveModules(t, k.ModulesDir, bootModules)
	if m.ABI == "" {
		m.ABI = abi.Version
	}
	m.Kernel.Release = k.Release
	m.Modules = mods
	// The NIC driver and the host channel load on demand, as in a packed image.
	m.ModuleGroups = map[string][]string{}
	for _, mod := range mods {
		switch strings.TrimSuffix(filepath.Base(mod), ".ko") {
		case "failover", "net_failover", "virtio_net":
			m.ModuleGroups[abi.ModulesNet] = append(m.ModuleGroups[abi.ModulesNet], mod)
		case "virtio_console":
			m.ModuleGroups[abi.ModulesVirtioSerial] = append(m.ModuleGroups[abi.ModulesVirtioSerial], mod)
		}
	}
	m.Root.FSType = "erofs"
	mj, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	initBytes, err := os.ReadFile(initBin)
	if err != nil {
		t.Fatal(err)
	}
	recs := []cpio.Record{
		cpio.Directory(".", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.StaticFile("init", string(initBytes), 0o755),
		cpio.StaticFile(strings.TrimPrefix(abi.InitramfsManifest, "/"), string(mj), 0o644),
	}
	dirs := map[string]bool{}
	addDir := func(d string) {
		for p := d; p != "." && !dirs[p]; p = filepath.Dir(p) {
			dirs[p] = true
		}
	}
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "mnt", "ukernel"} {
		addDir(d)
	}
	for _, mod := range mods {
		rel := filepath.Join("lib/modules", k.Release, mod)
		addDir(filepath.Dir(rel))
		data, err := os.ReadFile(filepath.Join(k.ModulesDir, mod))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, cpio.StaticFile(rel, string(data), 0o644))
	}
	for d := range dirs {
		recs = append(recs, cpio.Directory(d, 0o755))
	}
	// Parents before children: sort by path depth, then name.
	sortRecords(recs)
	cpio.MakeAllReproducible(recs)
	initrd := filepath.Join(dir, "initrd.cpio")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	w := cpio.Newc.Writer(f)
	if err := cpio.WriteRecords(w, recs); err != nil {
		t.Fatal(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	// Root filesystem: busybox, /bin/sh, /app.
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "app", "etc", "root"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}
	bbData, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), bbData, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"sh", "sleep", "cat", "echo", "env"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", l)); err != nil {
			t.Fatal(err)
		}
	}
	// As on Debian with systemd-resolved: the guest's own resolv.conf must hide this link.
	if err := os.Symlink("../run/systemd/resolve/stub-resolv.conf", filepath.Join(root, "etc", "resolv.conf")); err != nil {
		t.Fatal(err)
	}
	erofsImg := filepath.Join(dir, "root.erofs")
	run(t, "mkfs.erofs", "-zlz4hc", "-T0", "--all-root", "-U", "6a3c4a4e-2b7c-4d0e-9a64-1f2e3d4c5b6a", erofsImg, root)
	ero, err := os.ReadFile(erofsImg)
	if err != nil {
		t.Fatal(err)
	}
	const start = 1 << 20
	size := int64(start) + (int64(len(ero))+(1<<20)-1)/(1<<20)*(1<<20) + 1<<20
	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, size); err != nil {
		t.Fatal(err)
	}
	run(t, "sgdisk", "-n", "1:2048:+"+strconv.Itoa((len(ero)+511)/512), "-c", "1:"+abi.RootLabel, "-t", "1:8300", disk)
	df, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := df.WriteAt(ero, start); err != nil {
		t.Fatal(err)
	}
	if err := df.Close(); err != nil {
		t.Fatal(err)
	}
	return guestImage{kernel: k.Vmlinuz, initrd: initrd, disk: disk}
}

func sortRecords(recs []cpio.Record) {
	depth := func(s string) int {
		if s == "." {
			return -1
		}
		return strings.Count(s, "/")
	}
	sort.SliceStable(recs, func(i, j int) bool {
		a, b := recs[i].Name, recs[j].Name
		if depth(a) != depth(b) {
			return depth(a) < depth(b)
		}
		return a < b
	})
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// resolveModules returns the module files (relative to modDir) for names and their dependencies,
// dependencies first, as read from each module's .modinfo "depends=".
func resolveModules(t *testing.T, modDir string, names []string) []string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(modDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			rel, _ := filepath.Rel(modDir, p)
			files[strings.ReplaceAll(strings.TrimSuffix(d.Name(), ".ko"), "-", "_")] = rel
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	seen := map[string]bool{}
	var visit func(string)
	visit = func(name string) {
		name = strings.ReplaceAll(name, "-", "_")
		if seen[name] {
			return
		}
		seen[name] = true
		rel, ok := files[name]
		if !ok {
			t.Fatalf("module %s not found under %s", name, modDir)
		}
		for _, dep := range modDepends(t, filepath.Join(modDir, rel)) {
			visit(dep)
		}
		order = append(order, rel)
	}
	for _, n := range names {
		visit(n)
	}
	return order
}

func modDepends(t *testing.T, path string) []string {
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("open module %s: %v", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		t.Fatalf("module %s has no .modinfo", path)
	}
	data, err := sec.Data()
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil
			}
			return strings.Split(string(v), ",")
		}
	}
	return nil
}

// writeConfigDrive writes a config drive (magic, length, JSON) padded to whole sectors.
func writeConfigDrive(t *testing.T, cfg abi.BootConfig) string {
	t.Helper()
	body, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString(abi.ConfigMagic)
	binary.Write(&b, binary.LittleEndian, uint64(len(body)))
	b.Write(body)
	b.Write(make([]byte, 4096-b.Len()%4096))
	p := filepath.Join(t.TempDir(), "config.img")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

type bootResult struct {
	console string
	events  []abi.Event
	raw     string
	elapsed time.Duration
}

// boot runs QEMU until the guest powers off; while it runs, during may talk to it.
type runPaths struct{ console, events, ctlSock string }

func boot(t *testing.T, g guestImage, configDrive string, withCtl bool, during func(runPaths)) bootResult {
	t.Helper()
	return bootWith(t, g, configDrive, withCtl, during, nil)
}

// bootWith is boot with QEMU's command line changed by edit.
func bootWith(t *testing.T, g guestImage, configDrive string, withCtl bool, during func(runPaths), edit func([]string) []string) bootResult {
	t.Helper()
	dir := t.TempDir()
	console, events := filepath.Join(dir, "console.log"), filepath.Join(dir, "events.jsonl")
	ctlSock := ""
	if withCtl {
		ctlSock = filepath.Join(dir, "ctl.sock")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := qemuArgs(g.kernel, g.initrd, g.disk, configDrive, console, events, ctlSock)
	if edit != nil {
		args = edit(args)
	}
	t.Logf("qemu-system-x86_64 %s", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	if during != nil {
		during(runPaths{console, events, ctlSock})
	}
	err := cmd.Wait()
	r := bootResult{elapsed: time.Since(begin)}
	c, _ := os.ReadFile(console)
	r.console = string(c)
	ev, _ := os.ReadFile(events)
	r.raw = string(ev)
	for _, line := range strings.Split(strings.TrimSpace(r.raw), "\n") {
		if line == "" {
			continue
		}
		var e abi.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Errorf("event line %q is not JSON: %v", line, err)
			continue
		}
		r.events = append(r.events, e)
	}
	if ctx.Err() != nil {
		t.Fatalf("guest did not power off within 60 s\nconsole:\n%s\nevents:\n%s", r.console, r.raw)
	}
	if err != nil {
		t.Fatalf("qemu: %v\n%s\nconsole:\n%s", err, stderr.String(), r.console)
	}
	t.Logf("boot to power-off: %v\nconsole:\n%s\nevents:\n%s", r.elapsed, r.console, r.raw)
	return r
}

func (r bootResult) find(typ string) []abi.Event {
	var out []abi.Event
	for _, e := range r.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func (r bootResult) code(t *testing.T, typ string) int {
	t.Helper()
	evs := r.find(typ)
	if len(evs) != 1 || evs[0].Code == nil {
		t.Fatalf("want one %s event with a code, got %v\nevents:\n%s\nconsole:\n%s", typ, evs, r.raw, r.console)
	}
	return *evs[0].Code
}

func TestBootEntryExitCode(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM under QEMU")
	}
	g := buildGuest(t, abi.Manifest{Name: "hello", Entry: []string{"/bin/sh", "-c", "echo hello from guest; exit 3"}})
	r := boot(t, g, "", false, nil)
	if !strings.Contains(r.console, "hello from guest") {
		t.Errorf("console lacks the greeting:\n%s", r.console)
	}
	if len(r.events) == 0 || r.events[0].Type != abi.EventHello || r.events[0].ABI != abi.Version {
		t.Errorf("first event should be hello with ABI %s:\n%s", abi.Version, r.raw)
	}
	phases := map[string]bool{}
	for _, e := range r.find(abi.EventPhase) {
		if e.Duration < 0 || e.Start <= 0 {
			t.Errorf("phase %s has start %d duration %d", e.Name, e.Start, e.Duration)
		}
		phases[e.Name] = true
	}
	for _, p := range []string{"init", "modules", "devices", "config", "mounts", "network"} {
		if !phases[p] {
			t.Errorf("no phase %q event:\n%s", p, r.raw)
		}
	}
	if s := r.find(abi.EventEntryStart); len(s) != 1 || s[0].PID <= 1 {
		t.Errorf("want one entry.start with a PID:\n%s", r.raw)
	}
	if c := r.code(t, abi.EventEntryExit); c != 3 {
		t.Errorf("entry.exit code %d, want 3", c)
	}
	if c := r.code(t, abi.EventPowerOff); c != 3 {
		t.Errorf("poweroff code %d, want 3", c)
	}
}

// TestBootOutputHostNotReading: the host reads the output channel's hello, then stops reading
// (its socket fills, the UART stalls, init's writes block) while a stray process floods stdout.
// The entry's exit must still power the guest off, with its code, the output cut within
// init's flush deadline. Init used to wait for the blocked write forever: no event, no power-off.
func TestBootOutputHostNotReading(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM under QEMU")
	}
	g := buildGuest(t, abi.Manifest{Name: "flood", Entry: []string{"/bin/sh", "-c", "cat /dev/zero & sleep 4; exit 7"}})
	sock := filepath.Join(t.TempDir(), "out.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	hello := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			hello <- err
			return
		}
		t.Cleanup(func() { c.Close() })
		b := make([]byte, 5+len(abi.Version))
		if _, err := io.ReadFull(c, b); err != nil {
			hello <- err
			return
		}
		if b[0] != abi.FrameMagic || b[1] != abi.FrameHello || string(b[5:]) != abi.Version {
			hello <- fmt.Errorf("first frame %q, want a hello", b)
			return
		}
		hello <- nil // and nothing read from here on
	}()
	r := bootWith(t, g, "", false, nil, func(args []string) []string {
		for i, a := range args {
			if i > 0 && args[i-1] == "-append" {
				args[i] = a + " " + abi.OutputSerialFlag
			}
		}
		return append(args, "-chardev", "socket,id=out,path="+sock+",server=off",
			"-device", "isa-serial,chardev=out,index=1")
	})
	select {
	case err := <-hello:
		if err != nil {
			t.Fatalf("output channel: %v", err)
		}
	default:
		t.Fatal("the host never got the output channel's hello")
	}
	if c := r.code(t, abi.EventEntryExit); c != 7 {
		t.Errorf("entry.exit code %d, want 7", c)
	}
	if c := r.code(t, abi.EventPowerOff); c != 7 {
		t.Errorf("poweroff code %d, want 7", c)
	}
	if !strings.Contains(r.console, "the workload's output was cut") {
		t.Errorf("console does not say the output was cut:\n%s", r.console)
	}
}

func TestBootConfigDriveEnv(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM under QEMU")
	}
	const secret = "s3cr3t-run-time-value"
	g := buildGuest(t, abi.Manifest{
		Name:  "envtest",
		Entry: []string{"/bin/sh", "-c", `echo "got=$MYVAR static=$STATIC host=$(cat /etc/hostname) cwd=$(pwd)"; cat /etc/resolv.conf; grep VmHWM /proc/1/status`},
		Env:   map[string]string{"MYVAR": "from-image", "STATIC": "baked"},
	})
	cfg := writeConfigDrive(t, abi.BootConfig{
		ABI: abi.Version, RunID: "r1", Hostname: "guest-one",
		Env:     map[string]string{"MYVAR": secret},
		Network: abi.Network{Mode: "user", Address: "10.0.2.15/24", Gateway: "10.0.2.2", DNS: []string{"10.0.2.3"}},
	})
	r := boot(t, g, cfg, false, nil)
	if !strings.Contains(r.console, "got="+secret+" static=baked host=guest-one cwd=/app") {
		t.Errorf("run-time env, hostname or workdir did not reach the entry:\n%s", r.console)
	}
	if !strings.Contains(r.console, "nameserver 10.0.2.3") {
		t.Errorf("resolv.conf not written:\n%s", r.console)
	}
	// PID 1's peak RSS, as the entry sees it through the bound /proc.
	if m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindStringSubmatch(r.console); m == nil {
		t.Errorf("no VmHWM of init on the console")
	} else if kb, _ := strconv.Atoi(m[1]); kb > 10*1024 {
		t.Errorf("init peak RSS %d kB, target <= 10 MB", kb)
	} else {
		t.Logf("init peak RSS: %d kB", kb)
	}
	if strings.Count(r.console, secret) != 1 {
		t.Errorf("the run-time value appears %d times on the console, want once (the entry's own echo)", strings.Count(r.console, secret))
	}
	if strings.Contains(r.raw, secret) {
		t.Errorf("events leak a run-time env value:\n%s", r.raw)
	}
	if c := r.code(t, abi.EventPowerOff); c != 0 {
		t.Errorf("poweroff code %d, want 0", c)
	}
}

// stopWhenReady waits for the entry to print "ready", then sends a stop request on the control
// socket.
func stopWhenReady(t *testing.T, graceS int) func(runPaths) {
	return func(p runPaths) {
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		defer cancel()
		for {
			b, _ := os.ReadFile(p.console)
			if strings.Contains(string(b), "ready") {
				break
			}
			select {
			case <-ctx.Done():
				t.Errorf("entry did not get ready: %v", ctx.Err())
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", p.ctlSock)
		if err != nil {
			t.Errorf("connect control socket: %v", err)
			return
		}
		line, _ := json.Marshal(abi.Control{Type: abi.ControlStop, GraceS: graceS})
		if _, err := c.Write(append(line, '\n')); err != nil {
			t.Errorf("send stop: %v", err)
		}
		// Hold the connection until QEMU exits and closes it, so the guest reads the line while
		// the port's host side is still connected.
		go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
	}
}

func TestBootStop(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM under QEMU")
	}
	for _, tc := range []struct {
		name    string
		script  string
		console string
		code    int
	}{
		// The entry handles SIGTERM and exits on its own terms.
		{"graceful", `trap 'echo got TERM; exit 7' TERM; echo ready; sleep 600 & wait`, "got TERM", 7},
		// The entry ignores SIGTERM: killed after the grace period.
		{"killed", `trap '' TERM; echo ready; while :; do sleep 1; done`, "ready", 137},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := buildGuest(t, abi.Manifest{Name: "stop", Entry: []string{"/bin/sh", "-c", tc.script}})
			r := boot(t, g, "", true, stopWhenReady(t, 1))
			if !strings.Contains(r.console, tc.console) {
				t.Errorf("console lacks %q:\n%s", tc.console, r.console)
			}
			if c := r.code(t, abi.EventPowerOff); c != tc.code {
				t.Errorf("poweroff code %d, want %d\n%s", c, tc.code, r.raw)
			}
		})
	}
}

func TestBootABIMismatch(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM under QEMU")
	}
	g := buildGuest(t, abi.Manifest{ABI: "9.9.0", Name: "old", Entry: []string{"/bin/true"}})
	r := boot(t, g, "", false, nil)
	if !strings.Contains(r.console, "ukernel-init: ABI mismatch: peer speaks 9.9.0") {
		t.Errorf("console lacks the ABI mismatch message:\n%s", r.console)
	}
	if e := r.find(abi.EventError); len(e) != 1 || !strings.Contains(e[0].Message, "ABI mismatch") {
		t.Errorf("want one error event about the ABI:\n%s", r.raw)
	}
	if c := r.code(t, abi.EventPowerOff); c != 125 {
		t.Errorf("poweroff code %d, want 125", c)
	}
}

func TestBootFatalError(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM under QEMU")
	}
	g := buildGuest(t, abi.Manifest{Name: "broken", Entry: []string{"/bin/no-such-program"}})
	r := boot(t, g, "", false, nil)
	if !strings.Contains(r.console, "ukernel-init: error: start entry:") || !strings.Contains(r.console, "/bin/no-such-program") {
		t.Errorf("console lacks a clear error:\n%s", r.console)
	}
	if e := r.find(abi.EventError); len(e) != 1 || !strings.Contains(e[0].Message, "no-such-program") {
		t.Errorf("want one error event naming the program:\n%s", r.raw)
	}
	if c := r.code(t, abi.EventPowerOff); c != 125 {
		t.Errorf("poweroff code %d, want 125", c)
	}
}
