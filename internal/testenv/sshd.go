package testenv

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// SSHD is Debian's OpenSSH server started by a test on 127.0.0.1, with a generated host key,
// logging in the current user with a generated key only.
type SSHD struct {
	Port int
	Addr string // 127.0.0.1:PORT
	// Target is [127.0.0.1]:PORT as --host takes it (127.0.0.1:PORT).
	Target string
	// ClientKey is the user's private key; KnownHosts lists the host's key; Config is an
	// ssh_config with nothing in it, so the user's own ~/.ssh/config stays out of the test.
	ClientKey, KnownHosts, Config string
	// HostKeyFingerprint is the host key's SHA256:... fingerprint.
	HostKeyFingerprint string
	Dir                string
	cmd                *exec.Cmd
	log                *SyncBuffer
}

// SSHDOptions set up the server. Env is set in every session (sshd_config SetEnv): a test
// gives the remote side its own HOME and XDG directories, apart from its local ones.
type SSHDOptions struct {
	Env map[string]string
	// Wrap is a command the server runs under (its sessions with it), as UserSystemd.Enter.
	Wrap []string
}

// RequireSSHD skips the test when openssh-server is missing (scripts/deps.sh --tests installs
// it).
func RequireSSHD(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/sshd", "/usr/bin/sshd"} {
		if _, err := os.Stat(p); err == nil {
			if _, err := exec.LookPath("ssh-keygen"); err != nil {
				t.Skip("ssh-keygen not installed (scripts/deps.sh --tests)")
			}
			return p
		}
	}
	t.Skip("openssh-server not installed (scripts/deps.sh --tests)")
	return ""
}

// Keygen makes an ed25519 key pair at path (and path.pub).
func Keygen(t testing.TB, path string) {
	t.Helper()
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ukernel-test", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
}

// Fingerprint is the SHA256:... fingerprint of a public key file.
func Fingerprint(t testing.TB, pub string) string {
	t.Helper()
	out, err := exec.Command("ssh-keygen", "-l", "-E", "sha256", "-f", pub).Output()
	if err != nil {
		t.Fatalf("ssh-keygen -l %s: %v", pub, err)
	}
	f := strings.Fields(string(out))
	if len(f) < 2 {
		t.Fatalf("ssh-keygen -l %s: %q", pub, out)
	}
	return f[1]
}

// KnownHostsLine is a known_hosts line for 127.0.0.1:port with the public key file pub.
func KnownHostsLine(t testing.TB, port int, pub string) string {
	t.Helper()
	b, err := os.ReadFile(pub)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	return fmt.Sprintf("[127.0.0.1]:%d %s %s\n", port, f[0], f[1])
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartSSHD starts the server; it is stopped when the test ends.
func StartSSHD(t testing.TB, o SSHDOptions) *SSHD {
	t.Helper()
	bin := RequireSSHD(t)
	// Short: ssh's control socket paths are built from it in some tests.
	dir, err := os.MkdirTemp("", "uksshd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &SSHD{Dir: dir, Port: FreePort(t), log: &SyncBuffer{}}
	s.Addr = fmt.Sprintf("127.0.0.1:%d", s.Port)
	s.Target = s.Addr
	hostKey := filepath.Join(dir, "host_ed25519")
	Keygen(t, hostKey)
	s.HostKeyFingerprint = Fingerprint(t, hostKey+".pub")
	s.ClientKey = filepath.Join(dir, "id_ed25519")
	Keygen(t, s.ClientKey)
	pub, err := os.ReadFile(s.ClientKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("authorized_keys", string(pub), 0o600)
	s.KnownHosts = write("known_hosts", KnownHostsLine(t, s.Port, hostKey+".pub"), 0o600)
	s.Config = write("ssh_config", "# empty: the test's own settings only\n", 0o600)
	var env []string
	keys := make([]string, 0, len(o.Env))
	for k := range o.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, fmt.Sprintf("%q", k+"="+o.Env[k]))
	}
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
LogLevel ERROR
`, s.Port, hostKey, filepath.Join(dir, "sshd.pid"), filepath.Join(dir, "authorized_keys"))
	if len(env) > 0 {
		cfg += "SetEnv " + strings.Join(env, " ") + "\n"
	}
	cfgPath := write("sshd_config", cfg, 0o600)
	if os.Getuid() == 0 {
		// The privilege separation directory, which the packaged service creates at boot.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(bin, "-t", "-f", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("sshd -t: %v: %s", err, out)
	}
	argv := append(append([]string{}, o.Wrap...), bin, "-D", "-e", "-f", cfgPath)
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen on %s within 10s: %s", s.Addr, s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

// Stop stops the server.
func (s *SSHD) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// Log is what sshd printed.
func (s *SSHD) Log() string { return s.log.String() }

// SSH runs a command on the server with the test's key and known_hosts, for checks.
func (s *SSHD) SSH(t testing.TB, command string) string {
	t.Helper()
	cmd := exec.Command("ssh", "-F", s.Config, "-i", s.ClientKey, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile="+s.KnownHosts, "-o", "StrictHostKeyChecking=yes", "-p", fmt.Sprint(s.Port), "127.0.0.1", command)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("ssh %s: %v: %s\nsshd: %s", command, err, errb.String(), s.Log())
	}
	return out.String()
}
