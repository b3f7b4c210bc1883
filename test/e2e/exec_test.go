package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/ukernel-dev/ukernel/internal/runlog"
)

// ukIn runs ukernel with stdin.
func ukIn(t *testing.T, dir, stdin string, timeout time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, ukernelBin(t), append([]string{"-C", dir}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ctx.Err() != nil {
		t.Fatalf("ukernel %s: no result within %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), timeout, r.stdout, r.stderr)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// terminal is a ukernel command on a pseudo-terminal, as a user at a terminal runs it.
type terminal struct {
	t    *testing.T
	pty  *os.File
	cmd  *exec.Cmd
	mu   sync.Mutex
	seen bytes.Buffer
	done chan struct{}
}

func startTerminal(t *testing.T, dir string, rows, cols uint16, args ...string) *terminal {
	t.Helper()
	cmd := exec.Command(ukernelBin(t), append([]string{"-C", dir}, args...)...)
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: rows, Cols: cols})
	if err != nil {
		t.Fatal(err)
	}
	term := &terminal{t: t, pty: f, cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(term.done)
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			term.mu.Lock()
			term.seen.Write(buf[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		f.Close()
	})
	return term
}

// expect waits until the terminal has shown want since the last expect.
func (term *terminal) expect(want string, timeout time.Duration) {
	term.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		term.mu.Lock()
		s := term.seen.String()
		if i := strings.Index(s, want); i >= 0 {
			rest := s[i+len(want):]
			term.seen.Reset()
			term.seen.WriteString(rest)
			term.mu.Unlock()
			return
		}
		term.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	term.mu.Lock()
	defer term.mu.Unlock()
	term.t.Fatalf("the terminal did not show %q within %s; it shows:\n%q", want, timeout, term.seen.String())
}

func (term *terminal) send(s string) {
	term.t.Helper()
	if _, err := term.pty.WriteString(s); err != nil {
		term.t.Fatal(err)
	}
}

// TestExecAndShell: into one running python worker (no shell of its own: the development
// image's busybox serves), exec passes output, stderr, stdin and the exit code; shell runs on
// a terminal with its size, resize and Ctrl-C; two sessions run at once; each is an event.
func TestExecAndShell(t *testing.T) {
	skipShort(t)
	dir := newProject(t, "exec-worker", "--lang", "python", "--template", "worker")
	mustUK(t, dir, 15*time.Minute, "run", "-d")
	defer uk(t, dir, time.Minute, "stop", "exec-worker")
	// The guest serves sessions once init has claimed its ports: the first tries may find it
	// still booting.
	waitFor(t, "a first exec", 2*time.Minute, func() (bool, string) {
		r := uk(t, dir, time.Minute, "exec", "exec-worker", "--", "true")
		return r.code == 0, r.stdout + r.stderr
	})

	t.Run("output", func(t *testing.T) {
		r := uk(t, dir, time.Minute, "exec", "exec-worker", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
		if r.code != 7 || r.stdout != "out\n" || r.stderr != "err\n" {
			t.Errorf("exit %d, stdout %q, stderr %q; want 7, \"out\\n\", \"err\\n\"", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("stdin", func(t *testing.T) {
		in := "line one\nline two\n" + strings.Repeat("x", 100000) + "\n"
		r := ukIn(t, dir, in, time.Minute, "exec", "exec-worker", "--", "cat")
		if r.code != 0 || r.stdout != in {
			t.Errorf("cat: exit %d, %d bytes back of %d\n%s", r.code, len(r.stdout), len(in), r.stderr)
		}
	})
	t.Run("user", func(t *testing.T) {
		r := uk(t, dir, time.Minute, "exec", "--user", "app", "exec-worker", "--", "id", "-un")
		if r.code != 0 || r.stdout != "app\n" {
			t.Errorf("exec --user app: exit %d, %q %s", r.code, r.stdout, r.stderr)
		}
		if r := uk(t, dir, time.Minute, "exec", "exec-worker", "--", "no-such-command"); r.code != 127 || !strings.Contains(r.stderr, "no-such-command: not found") {
			t.Errorf("a missing command: exit %d, %s", r.code, r.stderr)
		}
	})
	t.Run("shell", func(t *testing.T) {
		term := startTerminal(t, dir, 30, 100, "shell")
		term.send("echo $((6*7))\r")
		term.expect("42\r\n", time.Minute)
		term.send("stty size\r")
		term.expect("30 100\r\n", time.Minute)
		if err := pty.Setsize(term.pty, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
			t.Fatal(err)
		}
		// The new size reaches the guest's terminal with SIGWINCH; ask until it shows.
		deadline := time.Now().Add(time.Minute)
		for {
			term.send("stty size\r")
			term.mu.Lock()
			resized := strings.Contains(term.seen.String(), "40 120\r\n")
			term.mu.Unlock()
			if resized || time.Now().After(deadline) {
				term.expect("40 120\r\n", time.Second)
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		term.send("sleep 300\r")
		time.Sleep(time.Second)
		term.send("\x03") // Ctrl-C, raw: to the guest's terminal, which interrupts the sleep
		term.send("echo after-$((1+1))\r")
		term.expect("after-2\r\n", time.Minute)
		term.send("exit 3\r")
		select {
		case <-term.done:
		case <-time.After(time.Minute):
			t.Fatal("shell did not end after exit")
		}
		err := term.cmd.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Errorf("shell exit: %v, want status 3", err)
		}
	})
	t.Run("two at once", func(t *testing.T) {
		var wg sync.WaitGroup
		res := make([]result, 2)
		start := time.Now()
		for i := range res {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[i] = uk(t, dir, time.Minute, "exec", "exec-worker", "--", "sh", "-c", "sleep 3; echo done-$$")
			}()
		}
		wg.Wait()
		for i, r := range res {
			if r.code != 0 || !strings.HasPrefix(r.stdout, "done-") {
				t.Errorf("session %d: exit %d, %q %s", i, r.code, r.stdout, r.stderr)
			}
		}
		if res[0].stdout == res[1].stdout {
			t.Errorf("both sessions ran the same process: %q", res[0].stdout)
		}
		if d := time.Since(start); d > 40*time.Second {
			t.Logf("two 3 s sessions took %s", d) // informative: they overlap, not a timing test
		}
	})
	run, err := runlog.LatestRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := os.ReadFile(run.Events())
	if !strings.Contains(string(ev), `"type":"exec.start","t_ns":`) || !strings.Contains(string(ev), `"name":"app"`) ||
		!strings.Contains(string(ev), `"message":"sh -c echo out; echo err \u003e\u00262; exit 7"`) || !strings.Contains(string(ev), `"code":7`) {
		t.Errorf("the run's events do not record the sessions (who, what, exit code):\n%s", ev)
	}
}

// TestExecRefusedOnRelease: a --release image refuses exec and shell with a reason and the
// way to allow them, answering at once rather than hanging.
func TestExecRefusedOnRelease(t *testing.T) {
	skipShort(t)
	dir := newProject(t, "exec-release", "--lang", "shell", "--template", "minimal")
	writeFile(t, filepath.Join(dir, "src", "main.sh"), "#!/bin/sh\necho up\nexec sleep 600\n")
	img := filepath.Join(dir, "dist", "release.img")
	mustUK(t, dir, 15*time.Minute, "pack", "--release", "--image", img)
	mustUK(t, dir, 5*time.Minute, "run", "-d", "--image", img)
	defer uk(t, dir, time.Minute, "stop", "exec-release")
	var r result
	waitFor(t, "an answer to exec", 2*time.Minute, func() (bool, string) {
		r = uk(t, dir, time.Minute, "exec", "exec-release", "--", "true")
		return r.code == 126, r.stdout + r.stderr
	})
	if !strings.Contains(r.stderr, "does not allow exec") || !strings.Contains(r.stderr, "[debug] shell = true") {
		t.Errorf("refusal without its reason or fix:\n%s", r.stderr)
	}
}
