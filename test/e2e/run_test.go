package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/testenv"
)

type psEntry struct {
	Name     string `json:"name"`
	PID      int    `json:"pid"`
	Status   string `json:"status"`
	Backend  string `json:"backend"`
	Accel    string `json:"accel"`
	ImageDig string `json:"image_digest"`
}

func ps(t *testing.T, dir string) []psEntry {
	t.Helper()
	r := mustUK(t, dir, 30*time.Second, "--json", "ps")
	var list []psEntry
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("ps --json: %v\n%s", err, r.stdout)
	}
	return list
}

// waitFor polls until check passes or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, check func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, info := check()
		if ok {
			return
		}
		last = info
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v; last seen:\n%s", what, timeout, last)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestRunWorkerLifecycle: the worker preset ticks; run -d, logs, ps and stop work and leave
// no VMM behind.
func TestRunWorkerLifecycle(t *testing.T) {
	skipShort(t)
	dir := newProject(t, "life-worker", "--lang", "python", "--template", "worker")
	cfg := filepath.Join(dir, "ukernel.toml")
	data, _ := os.ReadFile(cfg)
	writeFile(t, cfg, strings.Replace(string(data), "WORKER_INTERVAL_S = '10'", "WORKER_INTERVAL_S = '1'", 1))
	r := mustUK(t, dir, 15*time.Minute, "--json", "run", "-d")
	var started struct {
		Name      string `json:"name"`
		PID       int    `json:"pid"`
		OutputLog string `json:"output_log"`
		RunID     string `json:"run_id"`
		Backend   string `json:"backend"`
		Accel     string `json:"accel"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &started); err != nil || started.Name != "life-worker" || started.PID <= 0 ||
		started.RunID == "" || !strings.HasSuffix(started.OutputLog, "output.jsonl") {
		t.Errorf("run -d --json: %v\n%s", err, r.stdout)
	}
	if !regexp.MustCompile(`QEMU started \(pid \d+\)`).MatchString(r.stderr + r.stdout) {
		t.Errorf("run -d did not say which VMM started:\n%s%s", r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr+r.stdout, "VM console: logs/console.log") {
		t.Errorf("run -d did not name the console log:\n%s%s", r.stdout, r.stderr)
	}
	defer uk(t, dir, time.Minute, "stop", "life-worker")
	waitFor(t, "tick 2 in logs", 2*time.Minute, func() (bool, string) {
		l := uk(t, dir, 30*time.Second, "logs")
		return strings.Contains(l.stdout, "tick 2"), l.stdout + l.stderr
	})
	list := ps(t, dir)
	found := false
	for _, e := range list {
		if e.Name == "life-worker" {
			found = e.PID > 0 && e.Status == "running" && e.Backend == "qemu" && e.ImageDig != ""
			qemuUnprivileged(t, e.PID)
		}
	}
	if !found {
		t.Errorf("ps does not show the running guest: %+v", list)
	}
	// doctor reports the choice run made here, by the same names ps and run -d use.
	var doc struct {
		Choice struct {
			Backend string `json:"backend"`
			Accel   string `json:"accel"`
		} `json:"choice"`
	}
	d := mustUK(t, dir, 2*time.Minute, "--json", "doctor")
	if err := json.Unmarshal([]byte(d.stdout), &doc); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, d.stdout)
	}
	for _, e := range list {
		if e.Name == "life-worker" && (e.Backend != doc.Choice.Backend || e.Accel != doc.Choice.Accel || e.Accel == "") {
			t.Errorf("ps --json: backend %q accel %q; doctor --json's choice: %+v", e.Backend, e.Accel, doc.Choice)
		}
		if e.Name == "life-worker" && (e.Backend != started.Backend || e.Accel != started.Accel) {
			t.Errorf("ps --json: backend %q accel %q; run -d --json: backend %q accel %q", e.Backend, e.Accel, started.Backend, started.Accel)
		}
	}
	if r := uk(t, dir, 30*time.Second, "run", "-d"); r.code == 0 || !strings.Contains(r.stderr, "life-worker") {
		t.Errorf("a second run with the same name: exit %d\n%s", r.code, r.stderr)
	}
	// The detached guest's monitor owns its output: tail, since and timestamps select from it.
	if l := mustUK(t, dir, 30*time.Second, "logs", "--tail", "2", "life-worker"); len(strings.Split(strings.TrimSpace(l.stdout+l.stderr), "\n")) != 2 {
		t.Errorf("logs --tail 2:\nstdout:\n%s\nstderr:\n%s", l.stdout, l.stderr)
	}
	if l := mustUK(t, dir, 30*time.Second, "logs", "--timestamps", "--since", "1h", "life-worker"); !regexp.MustCompile(`(?m)^20\d\d-\d\d-\d\dT[0-9:.]+Z tick 1`).MatchString(l.stdout) {
		t.Errorf("logs --timestamps --since 1h:\n%s", l.stdout)
	}
	if l := mustUK(t, dir, 30*time.Second, "logs", "--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "life-worker"); strings.TrimSpace(l.stdout) != "" {
		t.Errorf("logs --since an hour ahead printed lines:\n%s", l.stdout)
	}
	if rm := uk(t, dir, 30*time.Second, "rm", "life-worker"); rm.code == 0 {
		t.Error("rm removed a running guest")
	}
	for _, cmd := range [][]string{{"stop", "../x"}, {"logs", "../x"}, {"rm", "../x"}} {
		if r := uk(t, dir, 30*time.Second, cmd...); r.code == 0 || !strings.Contains(r.stderr, "invalid guest name") {
			t.Errorf("%v: exit %d\n%s", cmd, r.code, r.stderr)
		}
	}
	// logs -f follows the running guest and returns by itself once it is stopped.
	fctx, fcancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer fcancel()
	follow := exec.CommandContext(fctx, ukernelBin(t), "-C", dir, "logs", "-f", "life-worker")
	var followed bytes.Buffer
	follow.Stdout = &followed
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	followDone := make(chan error, 1)
	go func() { followDone <- follow.Wait() }()
	st := mustUK(t, dir, 2*time.Minute, "--json", "stop", "life-worker")
	select {
	case err := <-followDone:
		if err != nil || fctx.Err() != nil || !strings.Contains(followed.String(), "tick 1") {
			t.Errorf("logs -f: %v (deadline: %v)\n%s", err, fctx.Err(), followed.String())
		}
	case <-fctx.Done():
		t.Errorf("logs -f did not return after the guest stopped\n%s", followed.String())
	}
	var stopped []struct{ Name, Result string }
	if err := json.Unmarshal([]byte(st.stdout), &stopped); err != nil || len(stopped) != 1 || stopped[0].Name != "life-worker" || stopped[0].Result == "" {
		t.Errorf("stop --json: %v\n%s", err, st.stdout)
	}
	noQEMULeft(t, dir)
	// The finished guest: ps -a lists it with its exit code, logs NAME still reads it, rm
	// removes it.
	var all []struct {
		Name     string `json:"name"`
		Status   string `json:"status"`
		ExitCode *int   `json:"exit_code"`
	}
	pa := mustUK(t, dir, 30*time.Second, "--json", "ps", "-a")
	if err := json.Unmarshal([]byte(pa.stdout), &all); err != nil {
		t.Fatalf("ps -a --json: %v\n%s", err, pa.stdout)
	}
	listed := false
	for _, e := range all {
		if e.Name == "life-worker" {
			listed = e.Status == "exited" && e.ExitCode != nil
		}
	}
	if !listed {
		t.Errorf("ps -a does not list the stopped guest with its exit code:\n%s", pa.stdout)
	}
	if l := mustUK(t, dir, 30*time.Second, "logs", "life-worker"); !strings.Contains(l.stdout, "tick 1") {
		t.Errorf("logs of the finished guest:\n%s", l.stdout)
	}
	mustUK(t, dir, 30*time.Second, "rm", "life-worker")
	if pa := mustUK(t, dir, 30*time.Second, "ps", "-a"); strings.Contains(pa.stdout, "life-worker") {
		t.Errorf("ps -a lists the removed guest:\n%s", pa.stdout)
	}
	for _, e := range ps(t, dir) {
		if e.Name == "life-worker" && e.Status == "running" {
			t.Errorf("ps still lists the stopped guest: %+v", e)
		}
	}
	// The workload's lines went to its own channel; the console kept the kernel's.
	console, err := os.ReadFile(filepath.Join(dir, "logs", "console.log"))
	if err != nil || strings.Contains(string(console), "tick 1") {
		t.Errorf("logs/console.log: %v\n%s", err, console)
	}
	// --accel auto probed KVM (or found no /dev/kvm): that step is in the run's trace.
	tr := mustUK(t, dir, time.Minute, "trace", "--json")
	var tj struct {
		Root struct {
			Children []struct {
				Name  string            `json:"name"`
				Attrs map[string]string `json:"attrs"`
			} `json:"children"`
		} `json:"root"`
	}
	if err := json.Unmarshal([]byte(tr.stdout), &tj); err != nil {
		t.Fatalf("trace --json: %v\n%s", err, tr.stdout)
	}
	probed := false
	for _, c := range tj.Root.Children {
		probed = probed || c.Name == "kvm.probe" && c.Attrs["usable"] != ""
	}
	if !probed {
		t.Errorf("the trace has no kvm.probe span with its answer:\n%s", tr.stdout)
	}
	if l := mustUK(t, dir, 30*time.Second, "logs"); !strings.Contains(l.stdout, "tick 1") {
		t.Errorf("logs after the stop:\n%s", l.stdout)
	}
}

// qemuUnprivileged checks that QEMU (pid), started by a root ukernel, runs as nobody without
// capabilities, groups or a way to gain privileges (no_new_privs).
func qemuUnprivileged(t *testing.T, pid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("QEMU's status: %v", err)
	}
	for _, want := range []string{"Uid:\t65534\t65534\t65534\t65534\n", "Gid:\t65534\t65534\t65534\t65534\n",
		"CapPrm:\t0000000000000000\n", "CapEff:\t0000000000000000\n", "NoNewPrivs:\t1\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("QEMU (pid %d) status lacks %q:\n%s", pid, want, b)
		}
	}
	if !regexp.MustCompile(`(?m)^Groups:\s*$`).Match(b) {
		t.Errorf("QEMU (pid %d) has supplementary groups:\n%s", pid, b)
	}
}

// kernelLine matches a kernel console line ("[    0.345924] PCI: ...").
var kernelLine = regexp.MustCompile(`(?m)^\[\s*\d+\.\d+\] `)

// TestRunOutputChannels: the workload's stdout and stderr reach run's stdout and stderr, with
// no kernel line among them (a workload's own line that looks like one stays); -v adds the
// kernel's console on stderr; logs shows the workload, logs --kernel the kernel too, and a
// service the run does not have is an error. A workload that prints fast past its [logs]
// limits leaves bounded files, and logs reads across them. Control sequences reach a pipe raw.
func TestRunOutputChannels(t *testing.T) {
	skipShort(t)
	dir := newProject(t, "channels", "--lang", "shell", "--template", "minimal")
	cfg, _ := os.ReadFile(filepath.Join(dir, "ukernel.toml"))
	writeFile(t, filepath.Join(dir, "ukernel.toml"), string(cfg)+"\n[logs]\nmax_size = '64k'\nmax_files = 2\n")
	writeFile(t, filepath.Join(dir, "src", "main.sh"), `#!/bin/sh
i=0
while [ $i -lt 3000 ]; do echo "flood $i: a workload that prints fast, fast, fast, fast, fast, fast, fast"; i=$((i+1)); done
printf 'colour \033[31mred\033[0m\n'
echo "line on stdout"
echo "line on stderr" >&2
echo "[    1.000000] the workload's own bracketed line"
`)
	r := mustUK(t, dir, 15*time.Minute, "run")
	if !strings.Contains(r.stdout, "line on stdout") || !strings.Contains(r.stdout, "the workload's own bracketed line") {
		t.Errorf("the workload's stdout is not on stdout:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout, "line on stderr") || !strings.Contains(r.stderr, "line on stderr") {
		t.Errorf("the workload's stderr is not apart on stderr:\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	for _, out := range []string{r.stdout, r.stderr} {
		for _, l := range kernelLine.FindAllString(out, -1) {
			if !strings.HasPrefix(l, "[    1.000000]") {
				t.Errorf("a kernel line reached the terminal without -v:\n%s", out)
			}
		}
	}
	if !strings.Contains(r.stderr, "VM console: logs/console.log") {
		t.Errorf("run did not name the console log:\n%s", r.stderr)
	}
	console, _ := os.ReadFile(filepath.Join(dir, "logs", "console.log"))
	if !strings.Contains(string(console), "reboot: Power down") || strings.Contains(string(console), "line on stdout") {
		t.Errorf("logs/console.log does not hold the kernel's console alone:\n%s", console)
	}
	if !strings.Contains(r.stdout, "colour \x1b[31mred\x1b[0m") || !strings.Contains(r.stdout, "flood 2999:") {
		t.Errorf("run's stdout, a pipe, did not get the workload's bytes as they are")
	}
	run, _ := filepath.EvalSymlinks(filepath.Join(dir, "logs", "console.log"))
	output := filepath.Join(filepath.Dir(run), "output.jsonl")
	for _, f := range []string{output, output + ".1"} {
		if fi, err := os.Stat(f); err != nil || fi.Size() > 64<<10 {
			t.Errorf("%s: %v, want at most 64 KiB (max_size)", f, fi)
		}
	}
	if _, err := os.Stat(output + ".2"); err == nil {
		t.Errorf("%s.2 kept beyond max_files 2", output)
	}
	if l := mustUK(t, dir, time.Minute, "logs", "--tail", "5"); !strings.Contains(l.stdout, "flood 2999:") || !strings.Contains(l.stdout, "line on stdout") {
		t.Errorf("logs --tail 5 (4 lines on stdout, 1 on stderr):\n%s", l.stdout)
	}
	l := mustUK(t, dir, time.Minute, "logs")
	if !strings.Contains(l.stdout, "line on stdout") || !strings.Contains(l.stderr, "line on stderr") || strings.Contains(l.stdout+l.stderr, "reboot: Power down") {
		t.Errorf("logs:\nstdout:\n%s\nstderr:\n%s", l.stdout, l.stderr)
	}
	if k := mustUK(t, dir, time.Minute, "logs", "--kernel"); !strings.Contains(k.stderr, "reboot: Power down") || !strings.Contains(k.stdout, "line on stdout") {
		t.Errorf("logs --kernel:\nstdout:\n%s\nstderr:\n%s", k.stdout, k.stderr)
	}
	if n := uk(t, dir, time.Minute, "logs", "--service", "nosuch"); n.code == 0 || !strings.Contains(n.stderr, `no such service "nosuch"`) {
		t.Errorf("logs --service nosuch: exit %d\n%s", n.code, n.stderr)
	}

	v := mustUK(t, dir, 15*time.Minute, "-v", "run")
	if !strings.Contains(v.stderr, "reboot: Power down") || strings.Contains(v.stdout, "reboot: Power down") {
		t.Errorf("run -v does not show the kernel's console on stderr:\nstdout:\n%s\nstderr:\n%s", v.stdout, v.stderr)
	}
	if !strings.Contains(v.stdout, "line on stdout") {
		t.Errorf("run -v lost the workload's stdout:\n%s", v.stdout)
	}

	// A VMM that cannot run the guest (KVM here: /dev/kvm is there, a Linux guest spins or
	// QEMU stops it with an internal error) fails the run within seconds with the VMM's own
	// words and 125, foreground and detached, and leaves no guest behind.
	for _, args := range [][]string{{"run", "--accel", "kvm"}, {"run", "-d", "--accel", "kvm", "--name", "channels-kvm"}} {
		began := time.Now()
		k := uk(t, dir, 5*time.Minute, args...)
		took := time.Since(began)
		if k.code == 0 {
			uk(t, dir, time.Minute, "stop", "channels-kvm")
			t.Skipf("KVM runs a guest on this host: %s", strings.Join(args, " "))
		}
		if k.code != 125 || !strings.Contains(k.stderr, "QEMU") || took > 2*time.Minute {
			t.Errorf("%s: exit %d after %s, want 125 within seconds naming the VMM\n%s", strings.Join(args, " "), k.code, took, k.stderr)
		}
	}
	for _, e := range ps(t, dir) {
		if e.Name == "channels-kvm" && e.Status == "running" {
			t.Errorf("the failed detached guest is listed as running: %+v", e)
		}
	}
	noQEMULeft(t, dir)
}

// TestRunExitCode: run exits with the workload's own code, here 3. The minimal preset has no
// network; --publish gives it user networking, said on one line.
func TestRunExitCode(t *testing.T) {
	skipShort(t)
	dir := newProject(t, "exit-three", "--lang", "python", "--template", "minimal")
	writeFile(t, filepath.Join(dir, "src", "main.py"), "import os, sys\nprint('interfaces:', sorted(os.listdir('/sys/class/net')), flush=True)\nprint('leaving with 3', flush=True)\nsys.exit(3)\n")
	r := uk(t, dir, 15*time.Minute, "run", "--publish", fmt.Sprintf("%d:8080", freePort(t)))
	if r.code != 3 {
		t.Fatalf("run exit code %d, want 3\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "leaving with 3") {
		t.Errorf("the workload's output is not on stdout:\n%s", r.stdout)
	}
	// Off a terminal: one plain line per step that did something, with its elapsed time, and
	// the lines scripts rely on.
	for _, re := range []string{
		`(?m)^Building: done \(\d+(ms|\.\ds|m\d\ds)\)$`, `(?m)^Packing: done \(\d+(ms|\.\ds|m\d\ds)\)$`,
		`(?m)^Image created: dist/exit-three\.img$`, `(?m)^QEMU started \(pid \d+\)$`, `(?m)^VM console: logs/console\.log$`,
		`(?m)^Starting VM: done \(\d+(ms|\.\ds)\)$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stderr) {
			t.Errorf("stderr has no line matching %s:\n%s", re, r.stderr)
		}
	}
	if strings.ContainsAny(r.stderr, "\r\x1b") || strings.Contains(r.stderr, "0.0s") {
		t.Errorf("stderr off a terminal has redraws or a 0.0s:\n%q", r.stderr)
	}
	if n := strings.Count(r.stderr, "Network: user (--publish needs a network"); n != 1 {
		t.Errorf("--publish on a project without a network: %d lines saying it switched to user networking, want 1:\n%s", n, r.stderr)
	}
	if !strings.Contains(r.stdout, "interfaces: ['") || strings.Contains(r.stdout, "interfaces: ['lo']") {
		t.Errorf("the guest has no network interface besides lo with --publish:\n%s", r.stdout)
	}
	noQEMULeft(t, dir)
}

// TestRunHTTPPresets: the http, python and flask presets answer on / from the host through
// --publish (flask with Flask and waitress from PyPI, locked by the build).
func TestRunHTTPPresets(t *testing.T) {
	skipShort(t)
	for _, tc := range []struct{ name, lang, preset string }{
		{"web-http", "python", "http"},
		{"web-python", "python", "python"},
		{"web-flask", "python", "flask"},
	} {
		t.Run(tc.preset, func(t *testing.T) {
			dir := newProject(t, tc.name, "--lang", tc.lang, "--template", tc.preset)
			port := freePort(t)
			mustUK(t, dir, 15*time.Minute, "run", "-d", "--publish", fmt.Sprintf("%d:8080", port))
			defer func() {
				uk(t, dir, 2*time.Minute, "stop", tc.name)
				noQEMULeft(t, dir)
			}()
			client := &http.Client{Timeout: 3 * time.Second}
			waitFor(t, "HTTP 200 on /", 2*time.Minute, func() (bool, string) {
				resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
				if err != nil {
					return false, err.Error()
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp.StatusCode == 200, fmt.Sprintf("%d %s", resp.StatusCode, body)
			})
			out, err := exec.Command("curl", "-fsS", fmt.Sprintf("http://127.0.0.1:%d/", port)).CombinedOutput()
			if err != nil {
				t.Errorf("curl: %v: %s", err, out)
			}
		})
	}
}

// TestRunEnvNotLeaked: an -e value reaches the workload and is written nowhere: not in the
// image, not under logs/.
func TestRunEnvNotLeaked(t *testing.T) {
	skipShort(t)
	dir := newProject(t, "env-check", "--lang", "python", "--template", "minimal")
	writeFile(t, filepath.Join(dir, "src", "main.py"), `import hashlib, os
v = os.environ.get("UK_TOKEN", "")
print("token sha256:", hashlib.sha256(v.encode()).hexdigest(), flush=True)
`+printRootReadahead)
	secret := fmt.Sprintf("s3cret-%d", time.Now().UnixNano())
	r := uk(t, dir, 15*time.Minute, "run", "-e", "UK_TOKEN="+secret)
	if r.code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	sum := sha256.Sum256([]byte(secret))
	if !strings.Contains(r.stdout, hex.EncodeToString(sum[:])) {
		t.Errorf("the workload did not see the -e value:\n%s", r.stdout)
	}
	checkRootReadahead(t, r.stdout)
	for _, sub := range []string{"dist", "logs", "build"} {
		filepath.Walk(filepath.Join(dir, sub), func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				if data, _ := os.ReadFile(p); bytes.Contains(data, []byte(secret)) {
					t.Errorf("the -e value is written in %s", p)
				}
			}
			return nil
		})
	}
	// Nor in the run-time state.
	state := os.Getenv("XDG_RUNTIME_DIR")
	filepath.Walk(state, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if data, _ := os.ReadFile(p); bytes.Contains(data, []byte(secret)) {
				t.Errorf("the -e value is left in %s", p)
			}
		}
		return nil
	})
}

// TestRunErrors: a missing tap device and a corrupt image are clear errors within deadlines.
func TestRunErrors(t *testing.T) {
	skipShort(t)
	dir := newProject(t, "err-check", "--lang", "python", "--template", "minimal")
	mustUK(t, dir, 15*time.Minute, "pack")
	start := time.Now()
	r := uk(t, dir, time.Minute, "run", "--net", "tap:uknotap0")
	if r.code != 125 || !strings.Contains(r.stderr, "uknotap0") {
		t.Errorf("missing tap: exit %d\n%s", r.code, r.stderr)
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("missing tap took %v", time.Since(start))
	}
	img := filepath.Join(dir, "dist", "err-check.img")
	bad := filepath.Join(t.TempDir(), "bad.img")
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff // inside the root partition
	if err := os.WriteFile(bad, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r = uk(t, dir, 2*time.Minute, "run", "--image", bad)
	if r.code != 125 || !strings.Contains(r.stderr, "root partition") {
		t.Errorf("corrupt image: exit %d\n%s", r.code, r.stderr)
	}
	noQEMULeft(t, dir)
}

// TestRunInterrupt: Ctrl-C to a foreground run stops the guest gracefully; no VMM process and
// no state remain.
func TestRunInterrupt(t *testing.T) {
	skipShort(t)
	dir := newProject(t, "int-worker", "--lang", "python", "--template", "worker")
	mustUK(t, dir, 15*time.Minute, "pack")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ukernelBin(t), "-C", dir, "run")
	var out testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first tick", 2*time.Minute, func() (bool, string) {
		return strings.Contains(out.String(), "tick 1"), out.String()
	})
	// What a terminal's Ctrl-C does: SIGINT to the foreground process group (ukernel's; QEMU
	// runs in its own group).
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	err := cmd.Wait()
	if ctx.Err() != nil {
		t.Fatalf("run did not end after SIGINT:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "worker stopped") {
		t.Errorf("the worker was not stopped gracefully (err %v):\n%s", err, out.String())
	}
	noQEMULeft(t, dir)
	for _, e := range ps(t, dir) {
		if e.Name == "int-worker" {
			t.Errorf("state left behind: %+v", e)
		}
	}
}

// TestRunSecondInterruptForces: a workload that ignores SIGTERM holds a graceful stop for the
// whole stop timeout; a second Ctrl-C kills the VMM at once.
func TestRunSecondInterruptForces(t *testing.T) {
	skipShort(t)
	dir := newProject(t, "force-stop", "--lang", "shell", "--template", "minimal")
	entry := "#!/bin/sh\ntrap '' TERM INT\necho ready\nwhile :; do sleep 1; done\n"
	writeFile(t, filepath.Join(dir, "src", "main.sh"), entry)
	mustUK(t, dir, 15*time.Minute, "pack")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ukernelBin(t), "-C", dir, "run", "--stop-timeout", "10m")
	var out testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the workload's start", 2*time.Minute, func() (bool, string) {
		return strings.Contains(out.String(), "ready"), out.String()
	})
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	waitFor(t, "the graceful stop", 30*time.Second, func() (bool, string) {
		return strings.Contains(out.String(), "Ctrl-C again forces it now"), out.String()
	})
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	forced := time.Now()
	err := cmd.Wait()
	if ctx.Err() != nil || time.Since(forced) > time.Minute {
		t.Fatalf("run did not end within a minute of the second SIGINT (its stop timeout is 10m):\n%s", out.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 || !strings.Contains(out.String(), "Forcing force-stop to stop") {
		t.Errorf("forced stop: %v\n%s", err, out.String())
	}
	noQEMULeft(t, dir)
}
