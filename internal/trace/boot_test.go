package trace_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/guestlog"
	"github.com/ukernel-dev/ukernel/internal/perf"
	"github.com/ukernel-dev/ukernel/internal/runlog"
	"github.com/ukernel-dev/ukernel/internal/trace"
)

// ukernel builds the real CLI into dir.
func ukernel(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "ukernel")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "../../cmd/ukernel").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	return bin
}

// uk runs the CLI in project dir with a deadline and returns stdout, stderr and the duration.
func uk(t *testing.T, bin, dir string, timeout time.Duration, args ...string) (string, string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-C", dir}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("ukernel %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), errb.String(), took
}

// TestRealBootTraceAndPerf boots the minimal python preset with the real binary under TCG and
// checks the spans, the Chrome export, perf's breakdown and its SVG.
//
// Tolerances: the guest's direct children (kernel, init phases, entry, shutdown) tile the guest
// span except for init's own bookkeeping between phases (mostly starting the entry): their sum
// is within 4% + 50 ms of it. That bookkeeping is real time the guest's clock counts: on a host
// loaded with other VMs it grew to 0.63 s of a 22.3 s guest span (load 8).
// The run's root span (lock start to QEMU's exit) lies within the `ukernel run` process's wall
// time and misses at most 1.5 s of it (process start, project loading, accelerator choice
// before QEMU, and releasing state after).
func TestRealBootTraceAndPerf(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs and fetches packages; runs without -short")
	}
	work := t.TempDir()
	bin := ukernel(t, work)
	proj := filepath.Join(work, "proj")
	uk(t, bin, proj, time.Minute, "init", "--name", "tracemin", "--template", "minimal")
	// Build first, so the measured run includes lock/build/pack spans that are cache hits.
	uk(t, bin, proj, 10*time.Minute, "pack")
	_, _, wall := uk(t, bin, proj, 3*time.Minute, "run", "--accel", "tcg")

	out, _, _ := uk(t, bin, proj, time.Minute, "trace", "--json")
	var tj struct {
		Partial bool        `json:"partial"`
		Notes   []string    `json:"notes"`
		Root    *trace.Span `json:"root"`
	}
	if err := json.Unmarshal([]byte(out), &tj); err != nil {
		t.Fatalf("trace --json: %v\n%s", err, out)
	}
	if tj.Partial {
		t.Fatalf("trace of a finished run is partial: %v", tj.Notes)
	}
	trace.CheckNesting(t, tj.Root)
	for _, name := range []string{"lock", "build", "pack", trace.SpanVM, trace.SpanVMMStart, trace.SpanGuest, trace.SpanKernel, "init", "modules", "devices", "config", "mounts", "network", trace.SpanEntry} {
		if tj.Root.Find(name) == nil {
			t.Errorf("no span %q in the trace", name)
		}
	}
	if c := tj.Root.Find("build"); c != nil && c.Attrs["cached"] != "true" {
		t.Errorf("build after pack not a cache hit: %v", c.Attrs)
	}
	g := tj.Root.Find(trace.SpanGuest)
	var sum time.Duration
	for _, c := range g.Children {
		sum += c.Duration()
	}
	if tol := g.Duration()/25 + 50*time.Millisecond; sum > g.Duration() || g.Duration()-sum > tol {
		t.Errorf("guest children sum to %s, guest span is %s (tolerance %s)", sum, g.Duration(), tol)
	}
	if root := tj.Root.Duration(); root > wall || wall-root > 1500*time.Millisecond {
		t.Errorf("root span %s vs `ukernel run` wall time %s: want within [wall-1.5s, wall]", root, wall)
	}
	t.Logf("run wall %s, root span %s, guest %s (children %s)", wall, tj.Root.Duration(), g.Duration(), sum)

	chrome := filepath.Join(work, "trace.json")
	uk(t, bin, proj, time.Minute, "trace", "--format", "chrome", "-o", chrome)
	data, err := os.ReadFile(chrome)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trace.ValidateChrome(data); err != nil {
		t.Errorf("chrome trace of a real boot: %v", err)
	}
	tree, _, _ := uk(t, bin, proj, time.Minute, "trace")
	if !strings.Contains(tree, "kernel") || !strings.Contains(tree, "modules") {
		t.Errorf("tree:\n%s", tree)
	}
	t.Logf("trace:\n%s", tree)

	// perf on a workload that never exits (as a worker or a server): each boot ends at the
	// entry's first line, not at the --timeout, and the IO probe still runs after it.
	if err := os.WriteFile(filepath.Join(proj, "src", "main.py"), []byte("import time\nprint('up', flush=True)\nwhile True:\n    time.sleep(3600)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const runs = 3
	svg := filepath.Join(work, "perf.svg")
	out, _, _ = uk(t, bin, proj, 10*time.Minute, "perf", "--runs", "3", "--accel", "tcg", "--timeout", "5m", "--svg", svg, "--json")
	var s perf.Summary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("perf --json: %v\n%s", err, out)
	}
	for i, b := range s.Boots {
		if b.Ready != perf.ReadyLine || b.TimedOut || b.ToReady < b.ToEntry || b.ToEntry <= 0 {
			t.Errorf("boot %d: ready %q after %s (entry at %s, timed out %v), want the entry's first line after its start", i+1, b.Ready, b.ToReady, b.ToEntry, b.TimedOut)
		}
	}
	if s.ToReady.N != runs {
		t.Errorf("to-ready %+v, want %d samples", s.ToReady, runs)
	}
	// perf removes its finished guests' records: ps -a lists none of this project's.
	psOut, _, _ := uk(t, bin, proj, time.Minute, "ps", "-a", "--json")
	var rows []struct {
		Name       string `json:"name"`
		ProjectDir string `json:"project_dir"`
	}
	if err := json.Unmarshal([]byte(psOut), &rows); err != nil {
		t.Fatalf("ps -a --json: %v\n%s", err, psOut)
	}
	for _, r := range rows {
		if r.Name == "perf" && r.ProjectDir == proj {
			t.Errorf("perf left its guest's record: ps -a lists %+v", r)
		}
	}
	// perf's boots leave the user's last run to trace (and logs): the same run, with its build.
	out, _, _ = uk(t, bin, proj, time.Minute, "trace", "--json")
	var after struct {
		Root *trace.Span `json:"root"`
	}
	if err := json.Unmarshal([]byte(out), &after); err != nil {
		t.Fatalf("trace --json after perf: %v\n%s", err, out)
	}
	if after.Root.Name != tj.Root.Name || after.Root.Find("build") == nil {
		t.Errorf("after perf, trace shows %q (build span: %v), want the user's run %q with its build", after.Root.Name, after.Root.Find("build") != nil, tj.Root.Name)
	}
	byName := map[string]perf.Stat{}
	for _, st := range s.Phases {
		byName[st.Name] = st
	}
	for _, name := range []string{perf.PhaseQEMU, trace.SpanKernel, "init", "modules", "devices", "config", "mounts", "network", trace.SpanEntry} {
		if st := byName[name]; st.N != runs || st.P50 <= 0 {
			t.Errorf("phase %s: %+v, want %d samples with a p50 > 0", name, st, runs)
		}
	}
	for _, st := range s.Phases {
		// The entry lasts until perf stopped it after its first line. QEMU's start is a host
		// process's, slowed by the host's load as the guest's translated code is not, so it is
		// not compared: the guest's own phases all run under the same TCG.
		if st.Name != trace.SpanKernel && st.Name != trace.SpanEntry && st.Name != perf.PhaseQEMU && st.P50 >= byName[trace.SpanKernel].P50 {
			t.Errorf("phase %s p50 %s >= kernel's %s: the kernel should dominate a minimal boot", st.Name, st.P50, byName[trace.SpanKernel].P50)
		}
	}
	if s.ToEntry.N != runs || s.ToEntry.P50 < byName[trace.SpanKernel].P50 {
		t.Errorf("to-entry %+v", s.ToEntry)
	}
	// IO figures need a fine guest clock; boots on a tick clock are counted and left out.
	if s.CoarseClock < runs {
		probes := map[string]perf.IOStat{}
		for _, io := range s.IO {
			probes[io.Name] = io
		}
		for _, name := range []string{"root.randread", "tmpfs.randwrite", "tmpfs.randread"} {
			if p := probes[name]; p.Ops == 0 || p.P50 <= 0 || p.Max < p.P99 || p.P99 < p.P50 {
				t.Errorf("IO probe %s: %+v", name, p)
			}
		}
	} else {
		t.Logf("all %d boots ran on a tick-based guest clock: no IO figures", runs)
	}
	// Ctrl-C during the second of five boots: the first is still reported, exit 130.
	text, errText, code := interruptAfter(t, bin, proj, "boot 1/5:", "perf", "--runs", "5", "--accel", "tcg")
	if code != 130 || !strings.Contains(text, "Cold start over 1 boots") || !strings.Contains(errText, "interrupted: 1 of 5 boots finished") {
		t.Errorf("perf interrupted after its first boot: exit %d\nstdout:\n%s\nstderr:\n%s", code, text, errText)
	}
	for _, want := range []string{"PHASE", "kernel", "modules", "to-entry", "to-ready", "PROBE"} {
		if !strings.Contains(text, want) {
			t.Errorf("perf output lacks %q:\n%s", want, text)
		}
	}
	t.Logf("perf:\n%s", text)

	svgData, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	bars := trace.CheckSVG(t, svgData)
	if len(bars) != runs {
		t.Errorf("SVG has bars for %d runs, want %d", len(bars), runs)
	}
	for i, b := range s.Boots {
		run := bars[strings.TrimSpace(string(rune('1'+i)))]
		var want []string
		for _, p := range b.Phases {
			want = append(want, p.Name)
		}
		if strings.Join(run, " ") != strings.Join(want, " ") {
			t.Errorf("SVG run %d bars %v, want one per phase %v", i+1, run, want)
		}
	}
	starvedBoot(t, bin, proj)
}

// starvedBoot boots the never-exiting workload once more under perf on a loaded host:
// ukernel, QEMU and two busy loops share one CPU. The guest's clock still keeps the host's
// time: under TCG its clocksource watchdog used to drop the TSC for jiffies, which lag when
// the vCPU is starved, so the guest lost seconds and perf placed its phases seconds late.
func starvedBoot(t *testing.T, bin, proj string) {
	t.Helper()
	cpu := busyCPU(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "taskset", "-c", strconv.Itoa(cpu), bin, "-C", proj, "perf", "--runs", "1", "--accel", "tcg", "--timeout", "4m", "--json")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("starved perf: %v\n%s", err, errb.String())
	}
	var s perf.Summary
	if err := json.Unmarshal(out, &s); err != nil || len(s.Boots) != 1 {
		t.Fatalf("starved perf --json: %v\n%s", err, out)
	}
	b := s.Boots[0]
	if s.CoarseClock != 0 {
		t.Errorf("the starved guest's clock ticked in jiffies: it dropped the TSC")
	}
	// The console's first and last stamped lines as the host read them: the guest's clock ran
	// as long as the host's between them, give or take the host's reading delays (ukernel is
	// starved too: up to 0.7 s of 21 s seen); a clock on lagging jiffies lost a third.
	run, err := runlog.Find(proj, b.RunID)
	if err != nil {
		t.Fatal(err)
	}
	var first, last [2]int64 // guest stamp, host time
	if _, err := run.ReadOutput(guestlog.Filter{Kernel: true}, -1, func(r guestlog.Record) error {
		var sec, usec int64
		if r.Stream == guestlog.Kernel && r.Log != "" {
			if _, err := fmt.Sscanf(strings.TrimLeft(r.Log, "[ "), "%d.%d]", &sec, &usec); err == nil {
				last = [2]int64{sec*1e9 + usec*1e3, r.Time.UnixNano()}
				if first[1] == 0 {
					first = last
				}
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	guest, host := time.Duration(last[0]-first[0]), time.Duration(last[1]-first[1])
	if guest < time.Second || guest < host*9/10 || host < guest*9/10 {
		t.Errorf("the starved guest's clock: %s between its first and last console lines, the host's %s", guest, host)
	}
	if b.ToEntry <= 0 || b.ToEntry > b.ToReady {
		t.Errorf("starved boot: entry at %s, its first line read at %s", b.ToEntry, b.ToReady)
	}
	t.Logf("starved boot: guest %s / host %s between console lines; qemu %s, to-entry %s, to-ready %s", guest, host, b.Phases[0].End, b.ToEntry, b.ToReady)
}

// busyCPU keeps one CPU of the test's busy with n spinning processes until the test ends, and
// returns it.
func busyCPU(t *testing.T, n int) int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	cpu := -1
	for i := range runtime.NumCPU() {
		if set.IsSet(i) {
			cpu = i
		}
	}
	for range n {
		spin := exec.Command("taskset", "-c", strconv.Itoa(cpu), "sh", "-c", "while :; do :; done")
		if err := spin.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			spin.Process.Kill()
			spin.Wait()
		})
	}
	return cpu
}

// interruptAfter runs the CLI, sends it SIGINT once its stderr has a line starting with mark,
// and returns its stdout, stderr and exit code.
func interruptAfter(t *testing.T, bin, dir, mark string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-C", dir}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(pr)
	read := make(chan struct{})
	go func() {
		defer close(read)
		sent := false
		for sc.Scan() {
			errb.WriteString(sc.Text() + "\n")
			if !sent && strings.HasPrefix(sc.Text(), mark) {
				sent = true
				cmd.Process.Signal(os.Interrupt)
			}
		}
	}()
	err := cmd.Wait()
	pw.Close()
	<-read
	if ctx.Err() != nil {
		t.Fatalf("ukernel %s: no result within the deadline\nstderr:\n%s", strings.Join(args, " "), errb.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}
