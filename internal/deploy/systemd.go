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
		fmt.Fprintf(&b, "Environment=%s\n", unitQuote(k+"="+s.Env[k]))
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
func unitCommand(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = unitQuote(a)
	}
	return strings.Join(q, " ")
}

// unitQuote makes s one word that systemd reads back as s: double-quoted with C escapes, and
// its specifier (%) and variable ($) characters doubled.
func unitQuote(s string) string {
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
			b.WriteString("$$")
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
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		return nil
	}
	if _, err := exec.LookPath("systemctl"); err != nil {
		return nil
	}
	if os.Getuid() == 0 {
		return &systemd{unitDir: "/etc/systemd/system"}
	}
	base := os.Getenv("XDG_CONFIG_HOME")
	if base == "" {
		home, _ := os.UserHomeDir()
		base = filepath.Join(home, ".config")
	}
	return &systemd{user: true, unitDir: filepath.Join(base, "systemd", "user")}
}

func (s *systemd) ctl(ctx context.Context, args ...string) error {
	if s.user {
		args = append([]string{"--user"}, args...)
	}
	cmd := exec.CommandContext(ctx, "systemctl", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("systemctl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// start installs the unit and (re)starts it.
func (s *systemd) start(ctx context.Context, unit, content string) error {
	if err := os.MkdirAll(s.unitDir, 0o755); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(s.unitDir, unit), []byte(content), 0o644); err != nil {
		return err
	}
	if err := s.ctl(ctx, "daemon-reload"); err != nil {
		return err
	}
	if err := s.ctl(ctx, "enable", unit); err != nil {
		return err
	}
	return s.ctl(ctx, "restart", unit)
}

func (s *systemd) stop(ctx context.Context, unit string) error {
	if _, err := os.Stat(filepath.Join(s.unitDir, unit)); err != nil {
		return nil
	}
	return s.ctl(ctx, "stop", unit)
}
