package firecracker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/firecracker/fctest"
)

// snapRig is the files of TestJailedSnapshot: a project's image and data volume, a snapshot
// directory, the state directory the chroots go in.
type snapRig struct {
	t                           *testing.T
	b                           *Backend
	state, kernel, img, tmplVol string
	snapState, snapMem          string
}

// spec is the spec of the guest name with its own config drive and the data volume data.
func (r *snapRig) spec(name, data string) vmm.Spec {
	run := filepath.Join(r.state, name)
	if err := os.MkdirAll(run, 0o755); err != nil {
		r.t.Fatal(err)
	}
	cfg := filepath.Join(run, "config.drive")
	if err := os.WriteFile(cfg, make([]byte, 512), 0o600); err != nil {
		r.t.Fatal(err)
	}
	return vmm.Spec{
		Name: name, Kernel: r.kernel, Cmdline: "quiet",
		Disks: []vmm.Disk{{ID: "root", Path: r.img, ReadOnly: true}, {ID: "config", Path: cfg, ReadOnly: true}, {ID: "data", Path: data}},
		VCPU:  1, MemoryMB: 256, Accel: vmm.AccelKVM, Net: vmm.Net{Mode: "none"},
		ConsolePath: filepath.Join(run, "console.log"), EventsPath: filepath.Join(run, "events.jsonl"),
		LogPath: filepath.Join(run, "vmm.log"), ControlSocket: filepath.Join(r.state, name+".ctl"), APISocket: filepath.Join(r.state, name+".api"),
	}
}

// chroot is the jail's root of the guest name on the host.
func (r *snapRig) chroot(name string) string {
	return filepath.Join(r.state, "jail", "firecracker", name, "root")
}

// requests are the API requests the jailed fake received (it logs them in its chroot).
func (r *snapRig) requests(name string) []call {
	r.t.Helper()
	data, err := os.ReadFile(filepath.Join(r.chroot(name), "requests.json"))
	if err != nil {
		r.t.Fatal(err)
	}
	var reqs []fctest.Request
	if err := json.Unmarshal(data, &reqs); err != nil {
		r.t.Fatal(err)
	}
	return calls(reqs)
}

// awaitEvent waits until the events file of spec holds an event of type typ.
func awaitEvent(t *testing.T, ctx context.Context, spec vmm.Spec, typ string) {
	t.Helper()
	for {
		ev, _ := os.ReadFile(spec.EventsPath)
		if bytes.Contains(ev, []byte(`"type":"`+typ+`"`)) {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%s: no %s event; events.jsonl: %q", spec.Name, typ, ev)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sendControl(t *testing.T, ctx context.Context, b *Backend, h vmm.Handle, c abi.Control) {
	t.Helper()
	conn, err := b.DialControl(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg, _ := json.Marshal(c)
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(append(msg, '\n')); err != nil {
		t.Fatal(err)
	}
}

func sha(t *testing.T, p string) [32]byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}

func inode(t *testing.T, p string) (uint64, uint64) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return uint64(st.Dev), st.Ino
}

// TestJailedSnapshot takes a snapshot and restores it twice at once, under a stand-in jailer
// (chroot, uid 65534) with the fake firecracker, which saves and loads as Firecracker does (see
// testdata/fakefc): Firecracker reopens a snapshot's drives at the paths it recorded.
//
// The save records the chroot's fixed paths and leaves the snapshot's files readable by the
// jail's group, with no ACL entry or mount left. Each restore gets its own chroot, where the
// recorded paths open that restore's own data copy (two restores, two different files), the
// image read-only, and the snapshot's one memory file read-only and mapped privately, which
// stays unchanged while both guests write their memory. The requests are exactly the logger,
// the metrics and the load; the reseed goes over the control channel once the guest runs; each
// restore's writes land in its own copy, never in the template's volume. A load Firecracker
// refuses fails Start with its message and leaves no chroot, mount, ACL entry or socket link.
func TestJailedSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("builds helper binaries and decompresses a kernel")
	}
	if os.Geteuid() != 0 {
		t.Skip("the jailer runs only as root")
	}
	bin := fakeFirecracker(t)
	jailer := buildHelper(t, "./testdata/fakejailer", "jailer")
	state := shortStateDir(t)
	setFakeEnv(t, "FAKEFC_FAIL=", "FAKEFC_LOG=requests.json", "FAKEFC_OPENED=opened.json", "FAKEFC_CONTROL=")
	kernel, cacheDir := testVmlinux(t)
	proj := t.TempDir()
	snap := filepath.Join(proj, "snapshot")
	r := &snapRig{t: t, state: state, kernel: kernel, img: filepath.Join(proj, "app.img"), tmplVol: filepath.Join(proj, "data.img"),
		snapState: filepath.Join(snap, "state"), snapMem: filepath.Join(snap, "memory")}
	r.b = &Backend{Binary: bin, Jailer: jailer, CacheDir: cacheDir, Log: New(nil).Log}
	if !r.b.Capabilities().Snapshots {
		t.Fatal("the jailed backend says it cannot take snapshots")
	}
	if c := (&Backend{Binary: bin, NoJailer: true}).Capabilities(); c.Snapshots || c.NoSnapshots == "" {
		t.Errorf("the backend without the jailer: %+v, want no snapshots and why", c)
	}
	if err := os.WriteFile(r.img, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.tmplVol, bytes.Repeat([]byte("template volume\n"), 1<<16), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(snap, 0o700); err != nil {
		t.Fatal(err)
	}
	// The snapshot boot's memory file, as launch creates it: sparse, the owner's only.
	if err := os.WriteFile(r.snapMem, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(r.snapMem, 256<<20); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The snapshot boot.
	save := r.spec("save", r.tmplVol)
	save.Memory = &vmm.MemoryFile{Path: r.snapMem, Shared: true}
	vm, err := r.b.Start(ctx, save)
	if err != nil {
		log, _ := os.ReadFile(save.LogPath)
		t.Fatalf("%v\nvmm.log: %s", err, log)
	}
	if m := mountsUnder(t, state); len(m) != 1 || m[0] != filepath.Join(r.chroot("save"), jailMemory) {
		t.Errorf("mounts while the snapshot boot runs: %q, want only the memory file's", m)
	}
	// As launch does: the control channel taken before the guest is ready, used once it is.
	sendControl(t, ctx, r.b, vm.Handle, abi.Control{Type: abi.ControlFreeze})
	awaitEvent(t, ctx, save, abi.EventFrozen)
	if err := r.b.Save(ctx, vm.Handle, r.snapState, r.snapMem); err != nil {
		t.Fatal(err)
	}
	got := r.requests("save")
	if n := len(got); n < 2 || got[n-2] != (call{"PATCH", "/vm", `{"state":"Paused"}`}) ||
		got[n-1] != (call{"PUT", "/snapshot/create", `{"snapshot_path":"/snapshot-state","mem_file_path":"/snapshot-memory","snapshot_type":"Full"}`}) {
		t.Errorf("the save's requests end %+v", got)
	}
	if m := mountsUnder(t, state); len(m) > 0 {
		t.Errorf("mounts after the save: %q", m)
	}
	var recorded struct {
		Drives []struct{ ID, Path string }
		Vsock  string
	}
	if data, err := os.ReadFile(r.snapState); err != nil || json.Unmarshal(data, &recorded) != nil {
		t.Fatalf("snapshot state: %v %q", err, data)
	}
	if recorded.Vsock != jailVsock || len(recorded.Drives) != 3 || recorded.Drives[2].Path != "/drive-data" {
		t.Errorf("the snapshot records %+v: want the chroot's fixed paths", recorded)
	}
	for _, p := range []string{r.snapState, r.snapMem} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o640 || st.Uid != 0 || st.Gid != 65534 {
			t.Errorf("%s: mode %v owner %d:%d, want 0640 0:65534", p, fi.Mode().Perm(), st.Uid, st.Gid)
		}
		if _, err := unix.Getxattr(p, aclAttr, nil); !errors.Is(err, unix.ENODATA) {
			t.Errorf("ACL left on %s: %v", p, err)
		}
	}
	// The saved guest is paused: it takes no Ctrl-Alt-Del, so Quit ends its Firecracker.
	if err := r.b.Quit(ctx, vm.Handle); err != nil {
		t.Fatal(err)
	}
	qctx, qcancel := context.WithTimeout(ctx, 3*time.Second)
	defer qcancel()
	if err := vm.Wait(qctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the saved guest's firecracker after Quit: %v, want killed", err)
	}
	memSum, tmplSum := sha(t, r.snapMem), sha(t, r.tmplVol)

	// Two restores at once, each on its own copy of the data volume.
	type restore struct {
		spec vmm.Spec
		vm   *vmm.VM
		copy string
	}
	var rs []*restore
	for _, name := range []string{"r1", "r2"} {
		cp := filepath.Join(proj, name+".img")
		data, _ := os.ReadFile(r.tmplVol)
		if err := os.WriteFile(cp, data, 0o644); err != nil {
			t.Fatal(err)
		}
		spec := r.spec(name, cp)
		spec.Incoming, spec.Memory = r.snapState, &vmm.MemoryFile{Path: r.snapMem}
		vm, err := r.b.Start(ctx, spec)
		if err != nil {
			log, _ := os.ReadFile(spec.LogPath)
			t.Fatalf("restore %s: %v\nvmm.log: %s", name, err, log)
		}
		rs = append(rs, &restore{spec, vm, cp})
	}
	if m := mountsUnder(t, state); len(m) > 0 {
		t.Errorf("mounts left in the chroots once the snapshots are loaded: %q", m)
	}
	imgDev, imgIno := inode(t, r.img)
	memDev, memIno := inode(t, r.snapMem)
	dataIno := map[uint64]string{}
	for _, x := range rs {
		name := x.spec.Name
		want := []call{
			{"GET", "/", ""},
			{"PUT", "/logger", `{"log_path":"/firecracker.log","level":"Warning"}`},
			{"PUT", "/metrics", `{"metrics_path":"/firecracker-metrics.json"}`},
			{"PUT", "/snapshot/load", `{"snapshot_path":"/snapshot-state","mem_backend":{"backend_type":"File","backend_path":"/snapshot-memory"}}`},
		}
		if got := r.requests(name); strings.Join(strs(got), "\n") != strings.Join(strs(want), "\n") {
			t.Errorf("%s: requests\n got %+v\nwant %+v", name, got, want)
		}
		var opened struct {
			Opened []struct {
				Path     string
				Dev, Ino uint64
				Mode     string
			}
			Vsock string
		}
		data, err := os.ReadFile(filepath.Join(r.chroot(name), "opened.json"))
		if err != nil || json.Unmarshal(data, &opened) != nil {
			t.Fatalf("%s: what the load opened: %v %q", name, err, data)
		}
		cpDev, cpIno := inode(t, x.copy)
		for _, o := range opened.Opened {
			switch o.Path {
			case jailMemory:
				if o.Dev != memDev || o.Ino != memIno || o.Mode != "private-map" {
					t.Errorf("%s: memory %+v, want the snapshot's file (%d:%d) mapped privately", name, o, memDev, memIno)
				}
			case "/drive-root":
				if o.Dev != imgDev || o.Ino != imgIno || o.Mode != "ro" {
					t.Errorf("%s: root drive %+v, want the image read-only", name, o)
				}
			case "/drive-data":
				if o.Dev != cpDev || o.Ino != cpIno || o.Mode != "rw" {
					t.Errorf("%s: data drive %+v, want its own copy %s (%d:%d) read-write", name, o, x.copy, cpDev, cpIno)
				}
				if other, ok := dataIno[o.Ino]; ok {
					t.Errorf("%s and %s share one data volume", name, other)
				}
				dataIno[o.Ino] = name
			case "/drive-config":
				if o.Mode != "ro" {
					t.Errorf("%s: config drive %+v", name, o)
				}
			default:
				t.Errorf("%s: the load opened %+v", name, o)
			}
		}
		if len(opened.Opened) != 4 || opened.Vsock != jailVsock {
			t.Errorf("%s: the load opened %+v, vsock %q", name, opened.Opened, opened.Vsock)
		}
	}
	// Run both and reseed them over the control channel, in launch's order: the channel taken
	// before the guest runs (a paused guest answers no vsock connection: it is made at the
	// write), then Resume, then the restore message. Then stop them.
	for _, x := range rs {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := r.b.DialControl(dctx, x.vm.Handle)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.b.Resume(ctx, x.vm.Handle); err != nil {
			t.Fatal(err)
		}
		msg, _ := json.Marshal(abi.Control{Type: abi.ControlRestore, Restore: &abi.Restore{Entropy: make([]byte, 64), TimeNS: time.Now().UnixNano(), Hostname: x.spec.Name}})
		conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write(append(msg, '\n')); err != nil {
			t.Fatalf("%s: restore message: %v", x.spec.Name, err)
		}
		conn.Close()
		dcancel()
	}
	for _, x := range rs {
		awaitEvent(t, ctx, x.spec, abi.EventReseeded)
		if res, err := vmm.Stop(ctx, r.b, x.vm.Handle, 2*time.Second, nil); err != nil || res != vmm.StoppedGracefully {
			t.Fatalf("stop %s: %s %v", x.spec.Name, res, err)
		}
		if err := x.vm.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(x.copy); !bytes.HasPrefix(got, []byte("fake guest: /data written\n")) {
			t.Errorf("%s: its write is not in its copy %s", x.spec.Name, x.copy)
		}
		if _, err := unix.Getxattr(x.copy, aclAttr, nil); !errors.Is(err, unix.ENODATA) {
			t.Errorf("ACL left on %s: %v", x.copy, err)
		}
	}
	if sha(t, r.snapMem) != memSum {
		t.Error("the snapshot's memory file changed: a restore's memory was not private")
	}
	if sha(t, r.tmplVol) != tmplSum {
		t.Error("the template's data volume changed")
	}

	// A load Firecracker refuses.
	cp := filepath.Join(proj, "r3.img")
	if err := os.WriteFile(cp, []byte("copy"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAKEFC_FAIL", "PUT /snapshot/load=Load snapshot error: Failed to restore from snapshot: Failed to get snapshot state from file")
	spec := r.spec("r3", cp)
	spec.Incoming, spec.Memory = r.snapState, &vmm.MemoryFile{Path: r.snapMem}
	if _, err := r.b.Start(ctx, spec); err == nil || !strings.Contains(err.Error(), "PUT /snapshot/load: 400: Load snapshot error") {
		t.Fatalf("refused load: %v", err)
	}
	if m := mountsUnder(t, state); len(m) > 0 {
		t.Errorf("mounts left by the refused load: %q", m)
	}
	if _, err := os.Stat(filepath.Dir(r.chroot("r3"))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("chroot left by the refused load: %v", err)
	}
	if _, err := unix.Getxattr(cp, aclAttr, nil); !errors.Is(err, unix.ENODATA) {
		t.Errorf("ACL left on %s: %v", cp, err)
	}
	for _, s := range []string{spec.APISocket, spec.ControlSocket} {
		if _, err := os.Lstat(s); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket link %s left: %v", s, err)
		}
	}
	if sha(t, r.snapMem) != memSum {
		t.Error("the refused load changed the snapshot's memory file")
	}

	// Without the jailer no restore is tried.
	nj := &Backend{Binary: bin, NoJailer: true, CacheDir: cacheDir, Log: New(nil).Log}
	if _, err := nj.Start(ctx, spec); err == nil || !strings.Contains(err.Error(), "need the jailer") {
		t.Errorf("restore without the jailer: %v", err)
	}
}

func strs(cs []call) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.method+" "+c.path+" "+c.body)
	}
	return out
}
