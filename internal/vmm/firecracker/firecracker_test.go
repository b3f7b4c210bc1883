package firecracker

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/testenv"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/firecracker/fctest"
)

// serve runs srv on a unix socket in dir, the way Firecracker serves its API.
func serve(t *testing.T, srv *fctest.Server) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return sock
}

func testSpec(dir string) vmm.Spec {
	return vmm.Spec{
		Name: "api-test", Kernel: "/k/vmlinuz", Initrd: "/k/initrd.img", Cmdline: "quiet ro",
		Disks: []vmm.Disk{{ID: "root", Path: "/img/app.img", ReadOnly: true}, {ID: "config", Path: "/state/config.drive", ReadOnly: true}},
		VCPU:  2, MemoryMB: 512, Accel: vmm.AccelKVM, Net: vmm.Net{Mode: "tap", Iface: "tap0"},
		ConsolePath: filepath.Join(dir, "console.log"), EventsPath: filepath.Join(dir, "events.jsonl"),
		LogPath: filepath.Join(dir, "vmm.log"), ControlSocket: "/state/ctl.sock", APISocket: "/state/api.sock",
	}
}

type call struct{ method, path, body string }

func calls(reqs []fctest.Request) []call {
	var out []call
	for _, r := range reqs {
		out = append(out, call{r.Method, r.Path, string(r.Body)})
	}
	return out
}

// TestConfigureSequence sends a run's configuration to a server that checks each request
// against Firecracker's API description, and asserts the exact request sequence.
func TestConfigureSequence(t *testing.T) {
	srv := &fctest.Server{}
	c := NewClient(serve(t, srv))
	spec := testSpec("/run/r1")
	cfg := ConfigFor(spec, "/cache/vmlinux", HostPaths)
	if err := Configure(context.Background(), c, cfg); err != nil {
		t.Fatal(err)
	}
	want := []call{
		{"PUT", "/logger", `{"log_path":"/run/r1/firecracker.log","level":"Warning"}`},
		{"PUT", "/metrics", `{"metrics_path":"/run/r1/firecracker-metrics.json"}`},
		{"PUT", "/boot-source", `{"kernel_image_path":"/cache/vmlinux","initrd_path":"/k/initrd.img","boot_args":"quiet ro console=ttyS0 reboot=k panic=1 pci=off ukernel.vmm=firecracker"}`},
		{"PUT", "/drives/root", `{"drive_id":"root","path_on_host":"/img/app.img","is_root_device":false,"is_read_only":true}`},
		{"PUT", "/drives/config", `{"drive_id":"config","path_on_host":"/state/config.drive","is_root_device":false,"is_read_only":true}`},
		{"PUT", "/machine-config", `{"vcpu_count":2,"mem_size_mib":512}`},
		{"PUT", "/network-interfaces/eth0", `{"iface_id":"eth0","host_dev_name":"tap0"}`},
		{"PUT", "/vsock", `{"guest_cid":3,"uds_path":"/state/ctl.sock"}`},
		{"PUT", "/actions", `{"action_type":"InstanceStart"}`},
	}
	got := srv.Requests()
	if len(got) != len(want) {
		t.Fatalf("%d requests, want %d: %+v", len(got), len(want), calls(got))
	}
	for i, r := range got {
		if (call{r.Method, r.Path, string(r.Body)}) != want[i] {
			t.Errorf("request %d:\n got %s %s %s\nwant %s %s %s", i, r.Method, r.Path, r.Body, want[i].method, want[i].path, want[i].body)
		}
		if r.Status != http.StatusNoContent {
			t.Errorf("request %d %s %s: status %d", i, r.Method, r.Path, r.Status)
		}
	}
	// After InstanceStart, Firecracker refuses pre-boot configuration.
	err := c.Put(context.Background(), "/machine-config", MachineConfig{VCPUCount: 1, MemSizeMib: 128})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Fault, "after starting") {
		t.Fatalf("pre-boot request after start: %v", err)
	}
}

// TestAPIFault turns Firecracker's fault_message into an error naming the request.
func TestAPIFault(t *testing.T) {
	srv := &fctest.Server{Fail: map[string]string{"PUT /boot-source": "Cannot load kernel due to invalid memory configuration or invalid kernel image: Kernel Loader: failed to load ELF kernel image"}}
	c := NewClient(serve(t, srv))
	cfg := ConfigFor(testSpec("/run/r1"), "/cache/vmlinux", HostPaths)
	err := Configure(context.Background(), c, cfg)
	want := "firecracker: PUT /boot-source: 400: Cannot load kernel due to invalid memory configuration or invalid kernel image: Kernel Loader: failed to load ELF kernel image"
	if err == nil || err.Error() != want {
		t.Fatalf("error %v\nwant %s", err, want)
	}
	if n := len(srv.Requests()); n != 3 {
		t.Fatalf("configuration went on after the fault: %d requests", n)
	}
}

// TestCheckerRefuses shows the API checker is strict: each of these is refused by Firecracker.
func TestCheckerRefuses(t *testing.T) {
	srv := &fctest.Server{}
	c := NewClient(serve(t, srv))
	ctx := context.Background()
	bad := []struct {
		method, path string
		body         any
		fault        string
	}{
		{"PUT", "/boot-source", map[string]any{"boot_args": "x"}, "missing field `kernel_image_path`"},
		{"PUT", "/machine-config", map[string]any{"vcpu_count": "2", "mem_size_mib": 128}, "field `vcpu_count`: invalid type"},
		{"PUT", "/machine-config", map[string]any{"vcpu_count": 0, "mem_size_mib": 128}, "below the minimum"},
		{"PUT", "/drives/root", map[string]any{"drive_id": "data", "is_root_device": false}, "does not match"},
		{"PUT", "/drives/root", map[string]any{"drive_id": "root", "is_root_device": false, "readonly": true}, "unknown field `readonly`"},
		{"PUT", "/vsock", map[string]any{"guest_cid": 2, "uds_path": "/x"}, "below the minimum 3"},
		{"PUT", "/actions", map[string]any{"action_type": "Quit"}, "unknown variant `Quit`"},
		{"PATCH", "/vm", map[string]any{"state": "Stopped"}, "unknown variant"},
		{"POST", "/actions", map[string]any{"action_type": "InstanceStart"}, "Invalid request method and/or path"},
	}
	for _, b := range bad {
		err := c.Do(ctx, b.method, b.path, b.body, nil)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Fault, b.fault) {
			t.Errorf("%s %s %v: got %v, want a 400 with %q", b.method, b.path, b.body, err, b.fault)
		}
	}
}

// TestLifecycleRequests checks pause, resume, snapshots and Ctrl-Alt-Del against the API.
func TestLifecycleRequests(t *testing.T) {
	srv := &fctest.Server{}
	sock := serve(t, srv)
	b := New(nil)
	h := vmm.Handle{Backend: Name, APISocket: sock}
	ctx := context.Background()
	info, err := NewClient(sock).Info(ctx)
	if err != nil || info.AppName != "Firecracker" {
		t.Fatalf("GET /: %+v %v", info, err)
	}
	for _, step := range []func() error{
		func() error { return NewClient(sock).Put(ctx, "/actions", Action{ActionType: ActionInstanceStart}) },
		func() error { return b.Pause(ctx, h) },
		func() error { return b.CreateSnapshot(ctx, h, "/snap/vm.state", "/snap/vm.mem") },
		func() error { return b.Resume(ctx, h) },
		func() error { return b.Quit(ctx, h) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	want := []call{
		{"GET", "/", ""},
		{"PUT", "/actions", `{"action_type":"InstanceStart"}`},
		{"PATCH", "/vm", `{"state":"Paused"}`},
		{"PUT", "/snapshot/create", `{"snapshot_path":"/snap/vm.state","mem_file_path":"/snap/vm.mem","snapshot_type":"Full"}`},
		{"PATCH", "/vm", `{"state":"Resumed"}`},
		{"GET", "/", ""},
		{"PUT", "/actions", `{"action_type":"SendCtrlAltDel"}`},
	}
	got := calls(srv.Requests())
	if len(got) != len(want) {
		t.Fatalf("requests %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d: got %+v want %+v", i, got[i], want[i])
		}
	}
}

func TestBootArgsAndNet(t *testing.T) {
	if got := BootArgs("console=hvc0 quiet"); got != "console=hvc0 quiet reboot=k panic=1 pci=off ukernel.vmm=firecracker" {
		t.Errorf("BootArgs kept console: %q", got)
	}
	if err := CheckNet(vmm.Net{Mode: "user"}); err == nil || !strings.Contains(err.Error(), "only tap") {
		t.Errorf("user networking: %v", err)
	}
	if err := CheckNet(vmm.Net{Mode: "none"}); err != nil {
		t.Error(err)
	}
	if id := InstanceID("my_app.v2"); id != "my-app-v2" {
		t.Errorf("InstanceID: %q", id)
	}
}

// TestStartMissingBinary: no firecracker on PATH is a clear error at once.
func TestStartMissingBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	start := time.Now()
	_, err := New(nil).Start(context.Background(), testSpec(t.TempDir()))
	if err == nil || !strings.Contains(err.Error(), "firecracker not found on PATH") {
		t.Fatalf("error %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %s", d)
	}
}

// fakeFirecracker builds testdata/fakefc, a tiny stand-in for the firecracker binary that serves
// the same checked API (Firecracker itself cannot run here: no usable KVM).
func fakeFirecracker(t *testing.T) string { return buildHelper(t, "./testdata/fakefc", "firecracker") }

// buildHelper builds the command pkg as name, statically: it may run in a chroot.
func buildHelper(t *testing.T, pkg, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// startFake starts the backend with the fake firecracker on a spec in a fresh run directory.
func startFake(t *testing.T, bin string, env ...string) (*Backend, vmm.Spec, *vmm.VM, error) {
	t.Helper()
	dir := t.TempDir()
	setFakeEnv(t, append([]string{"FAKEFC_FAIL=", "FAKEFC_LOG=" + filepath.Join(dir, "requests.json"), "FAKEFC_CONTROL=" + filepath.Join(dir, "control")}, env...)...)
	k := testenv.DebianKernel(t)
	img := filepath.Join(dir, "app.img")
	cfgDrive := filepath.Join(dir, "config.drive")
	os.WriteFile(img, make([]byte, 4096), 0o644)
	os.WriteFile(cfgDrive, make([]byte, 512), 0o600)
	spec := vmm.Spec{
		Name: "fake", Kernel: k.Vmlinuz, Cmdline: "quiet",
		Disks: []vmm.Disk{{ID: "root", Path: img, ReadOnly: true}, {ID: "config", Path: cfgDrive, ReadOnly: true}},
		VCPU:  1, MemoryMB: 256, Accel: vmm.AccelKVM, Net: vmm.Net{Mode: "none"},
		ConsolePath: filepath.Join(dir, "console.log"), EventsPath: filepath.Join(dir, "events.jsonl"),
		LogPath: filepath.Join(dir, "vmm.log"), ControlSocket: filepath.Join(dir, "ctl.sock"), APISocket: filepath.Join(dir, "api.sock"),
		OutputSocket: filepath.Join(dir, "out.sock"),
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	b := &Backend{Binary: bin, NoJailer: true, CacheDir: filepath.Join(cache, "ukernel-test", "vmlinux"), Log: New(nil).Log}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	vm, err := b.Start(ctx, spec)
	return b, spec, vm, err
}

func readRequests(t *testing.T, spec vmm.Spec) []call {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(filepath.Dir(spec.APISocket), "requests.json"))
	if err != nil {
		t.Fatal(err)
	}
	var reqs []fctest.Request
	if err := json.Unmarshal(data, &reqs); err != nil {
		t.Fatal(err)
	}
	return calls(reqs)
}

// TestStartAndStopProcess runs the whole backend against the fake firecracker process: the
// request sequence, the console, the events relayed from vsock and a graceful stop over the
// vsock control port.
func TestStartAndStopProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a helper binary and decompresses a kernel")
	}
	bin := fakeFirecracker(t)
	b, spec, vm, err := startFake(t, bin)
	if err != nil {
		t.Fatal(err)
	}
	if !vm.Alive() {
		t.Fatal("handle does not recognise the running firecracker")
	}
	var paths []string
	for _, c := range readRequests(t, spec) {
		paths = append(paths, c.method+" "+c.path)
	}
	want := "GET / | PUT /logger | PUT /metrics | PUT /boot-source | PUT /drives/root | PUT /drives/config | PUT /machine-config | PUT /vsock | PUT /actions"
	if got := strings.Join(paths, " | "); got != want {
		t.Fatalf("requests:\n got %s\nwant %s", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		data, _ := os.ReadFile(spec.EventsPath)
		if strings.Contains(string(data), `"type":"hello"`) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no event relayed from vsock; events.jsonl: %q", data)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The output channel: the backend listened on <uds_path>_1026 before the guest started;
	// the stand-in guest's frames arrive there.
	if vm.Output == nil {
		t.Fatal("no output channel listener")
	}
	if vm.Output.Addr().String() != OutputSocket(spec.ControlSocket) {
		t.Errorf("output channel on %s, want %s", vm.Output.Addr(), OutputSocket(spec.ControlSocket))
	}
	conn, err := vm.Output.Accept()
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fr := abi.NewFrameReader(conn)
	hello, err1 := fr.Next()
	line, err2 := fr.Next()
	conn.Close()
	vm.Output.Close()
	if err1 != nil || err2 != nil || hello.Kind != abi.FrameHello || line.Kind != abi.FrameStdout || string(line.Data) != "fake workload: hello\n" {
		t.Errorf("output frames %+v %v, %+v %v", hello, err1, line, err2)
	}
	res, err := vmm.Stop(ctx, b, vm.Handle, 2*time.Second, nil)
	if err != nil || res != vmm.StoppedGracefully {
		t.Fatalf("stop: %s %v", res, err)
	}
	ctl, _ := os.ReadFile(filepath.Join(filepath.Dir(spec.APISocket), "control"))
	if string(ctl) != `{"type":"stop","grace_s":1}`+"\n" {
		t.Fatalf("control line %q", ctl)
	}
	console, _ := os.ReadFile(spec.ConsolePath)
	if !strings.Contains(string(console), "fake guest: booted") {
		t.Fatalf("console %q", console)
	}
	if err := vm.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestStartFaultAndQuit: a refused request fails Start with Firecracker's message and leaves no
// process; a started guest quits on Ctrl-Alt-Del.
func TestStartFaultAndQuit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a helper binary and decompresses a kernel")
	}
	bin := fakeFirecracker(t)
	_, _, _, err := startFake(t, bin, "FAKEFC_FAIL=PUT /drives/config=Unable to create the block device: No such file or directory (os error 2)")
	if err == nil || !strings.Contains(err.Error(), "firecracker: PUT /drives/config: 400: Unable to create the block device") {
		t.Fatalf("error %v", err)
	}
	b, _, vm, err := startFake(t, bin)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Quit(ctx, vm.Handle); err != nil {
		t.Fatal(err)
	}
	if err := vm.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreRequests checks a restore's requests against the API: a load into a Firecracker
// given only its logger and metrics, the memory file mapped privately (the File backend) and
// this run's tap device in place of the snapshot's, left paused until Resume; no vsock
// override (the socket is at the same path in every chroot). A Firecracker older than
// network_overrides is refused before it loads anything, and one that configured a boot
// resource refuses the load.
func TestRestoreRequests(t *testing.T) {
	srv := &fctest.Server{}
	sock := serve(t, srv)
	b := New(nil)
	h := vmm.Handle{Backend: Name, APISocket: sock}
	ctx := context.Background()
	j := &jail{}
	cfg := ConfigFor(testSpec("/run/r2"), "/cache/vmlinux", j.paths())
	if err := RestoreSequence(ctx, NewClient(sock), cfg, "1.12.0", jailState, jailMemory); err != nil {
		t.Fatal(err)
	}
	if err := b.Resume(ctx, h); err != nil {
		t.Fatal(err)
	}
	want := []call{
		{"PUT", "/logger", `{"log_path":"/firecracker.log","level":"Warning"}`},
		{"PUT", "/metrics", `{"metrics_path":"/firecracker-metrics.json"}`},
		{"PUT", "/snapshot/load", `{"snapshot_path":"/snapshot-state","mem_backend":{"backend_type":"File","backend_path":"/snapshot-memory"},"network_overrides":[{"iface_id":"eth0","host_dev_name":"tap0"}]}`},
		{"PATCH", "/vm", `{"state":"Resumed"}`},
	}
	got := calls(srv.Requests())
	if len(got) != len(want) {
		t.Fatalf("requests %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
		if r := srv.Requests()[i]; r.Status != http.StatusNoContent {
			t.Errorf("request %d %s %s: status %d", i, r.Method, r.Path, r.Status)
		}
	}

	old := &fctest.Server{}
	err := RestoreSequence(ctx, NewClient(serve(t, old)), cfg, "1.11.1", jailState, jailMemory)
	if err == nil || !strings.Contains(err.Error(), "network_overrides came with v1.12") || len(old.Requests()) != 0 {
		t.Errorf("restore with a tap under Firecracker 1.11.1: %v, requests %+v", err, calls(old.Requests()))
	}
	cfg.Net = nil
	if err := RestoreSequence(ctx, NewClient(serve(t, &fctest.Server{})), cfg, "1.11.1", jailState, jailMemory); err != nil {
		t.Errorf("restore without a network under Firecracker 1.11.1: %v", err)
	}

	booted := &fctest.Server{}
	bsock := serve(t, booted)
	if err := NewClient(bsock).Put(ctx, "/machine-config", MachineConfig{VCPUCount: 1, MemSizeMib: 128}); err != nil {
		t.Fatal(err)
	}
	err = RestoreSequence(ctx, NewClient(bsock), cfg, "1.12.0", jailState, jailMemory)
	var ae *APIError
	if !errors.As(err, &ae) || !strings.Contains(ae.Fault, "not allowed after configuring boot-specific resources") {
		t.Errorf("load after a boot resource: %v", err)
	}

	a, _ := b.Layout(testSpec("/run/r1"))
	c, _ := b.Layout(testSpec("/run/r2"))
	if a != c || strings.Contains(a, "/run/") || strings.Contains(a, "/state/") {
		t.Errorf("layouts of two runs differ or hold paths:\n%s\n%s", a, c)
	}
}

func TestAtLeast(t *testing.T) {
	for _, c := range []struct {
		v    string
		want bool
	}{{"1.12.0", true}, {"v1.12.1", true}, {"1.17.0-dev", true}, {"2.0.0", true}, {"1.11.9", false}, {"0.25.0", false}, {"1.12-dev", true}, {"", false}, {"Firecracker", false}} {
		if got := atLeast(c.v, NetworkOverridesSince); got != c.want {
			t.Errorf("atLeast(%q) = %v, want %v", c.v, got, c.want)
		}
	}
}
