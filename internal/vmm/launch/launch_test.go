package launch

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/image"
	"github.com/ukernel-dev/ukernel/internal/runlog"
	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/internal/testenv"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/qemu"
)

// testInit is a stand-in PID 1: it prints a line and, by the kernel command line's ukt_mode
// (passed to init as an environment variable), powers off or keeps ticking.
const testInit = `package main

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

func main() {
	fmt.Println("test init: hello")
	if os.Getenv("ukt_mode") == "sleep" {
		for i := 0; ; i++ {
			fmt.Println("tick", i)
			time.Sleep(500 * time.Millisecond)
		}
	}
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}
`

func packTestImage(t *testing.T, mode string) string {
	t.Helper()
	testenv.RequireTools(t, vmm.QEMUBinary, "go")
	k := testenv.DebianKernel(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "init")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module ukinit\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(src, "main.go"), []byte(testInit), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "init.bin"), ".")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build test init: %v\n%s", err, out)
	}
	root := filepath.Join(dir, "root")
	os.MkdirAll(root, 0o755)
	res, err := image.Pack(ctx, image.Input{
		Manifest: abi.Manifest{
			Name:   "ukt-" + mode,
			Kernel: abi.Kernel{Release: k.Release, Cmdline: image.DefaultCmdline + " ukt_mode=" + mode},
			Run:    abi.RunDefaults{VCPU: 1, MemoryMB: 256, Net: "user"},
		},
		KernelPath: k.Vmlinuz, ModulesDir: k.ModulesDir, InitPath: filepath.Join(dir, "init.bin"),
		RootDir: root, Output: filepath.Join(dir, "dist", "test.img"), SourceDateEpoch: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return res.Path
}

func testOptions(t *testing.T, img string) (Options, *bytes.Buffer) {
	sdir, err := os.MkdirTemp("", "ukl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sdir) })
	store, err := runstate.OpenAt(sdir)
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	return Options{
		ProjectDir: t.TempDir(), Image: img, Accel: vmm.AccelTCG, CacheDir: t.TempDir(), Store: store,
		Env: map[string]string{"UKT_SECRET": "do-not-log-me"}, Progress: &progress,
	}, &progress
}

func TestRunForeground(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	o, progress := testOptions(t, packTestImage(t, "exit"))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	g, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Accelerator: tcg (--accel tcg)", "QEMU started (pid ", "VM console: logs/console.log"} {
		if !strings.Contains(progress.String(), want) {
			t.Errorf("progress lacks %q:\n%s", want, progress)
		}
	}
	// The config drive left the disk once QEMU had it open.
	if _, err := os.Stat(o.Store.ConfigDrive("ukt-exit")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("config drive still on disk while the guest runs: %v", err)
	}
	// The test init writes to the console, not to the output channel: its line is the
	// kernel stream's, shown only where asked for.
	var stdout, console bytes.Buffer
	out, err := g.AttendStreams(ctx, Streams{Stdout: &stdout, Stderr: &stdout, Kernel: &console}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(console.String(), "test init: hello") || strings.Contains(console.String(), "\r") {
		t.Errorf("streamed console lacks the init's line, or keeps the serial line's CR:\n%q", console.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("console lines reached the workload's streams:\n%s", stdout.String())
	}
	// The test init is no ukernel-init: no workload started, so the outcome says so and shows
	// the console's last lines.
	if out.Code != 125 || !strings.Contains(out.Reason, "guest stopped without reporting an exit code") ||
		!strings.Contains(out.Reason, "before its workload started") || !strings.Contains(out.Reason, "\n  test init: hello") {
		t.Errorf("outcome %+v", out)
	}
	if st, err := o.Store.Load("ukt-exit"); err != nil || !st.Exited || st.ExitCode != nil {
		t.Errorf("the finished run is not recorded (for ps -a) without a code: %+v %v", st, err)
	}
	b, _ := os.ReadFile(filepath.Join(o.ProjectDir, "logs", "console.log"))
	if !strings.Contains(string(b), "test init: hello") {
		t.Errorf("logs/console.log: %q", b)
	}
	assertNoSecret(t, o.ProjectDir, "do-not-log-me")
}

func TestDetachedStop(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	o, _ := testOptions(t, packTestImage(t, "sleep"))
	o.Detached, o.Name = true, "ukt-bg"
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	g, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	h := g.VM.Handle
	t.Cleanup(func() {
		if h.Alive() {
			t.Errorf("QEMU pid %d left running", h.PID)
			vmm.Stop(context.Background(), qemuBackend(), h, time.Second, nil)
		}
	})
	// A second guest with the same live name is refused.
	if _, err := Start(ctx, o); err == nil || !strings.Contains(err.Error(), `a guest named "ukt-bg" is already running`) {
		t.Errorf("second start: %v", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(g.Run.Console())
		if strings.Contains(string(b), "tick 1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ticks within 60s:\n%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	res, err := StopGuest(ctx, o.Store, "ukt-bg", 2*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The test init does not read the control port, so the VMM had to quit.
	if res != vmm.StoppedByQuit {
		t.Errorf("stop: %s, want quit", res)
	}
	if h.Alive() {
		t.Error("QEMU still runs after stop")
	}
	if states, _ := o.Store.List(); len(states) != 1 || !states[0].Exited {
		t.Errorf("after stop, want the finished guest's record alone: %+v", states)
	}
	ents, _ := os.ReadDir(o.Store.Dir)
	for _, e := range ents {
		if e.Name() != runstate.LockFile && e.Name() != "ukt-bg.json" { // the store's lock, the record
			t.Errorf("file left in the state directory: %s", e.Name())
		}
	}
}

func assertNoSecret(t *testing.T, dir, secret string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s contains the run-time secret", p)
			}
		}
		return nil
	})
}

// qemuBackend returns the QEMU backend for cleanups.
func qemuBackend() vmm.Backend { b, _ := newBackend(qemu.Name, nil); return b }

func TestNextAddr(t *testing.T) {
	for host, want := range map[string]string{
		"172.16.0.1/24":   "172.16.0.2/24",
		"10.0.0.254/24":   "10.0.0.1/24", // .255 is the broadcast address: wrap
		"192.168.5.9/30":  "192.168.5.10/30",
		"192.168.5.10/30": "192.168.5.9/30",
		"10.1.2.3/31":     "",
	} {
		got, ok := nextAddr(netip.MustParsePrefix(host))
		if want == "" {
			if ok {
				t.Errorf("nextAddr(%s) = %s, want none", host, got)
			}
			continue
		}
		if !ok || got.String() != want {
			t.Errorf("nextAddr(%s) = %s %v, want %s", host, got, ok, want)
		}
	}
}

func TestShouldRestart(t *testing.T) {
	ok, failed, noCode := runlog.Outcome{Reported: true}, runlog.Outcome{Reported: true, Code: 1}, runlog.Outcome{Code: runlog.ExitNoReport}
	for _, c := range []struct {
		policy string
		out    runlog.Outcome
		want   bool
	}{
		{RestartNo, failed, false}, {"", failed, false},
		{RestartOnFailure, ok, false}, {RestartOnFailure, failed, true}, {RestartOnFailure, noCode, true},
		{RestartAlways, ok, true}, {RestartAlways, noCode, true},
	} {
		if got := ShouldRestart(c.policy, c.out); got != c.want {
			t.Errorf("ShouldRestart(%q, %+v) = %v", c.policy, c.out, got)
		}
	}
}

func TestRestartBackoff(t *testing.T) {
	var b restartBackoff
	var delays []time.Duration
	for {
		d, ok := b.next(time.Second)
		if !ok {
			break
		}
		delays = append(delays, d)
	}
	if len(delays) != restartLimit || delays[0] != restartFirstDelay || delays[1] != 2*restartFirstDelay || delays[len(delays)-1] != restartMaxDelay {
		t.Errorf("quick failures: delays %v", delays)
	}
	// A run that lasted starts the count over.
	if d, ok := b.next(restartStable); !ok || d != restartFirstDelay {
		t.Errorf("after a stable run: %v, %v", d, ok)
	}
}

// TestColdFallbackLeavesOneRun: a run given a snapshot it cannot restore (here none) boots cold,
// saying why, and the attempt leaves no run directory of its own: logs/runs holds the cold
// boot's run only, and logs/console.log points at it.
func TestColdFallbackLeavesOneRun(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	o, progress := testOptions(t, packTestImage(t, "exit"))
	o.Snapshot = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	g, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.AttendStreams(ctx, Streams{}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(progress.String(), "Booting cold: there is no snapshot") || g.Restored != nil {
		t.Errorf("progress lacks the cold boot's reason:\n%s", progress)
	}
	runs, _ := os.ReadDir(filepath.Join(o.ProjectDir, "logs", "runs"))
	if len(runs) != 1 || runs[0].Name() != g.Run.ID {
		t.Errorf("logs/runs holds %v, want the cold boot's run %s only", runs, g.Run.ID)
	}
	if latest, err := runlog.LatestRun(o.ProjectDir); err != nil || latest.ID != g.Run.ID {
		t.Errorf("logs/console.log names %+v (%v), want %s", latest, err, g.Run.ID)
	}
}

// TestKillThenForget: a guest TakeSnapshot gives up before it attends it (no control
// connection) is killed and forgotten at once: its record is gone, so ps -a does not list it.
func TestKillThenForget(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	o, _ := testOptions(t, packTestImage(t, "sleep"))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	g, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	g.kill()
	if err := g.Forget(); err != nil {
		t.Fatal(err)
	}
	if st, err := o.Store.Load("ukt-sleep"); err == nil {
		t.Errorf("the killed guest's record is left: %+v", st)
	}
}

// run names the console relative to the project the user gave; a template's run logs into the
// template store, which the user never named, so there the path is absolute.
func TestConsoleShown(t *testing.T) {
	if got := consoleShown(Options{ProjectDir: "/srv/app"}); got != "logs/console.log" {
		t.Errorf("project run: %q, want logs/console.log", got)
	}
	tdir := filepath.Join(t.TempDir(), "templates", "api")
	if got, want := consoleShown(Options{ProjectDir: tdir, Template: "api"}), filepath.Join(tdir, "logs", "console.log"); got != want {
		t.Errorf("template run: %q, want %q", got, want)
	}
}
