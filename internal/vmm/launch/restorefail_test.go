package launch

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/internal/snapshot"
	"github.com/ukernel-dev/ukernel/internal/vmm"
)

// handSnapshot takes a snapshot of the test image's ticking init the way TakeSnapshot does,
// without waiting for a readiness the stand-in init never reports: booted with its RAM in a
// file, saved once it ticks, with its data volume, sealed with its fingerprint. Its init never reads the control port,
// so a restore of it never hears the guest reseed.
func handSnapshot(t *testing.T, o Options) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "snapshot")
	stage, err := snapshot.Stage(dir)
	if err != nil {
		t.Fatal(err)
	}
	o.Name, o.save = "ukt-save", filepath.Join(stage.Dir, snapshot.MemoryFile)
	g, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Forget()
	waitConsole(t, g, "tick 1")
	if err := g.backend.(vmm.Snapshotter).Save(ctx, g.VM.Handle, filepath.Join(stage.Dir, snapshot.StateFile), o.save); err != nil {
		t.Fatal(err)
	}
	if err := g.backend.Quit(ctx, g.VM.Handle); err != nil {
		t.Fatal(err)
	}
	if _, err := g.AttendStreams(ctx, Streams{}, time.Second); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(g.spec.Disks, func(d vmm.Disk) bool { return d.ID == "data" })
	if i < 0 {
		t.Fatal("the snapshot boot has no data volume")
	}
	if err := snapshot.CopySparse(g.spec.Disks[i].Path, filepath.Join(stage.Dir, snapshot.DataFile)); err != nil {
		t.Fatal(err)
	}
	fp, bin, err := fingerprint(ctx, g.backend, g.spec, g.boot, nil, o.CacheDir)
	if err != nil {
		t.Fatal(err)
	}
	meta := &snapshot.Meta{Created: time.Now().UTC(), Fingerprint: fp, VMM: bin, ConfigSize: g.configSize, Ready: "ticking"}
	if err := stage.Seal(meta, snapshot.StateFile, snapshot.MemoryFile, snapshot.DataFile); err != nil {
		t.Fatal(err)
	}
	if err := stage.Publish(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func waitConsole(t *testing.T, g *Guest, want string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(g.Run.Console())
		if bytes.Contains(b, []byte(want)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q on the console within 60s:\n%s", want, b)
		}
	}
}

// vmmsOf lists the processes whose command line names dir (a store's directory: its VMMs').
func vmmsOf(dir string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && bytes.Contains(b, []byte(dir)) {
			if st, ok := vmm.ProcStat(pid); ok && st[0] != "Z" {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// TestRestoreFailsBeforeControl makes a restore fail at each step before the guest takes its
// control message — QEMU refuses the saved state, QEMU is killed before it loaded it, the guest
// never answers on its control port — with --restore and without. Each leaves exactly one
// record, the cold boot's, or (--restore) none; no VMM, no run directory and no data copy of the
// attempt. perf's restores (--restore, then forgotten) are the second case.
func TestRestoreFailsBeforeControl(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	o, _ := testOptions(t, packTestImage(t, "sleep"))
	o.Env, o.DataMB = nil, 8

	// The boot that takes a snapshot, given up before the guest is ready (it never says so):
	// no record, no VMM, no snapshot.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := TakeSnapshot(ctx, o, filepath.Join(t.TempDir(), "snapshot"), 3*time.Second, (*snapshot.Staging).Publish); err == nil || !strings.Contains(err.Error(), "did not become ready") {
		t.Fatalf("TakeSnapshot of a guest that is never ready: %v", err)
	}
	if states, _ := o.Store.List(); len(states) != 0 || len(vmmsOf(o.Store.Dir)) != 0 {
		t.Errorf("a snapshot boot given up left records %+v or VMMs %v", states, vmmsOf(o.Store.Dir))
	}

	good := handSnapshot(t, o)
	// A state QEMU refuses, sealed as the snapshot's: the fingerprint fits and the files verify.
	refused := filepath.Join(t.TempDir(), "snapshot")
	if err := stageTake(t, good, refused, bytes.Repeat([]byte("not a QEMU state\n"), 100), nil).Publish(); err != nil {
		t.Fatal(err)
	}
	// A snapshot as ukernel wrote them before it recorded the kernel command line: under TCG,
	// maybe booted without tsc=reliable, on the jiffies clocksource for every restore.
	older := filepath.Join(t.TempDir(), "snapshot")
	if err := stageTake(t, good, older, nil, func(m *snapshot.Meta) { m.Fingerprint.Cmdline = "" }).Publish(); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name, snapshot, why string
		killLoad            bool
		// replaced: another take of the snapshot is published while the VMM starts.
		replaced bool
	}{
		{"state refused", refused, "the VMM could not load the snapshot", false, false},
		{"killed before its state loaded", good, "QEMU exited while starting", true, false},
		{"no answer on the control port", good, "the restored guest did not report it reseeded", false, false},
		{"replaced while the VMM starts", "", "the snapshot was replaced (taken again) while the restore started", false, true},
		{"taken before the command line was recorded", older, "the snapshot does not fit this run: the snapshot does not record the kernel command line it booted with", false, false},
	} {
		for _, mode := range []RestoreMode{RestoreAuto, RestoreRequired} {
			t.Run(c.name+map[RestoreMode]string{RestoreAuto: "", RestoreRequired: " --restore"}[mode], func(t *testing.T) {
				o, progress := testOptions(t, o.Image)
				o.Env, o.DataMB, o.Name, o.Snapshot, o.Restore = nil, 8, "ukt-restore", c.snapshot, mode
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				if c.killLoad {
					go killIncoming(ctx, o.Store.Dir)
				}
				replacedAt := make(chan error, 1)
				if c.replaced {
					o.Snapshot = filepath.Join(t.TempDir(), "snapshot")
					if err := stageTake(t, good, o.Snapshot, nil, nil).Publish(); err != nil {
						t.Fatal(err)
					}
					go func() { replacedAt <- replaceAtLoad(ctx, o.Store.Dir, stageTake(t, good, o.Snapshot, nil, nil)) }()
				}
				g, err := Start(ctx, o)
				t.Cleanup(func() {
					for _, pid := range vmmsOf(o.Store.Dir) {
						t.Errorf("VMM pid %d left running", pid)
						syscall.Kill(pid, syscall.SIGKILL)
					}
				})
				if c.replaced {
					if err := <-replacedAt; err != nil {
						t.Fatal(err)
					}
				}
				if mode == RestoreRequired {
					if err == nil || !strings.Contains(err.Error(), "--restore: cannot restore: ") || !strings.Contains(err.Error(), c.why) {
						t.Fatalf("Start: %v, want --restore's refusal saying %q", err, c.why)
					}
				} else {
					if err != nil {
						t.Fatal(err)
					}
					if g.Restored != nil || !strings.Contains(progress.String(), "Booting cold: ") || !strings.Contains(progress.String(), c.why) {
						t.Fatalf("want a cold boot saying %q:\n%s", c.why, progress)
					}
					t.Log(strings.SplitN(progress.String()[strings.Index(progress.String(), "Booting cold: "):], "\n", 2)[0])
					waitConsole(t, g, "test init: hello")
					stopped, stop := context.WithCancel(ctx)
					stop()
					if _, err := g.AttendStreams(stopped, Streams{}, time.Second); err != nil {
						t.Fatal(err)
					}
				}
				if pids := vmmsOf(o.Store.Dir); len(pids) > 0 {
					t.Errorf("VMMs left running: %v", pids)
				}
				states, err := o.Store.List()
				if err != nil {
					t.Fatal(err)
				}
				var records, runs []string
				for _, st := range states {
					records = append(records, fmt.Sprintf("%s run %s exited %v", st.Name, st.RunID, st.Exited))
				}
				ents, _ := os.ReadDir(filepath.Join(o.ProjectDir, "logs", "runs"))
				for _, e := range ents {
					runs = append(runs, e.Name())
				}
				if mode == RestoreRequired {
					if len(records) != 0 || len(runs) != 0 {
						t.Errorf("a failed --restore left records %q and run directories %q", records, runs)
					}
				} else if want := []string{fmt.Sprintf("ukt-restore run %s exited true", g.Run.ID)}; !slices.Equal(records, want) || !slices.Equal(runs, []string{g.Run.ID}) {
					t.Errorf("records %q and run directories %q; want the cold boot's alone: %q and %s", records, runs, want, g.Run.ID)
				}
				if _, err := os.Stat(runstate.RestoredData(o.ProjectDir, o.Name)); err == nil {
					t.Errorf("the attempt's copy of the snapshot's data volume is left")
				}
			})
		}
	}
}

// stageTake stages another take of the snapshot at from, to be published at target: its memory
// file and data volume are copies of from's, its state from's or state (when not nil); sealed
// with from's metadata, edited by edit when not nil.
func stageTake(t *testing.T, from, target string, state []byte, edit func(*snapshot.Meta)) *snapshot.Staging {
	t.Helper()
	stage, err := snapshot.Stage(target)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{snapshot.StateFile, snapshot.MemoryFile, snapshot.DataFile} {
		if f == snapshot.StateFile && state != nil {
			err = os.WriteFile(filepath.Join(stage.Dir, f), state, 0o600)
		} else {
			err = snapshot.CopySparse(filepath.Join(from, f), filepath.Join(stage.Dir, f))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	meta, err := snapshot.Read(from)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(meta)
	}
	if err := stage.Seal(meta, snapshot.StateFile, snapshot.MemoryFile, snapshot.DataFile); err != nil {
		t.Fatal(err)
	}
	return stage
}

// replaceAtLoad publishes next as soon as a VMM of the store at dir starts to load a state:
// the VMM is stopped (SIGSTOP) meanwhile, so the new take is in place before it opens the
// snapshot's files, or between its opens.
func replaceAtLoad(ctx context.Context, dir string, next *snapshot.Staging) error {
	for ctx.Err() == nil {
		for _, pid := range vmmsOf(dir) {
			if b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline")); bytes.Contains(b, []byte("-incoming")) {
				syscall.Kill(pid, syscall.SIGSTOP)
				err := next.Publish()
				syscall.Kill(pid, syscall.SIGCONT)
				return err
			}
		}
		time.Sleep(time.Millisecond)
	}
	return ctx.Err()
}

// killIncoming kills, as soon as it appears, a VMM of the store at dir started to load a state.
func killIncoming(ctx context.Context, dir string) {
	for ctx.Err() == nil {
		for _, pid := range vmmsOf(dir) {
			if b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline")); bytes.Contains(b, []byte("-incoming")) {
				syscall.Kill(pid, syscall.SIGKILL)
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
}
