package deploy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/testenv"
)

func TestParseTarget(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Target
		err  string
	}{
		{in: "10.0.0.5", want: Target{Host: "10.0.0.5"}},
		{in: "deploy@web1", want: Target{User: "deploy", Host: "web1"}},
		{in: "deploy@web1:2222", want: Target{User: "deploy", Host: "web1", Port: 2222}},
		{in: "[::1]:22", want: Target{Host: "::1", Port: 22}},
		{in: "::1", want: Target{Host: "::1"}},
		{in: "root@[fe80::1]", want: Target{User: "root", Host: "fe80::1"}},
		{in: "web1:0", err: "port"},
		{in: "web1:http", err: "port"},
		{in: "@web1", err: "user"},
		{in: "-oProxyCommand=x", err: "expected"},
		{in: "", err: "expected"},
		{in: "[::1", err: "no ]"},
	} {
		got, err := ParseTarget(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseTarget(%q) = %v, %v; want an error with %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			continue
		}
		// What String prints parses back to the same target.
		if back, err := ParseTarget(got.String()); err != nil || back != got {
			t.Errorf("ParseTarget(%q.String() = %q) = %+v, %v", c.in, got.String(), back, err)
		}
	}
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"a@b:22", "[::1]:2", "h", "u@[x]", "@:", "a:b:c", "[a:b]", "[[]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTarget(s)
		if err != nil {
			return
		}
		if got.Host == "" || strings.HasPrefix(got.Host, "-") {
			t.Fatalf("ParseTarget(%q) accepted host %q", s, got.Host)
		}
		if back, err := ParseTarget(got.String()); err != nil || back != got {
			t.Fatalf("ParseTarget(%q) = %+v; its String %q parses to %+v, %v", s, got, got.String(), back, err)
		}
	})
}

// TestShellQuote checks the quoting against the real shell: each word comes back as it was.
func TestShellQuote(t *testing.T) {
	words := []string{"plain", "", "two words", "it's", `back\slash`, "$HOME", "`id`", "a\nb", "*", "-n", "é"}
	out, err := exec.Command("sh", "-c", `for a in `+ShellJoin(words)+`; do printf '%s\0' "$a"; done`).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if strings.Join(got, "|") != strings.Join(words, "|") {
		t.Errorf("the shell read %q; want %q", got, words)
	}
}

func testSSH(s *testenv.SSHD) SSHOptions {
	return SSHOptions{Config: s.Config, Identity: s.ClientKey, KnownHosts: s.KnownHosts, ConnectTimeout: 5 * time.Second}
}

func mustTarget(t *testing.T, s string) Target {
	t.Helper()
	tg, err := ParseTarget(s)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func TestDialRunsCommands(t *testing.T) {
	home := t.TempDir()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{Env: map[string]string{"HOME": home}})
	ctx := context.Background()
	c, err := Dial(ctx, mustTarget(t, s.Target), testSSH(s))
	if err != nil {
		t.Fatalf("%v\nsshd: %s", err, s.Log())
	}
	defer c.Close()
	// The session's HOME is the one the server set (the remote side's state stays apart).
	out, err := c.Output(ctx, "sh", "-c", `printf '%s' "$HOME"`)
	if err != nil || string(out) != home {
		t.Fatalf("remote HOME = %q, %v; want %q", out, err, home)
	}
	// A failing command's stderr is in the error.
	err = c.Run(ctx, nil, nil, "sh", "-c", "echo no such thing >&2; exit 3")
	var re *RemoteError
	if !errors.As(err, &re) || !strings.Contains(re.Msg, "no such thing") {
		t.Errorf("failing command: %v", err)
	}
	// A step's deadline ends it.
	sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := c.Run(sctx, nil, nil, "sleep", "30"); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Errorf("sleep past its deadline: %v after %s", err, time.Since(start))
	}
	sock := filepath.Join(c.dir, "c")
	c.Close()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the control socket %s is left after Close: %v", sock, err)
	}
}

func TestHostKeys(t *testing.T) {
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	ctx := context.Background()
	tg := mustTarget(t, s.Target)

	// Unknown: refused, with the host key's fingerprint.
	empty := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	o := testSSH(s)
	o.KnownHosts = empty
	_, err := Dial(ctx, tg, o)
	var hk *HostKeyError
	if !errors.As(err, &hk) || hk.Changed || hk.Fingerprint != s.HostKeyFingerprint || !strings.Contains(err.Error(), s.HostKeyFingerprint) {
		t.Fatalf("unknown host key: %v; want a refusal showing %s", err, s.HostKeyFingerprint)
	}
	if b, _ := os.ReadFile(empty); len(b) != 0 {
		t.Errorf("a refused key was recorded: %s", b)
	}

	// A first contact with --accept-new-host-key records it.
	o.AcceptNew = true
	c, err := Dial(ctx, tg, o)
	if err != nil {
		t.Fatalf("accept-new: %v", err)
	}
	c.Close()
	if b, _ := os.ReadFile(empty); !strings.Contains(string(b), "ssh-ed25519") {
		t.Errorf("accept-new did not record the key: %q", b)
	}

	// Changed: refused, even with --accept-new-host-key, showing the new fingerprint.
	other := filepath.Join(t.TempDir(), "other")
	testenv.Keygen(t, other)
	changed := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(changed, []byte(testenv.KnownHostsLine(t, s.Port, other+".pub")), 0o600); err != nil {
		t.Fatal(err)
	}
	o.KnownHosts = changed
	_, err = Dial(ctx, tg, o)
	if !errors.As(err, &hk) || !hk.Changed || hk.Fingerprint != s.HostKeyFingerprint || !strings.Contains(err.Error(), "CHANGED") {
		t.Fatalf("changed host key: %v; want a refusal showing %s", err, s.HostKeyFingerprint)
	}
}

// TestSilentListener: a host that accepts the connection and never speaks SSH fails within the
// connect timeout (and a few seconds), named in the error.
func TestSilentListener(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent
		}
	}()
	tg := mustTarget(t, l.Addr().String())
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, nil, 0o600)
	start := time.Now()
	_, err = Dial(context.Background(), tg, SSHOptions{Config: "/dev/null", KnownHosts: kh, ConnectTimeout: 2 * time.Second})
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), tg.String()) {
		t.Fatalf("silent listener: %v; want an error naming %s", err, tg)
	}
	if took > 10*time.Second {
		t.Errorf("silent listener took %s to fail; the connect timeout is 2s", took)
	}
	t.Logf("failed after %s: %v", took.Round(time.Millisecond), err)
}

// TestCopyBinary: the binary goes to the host when it is absent or differs, not otherwise.
func TestCopyBinary(t *testing.T) {
	home := t.TempDir()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{Env: map[string]string{"HOME": home}})
	ctx := context.Background()
	c, err := Dial(ctx, mustTarget(t, s.Target), testSSH(s))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	exe := filepath.Join(t.TempDir(), "ukernel")
	os.WriteFile(exe, []byte("#!/bin/sh\necho v1\n"), 0o755)
	o := Options{Exe: exe}
	remote := filepath.Join(home, ".local", "bin", "ukernel")
	for i, want := range []bool{true, false} {
		h, err := setupHost(ctx, c, o)
		if err != nil {
			t.Fatal(err)
		}
		if h.copied != want || h.bin != remote {
			t.Errorf("setup %d: copied %v to %s; want %v to %s", i, h.copied, h.bin, want, remote)
		}
	}
	if out, err := exec.Command(remote).Output(); err != nil || string(out) != "v1\n" {
		t.Errorf("the copied binary runs as %q, %v", out, err)
	}
	// Another binary replaces it; --remote-bin puts it elsewhere.
	os.WriteFile(exe, []byte("#!/bin/sh\necho v2\n"), 0o755)
	o.RemoteBin = "~/bin/uk"
	h, err := setupHost(ctx, c, o)
	if err != nil || !h.copied || h.bin != filepath.Join(home, "bin", "uk") {
		t.Fatalf("--remote-bin: %+v, %v", h, err)
	}
}

// TestKilledDeployEndsItsConnection: a deploy killed with its SSH connection open (SIGKILL, or
// SIGTERM from a CI job's timeout, which reaches ukernel and not its children) takes its ssh
// master process with it, and the next deploy removes the killed one's control-socket
// directory. Before, the master kept the connection (and a session on the host) open for good.
// The killed deploy is this test binary, re-executed.
func TestKilledDeployEndsItsConnection(t *testing.T) {
	if target := os.Getenv("UKT_DIAL_HELPER"); target != "" {
		o := SSHOptions{Config: os.Getenv("UKT_SSH_CONFIG"), Identity: os.Getenv("UKT_SSH_KEY"), KnownHosts: os.Getenv("UKT_SSH_KNOWN"), ConnectTimeout: 5 * time.Second}
		c, err := Dial(context.Background(), mustTarget(t, target), o)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("master %d\n", c.master.Process.Pid)
		time.Sleep(time.Minute) // killed meanwhile
		return
	}
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestKilledDeployEndsItsConnection$")
	cmd.Env = append(os.Environ(), "UKT_DIAL_HELPER="+s.Target, "UKT_SSH_CONFIG="+s.Config, "UKT_SSH_KEY="+s.ClientKey, "UKT_SSH_KNOWN="+s.KnownHosts)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var master int
	if _, err := fmt.Fscanf(out, "master %d\n", &master); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the connection was not made: %v\nsshd: %s", err, s.Log())
	}
	cmd.Process.Kill()
	cmd.Wait()
	gone := func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", master))
		if err != nil {
			return true
		}
		_, rest, _ := strings.Cut(string(b), ") ")
		return strings.HasPrefix(rest, "Z") // dead, not yet reaped by its new parent
	}
	for deadline := time.Now().Add(5 * time.Second); !gone(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			syscall.Kill(master, syscall.SIGKILL)
			t.Fatalf("the ssh master (pid %d) of the killed deploy still runs", master)
		}
	}
	c, err := Dial(ctx, mustTarget(t, s.Target), testSSH(s))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("the temporary directory holds %v after a killed deploy and the next one", left)
	}
}

// TestHostileAgentAnswers: a host whose ukernel answers what it likes gets an error, not a
// crash: a rollback answer without a current revision was dereferenced (nil pointer), a
// revision digest of 3 characters was accepted and sliced to 12 by `deploy status`.
func TestHostileAgentAnswers(t *testing.T) {
	home := t.TempDir()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{Env: map[string]string{"HOME": home}})
	exe := filepath.Join(t.TempDir(), "ukernel")
	os.WriteFile(exe, []byte(`#!/bin/sh
cat >/dev/null
case "$2" in
rollback) echo '{"name":"web","supervisor":"monitor"}' ;;
status) echo '{"name":"web","supervisor":"monitor","current":{"id":"r1","digest":"abc"}}' ;;
esac
`), 0o755)
	r := Remote{Hosts: []Target{mustTarget(t, s.Target)}, SSH: testSSH(s), Exe: exe, Name: "web", HealthTimeout: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := Rollback(ctx, r); err == nil || !strings.Contains(err.Error(), "names no current revision") {
		t.Errorf("rollback answer without a current revision: %v", err)
	}
	if _, err := Status(ctx, r); err == nil || !strings.Contains(err.Error(), `"abc" is not a lowercase hex SHA-256`) {
		t.Errorf("status answer with a short digest: %v", err)
	}
}
