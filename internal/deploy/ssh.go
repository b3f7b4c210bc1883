package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ukernel-dev/ukernel/internal/guestlog"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/workdir"
)

// Target is one --host: [USER@]HOST[:PORT]. HOST may be an alias of the user's ssh_config.
type Target struct {
	User string
	Host string
	Port int // 0: ssh_config's or 22
}

// ParseTarget reads [USER@]HOST[:PORT]; an IPv6 address with a port is written [ADDR]:PORT.
func ParseTarget(s string) (Target, error) {
	var t Target
	rest := s
	if u, h, ok := strings.Cut(s, "@"); ok {
		if u == "" || strings.ContainsAny(u, " \t/:") {
			return t, fmt.Errorf("--host %q: the user before @ is empty or not a user name", s)
		}
		t.User, rest = u, h
	}
	host, port := rest, ""
	if strings.HasPrefix(rest, "[") {
		end := strings.Index(rest, "]")
		if end < 0 {
			return t, fmt.Errorf("--host %q: no ] after an IPv6 address", s)
		}
		host = rest[1:end]
		if after := rest[end+1:]; after != "" {
			if !strings.HasPrefix(after, ":") {
				return t, fmt.Errorf("--host %q: expected :PORT after ]", s)
			}
			port = after[1:]
		}
	} else if strings.Count(rest, ":") == 1 {
		host, port, _ = strings.Cut(rest, ":")
	}
	if host == "" || strings.HasPrefix(host, "-") || strings.ContainsAny(host, " \t/@[]") {
		return t, fmt.Errorf("--host %q: expected [USER@]HOST[:PORT]", s)
	}
	t.Host = host
	if port != "" {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return t, fmt.Errorf("--host %q: port %q is not a number from 1 to 65535", s, port)
		}
		t.Port = p
	}
	return t, nil
}

func (t Target) String() string {
	h := t.Host
	if strings.Contains(h, ":") {
		h = "[" + h + "]" // as ParseTarget reads it back, with a port or without
	}
	if t.Port != 0 {
		h += ":" + strconv.Itoa(t.Port)
	}
	if t.User != "" {
		h = t.User + "@" + h
	}
	return h
}

// SSHOptions is how the system's OpenSSH client is run. Zero values leave the user's own setup
// in charge: ~/.ssh/config (jump hosts, ports, users), the agent, default keys and known_hosts.
// The client finds ~ in the user database, not in $HOME: scripts that want other files name
// them here.
type SSHOptions struct {
	Config     string // -F
	Identity   string // -i, and only that key (IdentitiesOnly)
	KnownHosts string // UserKnownHostsFile, and no global one
	// AcceptNew records the key of a host never seen before; a changed key is still refused.
	AcceptNew bool
	// ConnectTimeout bounds the TCP connection and the SSH handshake of each host.
	ConnectTimeout time.Duration
	// Binary is the ssh client ("ssh" on PATH when empty).
	Binary string
}

// DefaultConnectTimeout bounds reaching a host and completing its SSH handshake.
const DefaultConnectTimeout = 10 * time.Second

// Conn is an SSH connection to a host: one master connection (ControlMaster) that every step's
// command shares, so the host key is checked and the user authenticated once.
type Conn struct {
	Target Target
	opts   SSHOptions
	dir    string // holds the control socket
	master *exec.Cmd
	done   chan struct{}
	stderr *capped
}

// baseArgs are the options of every ssh invocation.
func (c *Conn) baseArgs() []string {
	o := c.opts
	strict := "yes"
	if o.AcceptNew {
		strict = "accept-new"
	}
	secs := int((o.ConnectTimeout + time.Second - 1) / time.Second)
	args := []string{
		"-o", "BatchMode=yes", // never a password or passphrase prompt: a script would hang on it
		"-o", "StrictHostKeyChecking=" + strict,
		"-o", "ConnectTimeout=" + strconv.Itoa(secs),
		// A host that stops answering mid-step is noticed within 15s.
		"-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
		"-o", "ControlPath=" + filepath.Join(c.dir, "c"),
	}
	if o.Config != "" {
		args = append(args, "-F", o.Config)
	}
	if o.Identity != "" {
		args = append(args, "-i", o.Identity, "-o", "IdentitiesOnly=yes")
	}
	if o.KnownHosts != "" {
		args = append(args, "-o", "UserKnownHostsFile="+o.KnownHosts, "-o", "GlobalKnownHostsFile=/dev/null")
	}
	if c.Target.Port != 0 {
		args = append(args, "-p", strconv.Itoa(c.Target.Port))
	}
	if c.Target.User != "" {
		args = append(args, "-l", c.Target.User)
	}
	return args
}

func (c *Conn) binary() string {
	if c.opts.Binary != "" {
		return c.opts.Binary
	}
	return "ssh"
}

// socketPrefix names the directory of a connection's control socket, in the system's
// temporary directory.
const socketPrefix = "ukd-"

// Dial connects to t and returns once the host is authenticated (its key checked) and the user
// logged in, or with why not within the connect timeout.
func Dial(ctx context.Context, t Target, o SSHOptions) (*Conn, error) {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	bin := o.Binary
	if bin == "" {
		bin = "ssh"
	}
	if _, err := exec.LookPath(bin); err != nil {
		return nil, fmt.Errorf("the OpenSSH client (%s) is not installed: install openssh-client", bin)
	}
	// A short private path: a unix socket's path has about 100 bytes. Named for its owner: the
	// directory of a killed deploy goes with the next one.
	if _, err := workdir.Sweep(os.TempDir(), socketPrefix); err != nil {
		return nil, err
	}
	dir, err := workdir.Mkdir(os.TempDir(), socketPrefix)
	if err != nil {
		return nil, err
	}
	c := &Conn{Target: t, opts: o, dir: dir, done: make(chan struct{}), stderr: &capped{max: 64 << 10}}
	// -v gives the server's key fingerprint ("Server host key: ...") for a refusal to show.
	args := append(c.baseArgs(), "-M", "-N", "-v", "-o", "ControlPersist=no", "--", t.Host)
	c.master = exec.Command(bin, args...)
	c.master.Stderr = c.stderr
	// Tied to this process: a deploy killed (kill -9, or SIGTERM from a CI job's timeout, which
	// reaches it and not its children) never leaves the connection open behind it.
	wait, err := vmm.StartTied(c.master)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%s: start ssh: %w", t, err)
	}
	var werr error
	go func() { werr = wait(); close(c.done) }()
	// The client's own ConnectTimeout covers the TCP connection and the banner; this deadline
	// also covers a host that stalls later in the handshake or authentication.
	limit := o.ConnectTimeout + 5*time.Second
	timer := time.NewTimer(limit)
	defer timer.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			c.Close()
			return nil, fmt.Errorf("%s: %w", t, ctx.Err())
		case <-timer.C:
			c.Close()
			return nil, fmt.Errorf("%s: no SSH session within %s (the host did not answer, or accepted the connection and never completed the SSH handshake)%s",
				t, limit, lastLines(c.stderr.String()))
		case <-c.done:
			err := c.dialError(werr)
			c.Close()
			return nil, err
		case <-tick.C:
			if _, err := os.Stat(filepath.Join(dir, "c")); err == nil {
				return c, nil
			}
		}
	}
}

var (
	serverKeyRe = regexp.MustCompile(`Server host key: (\S+) (SHA256:\S+)`)
	changedRe   = regexp.MustCompile(`REMOTE HOST IDENTIFICATION HAS CHANGED`)
	unknownRe   = regexp.MustCompile(`No \S+ host key is known for (\S+)`)
)

// HostKeyError is a refused host key: unknown (and not accepted) or changed.
type HostKeyError struct {
	Target      Target
	Changed     bool
	KeyType     string
	Fingerprint string
	KnownHosts  string // the file that was checked ("" for ssh's default)
}

func (e *HostKeyError) Error() string {
	files := "your known_hosts (~/.ssh/known_hosts of the user database's home, or ssh_config's UserKnownHostsFile)"
	if e.KnownHosts != "" {
		files = e.KnownHosts
	}
	if e.Changed {
		return fmt.Sprintf("%s: refused: the host's %s key CHANGED; it is now %s, which does not match %s. "+
			"This may be an attack; if the host was reinstalled, check the new fingerprint on its console (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub) and replace its line in the file (ssh-keygen -R HOST)",
			e.Target, e.KeyType, e.Fingerprint, files)
	}
	return fmt.Sprintf("%s: refused: the host's %s key %s is not in %s. Check it on the host (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then add it "+
		"(ssh-keyscan, or ssh once by hand), or deploy with --accept-new-host-key to record it on this first contact",
		e.Target, e.KeyType, e.Fingerprint, files)
}

// dialError says why the master connection ended before it was ready.
func (c *Conn) dialError(werr error) error {
	log := c.stderr.String()
	if strings.Contains(log, "Host key verification failed") || changedRe.MatchString(log) || unknownRe.MatchString(log) {
		e := &HostKeyError{Target: c.Target, Changed: changedRe.MatchString(log), KnownHosts: c.opts.KnownHosts}
		if m := serverKeyRe.FindStringSubmatch(log); m != nil {
			e.KeyType, e.Fingerprint = guestlog.Neutralise(m[1]), guestlog.Neutralise(m[2]) // the host's bytes, for the terminal
		}
		return e
	}
	return fmt.Errorf("%s: ssh failed (%v)%s", c.Target, werr, lastLines(log))
}

// lastLines returns ssh's own messages (not its -v debug lines), last few, as ": ..." or "".
func lastLines(log string) string {
	var keep []string
	for _, l := range strings.Split(log, "\n") {
		l = strings.TrimSpace(strings.TrimSuffix(l, "\r"))
		if l == "" || strings.HasPrefix(l, "debug") || strings.HasPrefix(l, "OpenSSH_") || strings.HasPrefix(l, "Authenticated to") ||
			strings.HasPrefix(l, "Transferred:") || strings.HasPrefix(l, "Bytes per second:") {
			continue
		}
		keep = append(keep, guestlog.Neutralise(l))
	}
	if len(keep) > 4 {
		keep = keep[len(keep)-4:]
	}
	if len(keep) == 0 {
		return ""
	}
	return ": " + strings.Join(keep, "; ")
}

// Close ends the master connection and removes its socket.
func (c *Conn) Close() error {
	if c.master != nil && c.master.Process != nil {
		select {
		case <-c.done:
		default:
			c.master.Process.Kill()
			<-c.done
		}
	}
	return os.RemoveAll(c.dir)
}

// Run runs argv on the host (each word quoted for the remote shell) through the master
// connection, with stdin and stdout as given; it fails when ctx ends. The remote command's
// stderr is returned in the error when it fails.
func (c *Conn) Run(ctx context.Context, stdin io.Reader, stdout io.Writer, argv ...string) error {
	return c.RunScript(ctx, stdin, stdout, ShellJoin(argv))
}

// RunScript runs a shell command line on the host.
func (c *Conn) RunScript(ctx context.Context, stdin io.Reader, stdout io.Writer, script string) error {
	args := append(c.baseArgs(), "-T", "-o", "ControlMaster=no", "--", c.Target.Host, script)
	cmd := exec.CommandContext(ctx, c.binary(), args...)
	cmd.Stdin, cmd.Stdout = stdin, stdout
	errBuf := &capped{max: 16 << 10}
	cmd.Stderr = errBuf
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		msg := strings.TrimSpace(guestlog.Neutralise(errBuf.String()))
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 255 {
			return fmt.Errorf("%s: the SSH connection failed: %s", c.Target, msg)
		}
		if msg == "" {
			msg = err.Error()
		}
		return &RemoteError{Target: c.Target, Msg: msg}
	}
	return nil
}

// Stream runs argv on the host with its stdout and stderr passed on as they come.
func (c *Conn) Stream(ctx context.Context, stdout, stderr io.Writer, argv ...string) error {
	args := append(c.baseArgs(), "-T", "-o", "ControlMaster=no", "--", c.Target.Host, ShellJoin(argv))
	cmd := exec.CommandContext(ctx, c.binary(), args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("%s: %w", c.Target, err)
	}
	return nil
}

// RemoteError is a remote command's failure, with what it wrote on stderr.
type RemoteError struct {
	Target Target
	Msg    string
}

func (e *RemoteError) Error() string { return fmt.Sprintf("%s: %s", e.Target, e.Msg) }

// Output runs argv on the host and returns its stdout.
func (c *Conn) Output(ctx context.Context, argv ...string) ([]byte, error) {
	var out bytes.Buffer
	err := c.Run(ctx, nil, &out, argv...)
	return out.Bytes(), err
}

// ShellJoin quotes each word for a POSIX shell and joins them.
func ShellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = ShellQuote(a)
	}
	return strings.Join(q, " ")
}

var plainWord = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// ShellQuote quotes s as one word for a POSIX shell.
func ShellQuote(s string) string {
	if plainWord.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// capped keeps the first max bytes written to it (ssh's debug lines never grow without end).
type capped struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}
