package deploy

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
)

// UnitName is the systemd unit of the deployment name.
func UnitName(name string) string { return "ukernel-" + name + ".service" }

// UnitSpec is what a deployment's unit runs.
type UnitSpec struct {
	Name    string
	Exe     string
	RunArgs []string          // after Exe: -C DIR run --name ... (foreground)
	Env     map[string]string // HOME, XDG_*: where ukernel keeps its state
	User    bool              // a user unit (the deploying user is not root)
}

// UnitFile returns the unit: the guest runs in the foreground under systemd, which restarts it
// on failure; `ukernel stop` stops it gracefully.
func UnitFile(s UnitSpec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by ukernel deploy; deploy again rather than editing it.\n")
	fmt.Fprintf(&b, "[Unit]\nDescription=ukernel guest %s\n", s.Name)
	if !s.User {
		fmt.Fprintf(&b, "After=network-online.target\nWants=network-online.target\n")
	}
	fmt.Fprintf(&b, "\n[Service]\nType=simple\n")
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		// Environment= expands specifiers but no variables: its $ stays single.
		fmt.Fprintf(&b, "Environment=%s\n", quoteWord(k+"="+s.Env[k], false))
	}
	fmt.Fprintf(&b, "ExecStart=%s\n", unitCommand(append([]string{s.Exe}, s.RunArgs...)))
	fmt.Fprintf(&b, "ExecStop=%s\n", unitCommand([]string{s.Exe, "stop", "--timeout", "10s", s.Name}))
	fmt.Fprintf(&b, "Restart=on-failure\nRestartSec=2s\nTimeoutStopSec=40s\nKillMode=mixed\n")
	target := "multi-user.target"
	if s.User {
		target = "default.target"
	}
	fmt.Fprintf(&b, "\n[Install]\nWantedBy=%s\n", target)
	return b.String()
}

// unitCommand quotes a command line for ExecStart= (systemd.service(5) "Command lines").
// systemd substitutes variables in the arguments but not in the executable's path, so a $ there
// stays single (a real systemd failed a unit whose path had "$$" with 203/EXEC).
func unitCommand(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = quoteWord(a, i > 0)
	}
	return strings.Join(q, " ")
}

// quoteWord makes s one word that systemd reads back as s: double-quoted with C escapes, its
// specifier characters (%) doubled, and its variable characters ($) where systemd substitutes
// variables (vars).
func quoteWord(s string, vars bool) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '%':
			b.WriteString("%%")
		case '$':
			if vars {
				b.WriteString("$$")
			} else {
				b.WriteRune(r)
			}
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// systemd is the host's systemd: the system manager for root, the user's own manager else.
type systemd struct {
	user    bool
	unitDir string
}

// detectSystemd returns the host's systemd when it is init (sd_booted: /run/systemd/system).
func detectSystemd() *systemd {
	if _, err := exec.LookPath("systemctl"); err != nil {
		return nil
	}
	home, _ := os.UserHomeDir()
	return pickSystemd(os.Getuid(), home, os.Getenv("XDG_CONFIG_HOME"), os.Getenv("XDG_RUNTIME_DIR"), exists)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// pickSystemd chooses the manager: root's units go to the system manager (its private socket
// /run/systemd/private answers), a user's to the user's own manager, and so do root's when only
// root's user manager runs (a container whose init is not systemd; the tests' manager).
func pickSystemd(uid int, home, configHome, runtimeDir string, exists func(string) bool) *systemd {
	if !exists("/run/systemd/system") {
		return nil
	}
	if uid == 0 && (exists("/run/systemd/private") || runtimeDir == "" || !exists(filepath.Join(runtimeDir, "systemd", "private"))) {
		return &systemd{unitDir: "/etc/systemd/system"}
	}
	if configHome == "" {
		configHome = filepath.Join(home, ".config")
	}
	return &systemd{user: true, unitDir: filepath.Join(configHome, "systemd", "user")}
}

// argv is the systemctl command line of one request to this manager.
func (s *systemd) argv(args ...string) []string {
	if s.user {
		args = append([]string{"--user"}, args...)
	}
	return append([]string{"systemctl"}, args...)
}

func (s *systemd) ctl(ctx context.Context, argv []string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// startCommands are what start runs once the unit file is in place: the manager reads it,
// enables it (it comes back after a reboot) and (re)starts it, stopping the previous revision's
// guest through ExecStop first.
func (s *systemd) startCommands(unit string) [][]string {
	return [][]string{s.argv("daemon-reload"), s.argv("enable", unit), s.argv("restart", unit)}
}

// start installs the unit and (re)starts it.
func (s *systemd) start(ctx context.Context, unit, content string) error {
	if err := os.MkdirAll(s.unitDir, 0o755); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(s.unitDir, unit), []byte(content), 0o644); err != nil {
		return err
	}
	for _, argv := range s.startCommands(unit) {
		if err := s.ctl(ctx, argv); err != nil {
			return err
		}
	}
	return nil
}

func (s *systemd) stop(ctx context.Context, unit string) error {
	if _, err := os.Stat(filepath.Join(s.unitDir, unit)); err != nil {
		return nil
	}
	return s.ctl(ctx, s.argv("stop", unit))
}
