package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// UserSystemd is a real systemd user manager (systemd --user) for tests of what runs under
// systemd. It refuses to start unless the system was booted with systemd
// (/run/systemd/system), so it runs in a mount namespace of its own where a tmpfs on
// /run/systemd says so; nothing of the host's systemd state is touched. That takes root
// (unshare -m); the test is skipped otherwise.
type UserSystemd struct {
	PID        int
	RuntimeDir string // its XDG_RUNTIME_DIR: systemctl --user finds it there
	cmd        *exec.Cmd
}

// UserSystemdMissing says why StartUserSystemd cannot run here ("" when it can).
func UserSystemdMissing() string {
	if os.Getuid() != 0 {
		return "a systemd user manager in a mount namespace of its own needs root (unshare -m)"
	}
	if systemdBinary() == "" {
		return "systemd is not installed"
	}
	for _, tool := range []string{"unshare", "nsenter", "systemctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " is not installed"
		}
	}
	return ""
}

func systemdBinary() string {
	for _, p := range []string{"/usr/lib/systemd/systemd", "/lib/systemd/systemd"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// StartUserSystemd starts the manager for a user whose HOME is home (its units in
// home/.config/systemd/user) with runtimeDir as XDG_RUNTIME_DIR; it exits when the test ends.
// The test is skipped where UserSystemdMissing says why it cannot run.
func StartUserSystemd(t testing.TB, home, runtimeDir string) *UserSystemd {
	t.Helper()
	if why := UserSystemdMissing(); why != "" {
		t.Skip(why)
	}
	bin := systemdBinary()
	if err := os.MkdirAll(runtimeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		`mkdir -p /run/systemd && mount -t tmpfs -o mode=0755 tmpfs /run/systemd && mkdir /run/systemd/system && exec "$0" --user`, bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_RUNTIME_DIR=" + runtimeDir, "LANG=C.UTF-8"}
	log := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &UserSystemd{PID: cmd.Process.Pid, RuntimeDir: runtimeDir, cmd: cmd}
	t.Cleanup(s.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(runtimeDir, "systemd", "private")); err == nil {
			if _, err := s.Ctl("show-environment"); err == nil {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd --user did not answer within 30s: %s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Enter is the command prefix that runs a program in the manager's mount namespace, where
// /run/systemd/system says systemd runs.
func (s *UserSystemd) Enter() []string {
	return []string{"nsenter", "-t", strconv.Itoa(s.PID), "-m", "--"}
}

// Ctl runs systemctl --user against the manager.
func (s *UserSystemd) Ctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "systemctl", append([]string{"--user"}, args...)...)
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+s.RuntimeDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("systemctl --user %v: %v: %s", args, err, out)
	}
	return string(out), nil
}

// stop ends the manager and every unit it runs.
func (s *UserSystemd) stop() {
	s.Ctl("exit")
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}
