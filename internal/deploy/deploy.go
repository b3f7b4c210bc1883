// Package deploy runs an image on the user's own Linux hosts over SSH: the system's OpenSSH
// client (the user's config, agent, keys and jump hosts; host keys always checked) carries
// ukernel's own binary, the image (by digest: nothing when the host has it) and the run
// settings (secrets over the SSH channel only) to the host, where the same binary, as the
// deploy agent (host.go), verifies the image and runs it under systemd or its own monitor.
// Deploy then waits for the guest's health and puts the previous revision back when the new
// one fails it.
package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/ukernel-dev/ukernel/internal/guestlog"
	"github.com/ukernel-dev/ukernel/internal/image"
	"github.com/ukernel-dev/ukernel/internal/oci"
	"github.com/ukernel-dev/ukernel/internal/runenv"
)

// Options are the settings of one deployment.
type Options struct {
	Hosts []Target
	SSH   SSHOptions
	Image string // the local image file
	Name  string // "": the image's name
	// Digest is the image's known SHA-256 (a template revision's id): the file must match it.
	Digest   string
	VCPU     int // 0: the image's
	MemoryMB int
	DataMB   int // 0: the image's data volume ([data] disk_mb); a template's data_mb
	Net      string
	Publish  []string
	Env      map[string]string
	Secrets  map[string][]byte
	// Pulled is the image's pull record (oci.PullRecord), nil for a local build: each host
	// checks its signatures under its own trust policy.
	Pulled *oci.Record
	// RemoteBin is where ukernel lives on the host: "" is ~/.local/bin/ukernel; a leading ~/
	// is the remote user's home.
	RemoteBin     string
	Exe           string        // this ukernel binary, copied to hosts that lack it
	HealthTimeout time.Duration // how long the new revision gets to become healthy
	NoRollback    bool
	Progress      io.Writer
}

// DefaultHealthTimeout bounds the wait for a deployed guest's health.
const DefaultHealthTimeout = 5 * time.Minute

// Step deadlines.
const (
	probeTimeout  = 30 * time.Second
	agentTimeout  = 3 * time.Minute // an activation stops the old guest and starts the new
	minCopyTime   = time.Minute
	copyBandwidth = 1 << 20 // bytes per second any link manages: bounds a transfer's time
)

// Result is what happened on one host (deploy's --json document is a list of them).
type Result struct {
	Host       string            `json:"host"`
	Name       string            `json:"name"`
	Digest     string            `json:"digest,omitempty"` // sha256:HEX
	Supervisor string            `json:"supervisor,omitempty"`
	Binary     string            `json:"binary,omitempty"` // copied, present
	Image      string            `json:"image,omitempty"`  // sent, present
	SentBytes  int64             `json:"sent_bytes"`       // ukernel's binary and the image
	Revision   string            `json:"revision,omitempty"`
	Previous   string            `json:"previous_digest,omitempty"`
	Status     string            `json:"status"` // healthy, rolled-back, failed, skipped
	Health     map[string]string `json:"health,omitempty"`
	Error      string            `json:"error,omitempty"`
}

// Result statuses.
const (
	StatusHealthy    = "healthy"
	StatusRolledBack = "rolled-back"
	StatusFailed     = "failed"
	StatusSkipped    = "skipped"
)

// Deploy deploys o.Image to each host in turn and stops at the first that fails; the hosts
// after it are reported as skipped. The error says why the failing host failed.
func Deploy(ctx context.Context, o Options) ([]Result, error) {
	// Checked here, before any host is reached: the host keeps the environment in an env file.
	if _, err := runenv.EnvFile(o.Env); err != nil {
		return nil, fmt.Errorf("-e/--env-file: %w", err)
	}
	im, err := image.Open(o.Image)
	if err != nil {
		return nil, err
	}
	digest, err := im.SHA256()
	name := o.Name
	if name == "" {
		name = im.Manifest().Name
	}
	im.Close()
	if err != nil {
		return nil, err
	}
	if o.Digest != "" && o.Digest != digest {
		return nil, fmt.Errorf("%s has digest sha256:%s, not sha256:%s as its template revision says: the stored image changed", o.Image, digest, o.Digest)
	}
	if o.HealthTimeout <= 0 {
		o.HealthTimeout = DefaultHealthTimeout
	}
	var results []Result
	for i, t := range o.Hosts {
		r := Result{Host: t.String(), Name: name, Digest: "sha256:" + digest}
		err := deployHost(ctx, o, t, name, digest, &r)
		if err != nil {
			if r.Status == "" {
				r.Status = StatusFailed
			}
			r.Error = err.Error()
			results = append(results, r)
			for _, rest := range o.Hosts[i+1:] {
				results = append(results, Result{Host: rest.String(), Name: name, Digest: "sha256:" + digest, Status: StatusSkipped})
			}
			return results, err
		}
		results = append(results, r)
	}
	return results, nil
}

func (o Options) progress(format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, format+"\n", args...)
	}
}

func deployHost(ctx context.Context, o Options, t Target, name, digest string, r *Result) error {
	o.progress("%s: connecting", t)
	c, err := Dial(ctx, t, o.SSH)
	if err != nil {
		return err
	}
	defer c.Close()
	h, err := setupHost(ctx, c, o)
	if err != nil {
		return err
	}
	r.SentBytes += h.sent
	r.Binary = "present"
	if h.copied {
		r.Binary = "copied"
	}

	var prep Prepared
	if err := h.agent(ctx, agentTimeout, OpPrepare, Prepare{Name: name, Digest: digest}, &prep); err != nil {
		return err
	}
	r.Supervisor = prep.Supervisor
	if prep.App != nil && prep.App.Current != nil {
		r.Previous = "sha256:" + prep.App.Current.Digest
	}
	r.Image = "present"
	if !prep.HasImage {
		n, err := h.sendImage(ctx, o, digest)
		r.SentBytes += n
		if err != nil {
			return err
		}
		r.Image = "sent"
	}

	o.progress("%s: starting %s (sha256:%s) under %s", t, name, digest[:12], prep.Supervisor)
	var app App
	actErr := h.agent(ctx, agentTimeout, OpActivate, Activate{Name: name, Digest: digest, VCPU: o.VCPU, MemoryMB: o.MemoryMB, DataMB: o.DataMB, Net: o.Net,
		Publish: o.Publish, Env: o.Env, Secrets: o.Secrets, Pulled: o.Pulled}, &app)
	if app.Current != nil {
		r.Revision = app.Current.ID
	} else if actErr == nil {
		actErr = fmt.Errorf("%s: the host's answer to %s names no current revision", t, OpActivate)
	}
	var health map[string]string
	if actErr == nil {
		o.progress("%s: waiting for %s to be healthy (up to %s)", t, name, o.HealthTimeout)
		health, actErr = h.waitHealthy(ctx, name, app.Current.Checks, app.Started, o.HealthTimeout)
		r.Health = health
	}
	if actErr == nil {
		r.Status = StatusHealthy
		o.progress("%s: %s is healthy", t, name)
		return nil
	}
	if o.NoRollback || prep.App == nil || prep.App.Current == nil {
		return actErr
	}
	// An activation refused before the switch (the image failed a check, the host's trust
	// policy) left the running revision alone: there is nothing to roll back.
	var now App
	if err := h.agent(ctx, agentTimeout, OpStatus, NameRequest{Name: name}, &now); err != nil {
		return fmt.Errorf("%w; and the host's state is unknown: %v", actErr, err)
	}
	if now.Current == nil || now.Current.ID == prep.App.Current.ID {
		return actErr
	}
	o.progress("%v; rolling back to sha256:%s", actErr, prep.App.Current.Digest[:12])
	var back App
	if err := h.agent(ctx, agentTimeout, OpRollback, NameRequest{Name: name}, &back); err != nil {
		return fmt.Errorf("%w; the rollback failed too: %v", actErr, err)
	}
	if back.Current == nil {
		return fmt.Errorf("%w; the host's answer to %s names no current revision", actErr, OpRollback)
	}
	if _, err := h.waitHealthy(ctx, name, back.Current.Checks, back.Started, o.HealthTimeout); err != nil {
		return fmt.Errorf("%w; rolled back, but the previous revision is not healthy either: %v", actErr, err)
	}
	r.Status = StatusRolledBack
	return fmt.Errorf("%w; rolled back to the previous revision (sha256:%s), which is healthy", actErr, prep.App.Current.Digest[:12])
}

// host is a connected host with ukernel installed.
type host struct {
	c      *Conn
	bin    string // the remote ukernel
	copied bool
	sent   int64
}

// goArch maps uname -m to Go's GOARCH.
var goArch = map[string]string{"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}

// setupHost checks the host and makes sure it runs this very ukernel binary.
func setupHost(ctx context.Context, c *Conn, o Options) (*host, error) {
	bin := `"$HOME"/.local/bin/ukernel`
	if o.RemoteBin != "" {
		if rest, ok := strings.CutPrefix(o.RemoteBin, "~/"); ok {
			bin = `"$HOME"/` + ShellQuote(rest)
		} else if strings.HasPrefix(o.RemoteBin, "/") {
			bin = ShellQuote(o.RemoteBin)
		} else {
			return nil, fmt.Errorf("--remote-bin %q: expected an absolute path or one under ~/", o.RemoteBin)
		}
	}
	script := `set -e; B=` + bin + `
printf 'os=%s\narch=%s\nbin=%s\n' "$(uname -s)" "$(uname -m)" "$B"
if [ -f "$B" ] && command -v sha256sum >/dev/null; then printf 'sum=%s\n' "$(sha256sum "$B" | cut -d' ' -f1)"; fi`
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	var out bytes.Buffer
	err := c.RunScript(pctx, nil, &out, script)
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%s: the host did not answer a shell command within %s", c.Target, probeTimeout)
		}
		return nil, err
	}
	facts := map[string]string{}
	for _, l := range strings.Split(out.String(), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			facts[k] = v
		}
	}
	if facts["os"] != "Linux" {
		return nil, fmt.Errorf("%s runs %q: deploy needs a Linux host", c.Target, facts["os"])
	}
	if goArch[facts["arch"]] != runtime.GOARCH {
		return nil, fmt.Errorf("%s is %s; this ukernel is built for %s: deploy from a ukernel built for the host (GOARCH=%s)",
			c.Target, facts["arch"], runtime.GOARCH, goArch[facts["arch"]])
	}
	h := &host{c: c, bin: facts["bin"]}
	if !strings.HasPrefix(h.bin, "/") {
		return nil, fmt.Errorf("%s: the remote ukernel's path %q is not absolute (is HOME set on the host?)", c.Target, h.bin)
	}
	exe, err := os.ReadFile(o.Exe)
	if err != nil {
		return nil, fmt.Errorf("this ukernel binary: %w", err)
	}
	sum := sha256.Sum256(exe)
	want := hex.EncodeToString(sum[:])
	if facts["sum"] == want {
		return h, nil
	}
	o.progress("%s: copying ukernel (%d MiB) to %s", c.Target, len(exe)>>20, h.bin)
	// Written beside the target and renamed once its digest is checked: a running monitor keeps
	// its own (old) file, and a cut transfer leaves no broken ukernel.
	copyScript := `set -e; B=` + ShellQuote(h.bin) + `; mkdir -p "$(dirname "$B")"; T="$B.part.$$"; trap 'rm -f "$T"' EXIT
cat > "$T"; S=$(sha256sum "$T" | cut -d' ' -f1)
if [ "$S" != ` + want + ` ]; then echo "the copied ukernel has digest $S, not ` + want + `" >&2; exit 1; fi
chmod 755 "$T"; mv -f "$T" "$B"; trap - EXIT`
	cctx, cancel := context.WithTimeout(ctx, copyTimeout(int64(len(exe))))
	defer cancel()
	if err := c.RunScript(cctx, bytes.NewReader(exe), io.Discard, copyScript); err != nil {
		return nil, stepError(c.Target, "copy ukernel", err)
	}
	h.copied, h.sent = true, int64(len(exe))
	return h, nil
}

func copyTimeout(size int64) time.Duration {
	return minCopyTime + time.Duration(size/copyBandwidth)*time.Second
}

func stepError(t Target, step string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %s: no answer within its deadline", t, step)
	}
	return fmt.Errorf("%s: %s: %w", t, step, err)
}

// excerpt is the start of a host's unexpected answer for an error, its control sequences
// escaped: a hostile host must not write to the user's terminal.
func excerpt(b []byte) string {
	const max = 200
	if len(b) > max {
		return guestlog.Neutralise(string(b[:max])) + "..."
	}
	return guestlog.Neutralise(string(b))
}

// agent runs one agent operation with req on its stdin and decodes its answer into answer.
func (h *host) agent(ctx context.Context, timeout time.Duration, op string, req, answer any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out bytes.Buffer
	if err := h.c.Run(actx, bytes.NewReader(body), &out, h.bin, AgentCommand, op); err != nil {
		return stepError(h.c.Target, op, err)
	}
	if err := decodeAnswer(out.Bytes(), answer); err != nil {
		return fmt.Errorf("%s: %s: %w", h.c.Target, op, err)
	}
	return nil
}

// checkedAnswer is an agent's answer that checks itself once decoded: what a host (possibly
// hostile) says is sliced, compared and printed on the user's terminal.
type checkedAnswer interface{ check() error }

func decodeAnswer(out []byte, answer any) error {
	if err := json.Unmarshal(out, answer); err != nil {
		return fmt.Errorf("the host's answer is not JSON (%v): %s", err, excerpt(out))
	}
	if c, ok := answer.(checkedAnswer); ok {
		if err := c.check(); err != nil {
			return fmt.Errorf("the host's answer: %w", err)
		}
	}
	return nil
}

// sendImage copies the image to the host, which stores it once its digest matches.
func (h *host) sendImage(ctx context.Context, o Options, digest string) (int64, error) {
	f, err := os.Open(o.Image)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	o.progress("%s: sending the image (%d MiB)", h.c.Target, fi.Size()>>20)
	cctx, cancel := context.WithTimeout(ctx, copyTimeout(fi.Size()))
	defer cancel()
	cr := &countingReader{r: f}
	var out bytes.Buffer
	if err := h.c.Run(cctx, cr, &out, h.bin, AgentCommand, OpPutImage, digest); err != nil {
		return cr.n, stepError(h.c.Target, "send the image", err)
	}
	var put PutImage
	if err := json.Unmarshal(out.Bytes(), &put); err != nil || put.Digest != digest {
		return cr.n, fmt.Errorf("%s: the host did not confirm the image: %s", h.c.Target, excerpt(out.Bytes()))
	}
	return cr.n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Guest is the part of a row of `ukernel ps --json` that deploy reads.
type Guest struct {
	Name     string            `json:"name"`
	Status   string            `json:"status"`
	Started  time.Time         `json:"started"`
	UptimeS  int64             `json:"uptime_s"`
	ExitCode *int              `json:"exit_code,omitempty"`
	Reason   string            `json:"reason,omitempty"`
	Health   map[string]string `json:"health,omitempty"`
	Ports    []string          `json:"ports"`
}

// guest reads the host's `ukernel ps --json -a` row of name (nil when it has none).
func (h *host) guest(ctx context.Context, name string) (*Guest, error) {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	out, err := h.c.Output(pctx, h.bin, "ps", "--json", "-a")
	if err != nil {
		return nil, stepError(h.c.Target, "ukernel ps", err)
	}
	g, err := psRow(out, name)
	if err != nil {
		return nil, fmt.Errorf("%s: ukernel ps --json: %v", h.c.Target, err)
	}
	return g, nil
}

// psRow finds name's row in the host's `ukernel ps --json -a` (nil when it has none), its text
// neutralised: the health wait puts it in messages and results for the user's terminal.
func psRow(out []byte, name string) (*Guest, error) {
	var rows []Guest
	if err := json.Unmarshal(out, &rows); err != nil {
		return nil, err
	}
	for i := range rows {
		if g := &rows[i]; g.Name == name {
			g.Status, g.Reason = guestlog.Neutralise(g.Status), guestlog.Neutralise(g.Reason)
			if g.Health != nil {
				h := make(map[string]string, len(g.Health))
				for k, v := range g.Health {
					h[guestlog.Neutralise(k)] = guestlog.Neutralise(v)
				}
				g.Health = h
			}
			for j, p := range g.Ports {
				g.Ports[j] = guestlog.Neutralise(p)
			}
			return g, nil
		}
	}
	return nil, nil
}

// settle is how long a guest without health checks must run to count as healthy.
const settle = 5 * time.Second

// waitHealthy polls the host's ps until name is healthy: each of its health checks (by service)
// healthy, or, without any, running for settle. A guest that exits, restarts or has an unhealthy
// check fails. Rows of guests started before since (the agent's start of this revision) are
// a previous run's and are not judged.
func (h *host) waitHealthy(ctx context.Context, name string, checks []string, since time.Time, timeout time.Duration) (map[string]string, error) {
	deadline := time.Now().Add(timeout)
	w := &healthWatch{name: name, checks: checks, since: since}
	for {
		g, err := h.guest(ctx, name)
		if err != nil {
			return nil, err
		}
		done, err := w.observe(g)
		if err != nil {
			return g.Health, fmt.Errorf("%s: %w", h.c.Target, err)
		}
		if done {
			return g.Health, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: %s not healthy within %s (%s)", h.c.Target, name, timeout, w.state())
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// healthWatch judges the successive ps rows of a guest just (re)started.
type healthWatch struct {
	name       string
	checks     []string
	since      time.Time
	firstStart time.Time
	last       *Guest // the last row of this start
	stale      *Guest // the last row of a previous run
}

// observe takes one ps row (nil: none) and says whether the guest is healthy, or why it failed.
func (w *healthWatch) observe(g *Guest) (bool, error) {
	if g == nil {
		return false, nil
	}
	if g.Started.Before(w.since) {
		// The previous run's record (exited, or a guest that has not let go of the name yet):
		// the new run replaces it.
		w.stale = g
		return false, nil
	}
	w.last = g
	switch g.Status {
	case "exited":
		why := g.Reason
		if g.ExitCode != nil {
			why = fmt.Sprintf("exit code %d", *g.ExitCode)
		}
		return false, fmt.Errorf("%s exited (%s); see ukernel deploy logs", w.name, why)
	case "running":
		if w.firstStart.IsZero() {
			w.firstStart = g.Started
		} else if !g.Started.Equal(w.firstStart) {
			return false, fmt.Errorf("%s restarted (it ended and its supervisor started it again)", w.name)
		}
		if bad := unhealthy(g.Health); bad != "" {
			return false, fmt.Errorf("%s failed its health check %s", w.name, bad)
		}
		return healthy(g, w.checks), nil
	}
	return false, nil
}

// state describes the last row seen, for a timeout's error.
func (w *healthWatch) state() string {
	g, prefix := w.last, ""
	if g == nil {
		if w.stale == nil {
			return "not listed by ps"
		}
		g, prefix = w.stale, "not started yet; ps shows the previous run: "
	}
	s := prefix + g.Status
	if len(g.Health) > 0 {
		s += fmt.Sprintf(", health %v", g.Health)
	}
	return s
}

func unhealthy(h map[string]string) string {
	for k, v := range h {
		if v == "unhealthy" {
			return k
		}
	}
	return ""
}

// healthy: every check healthy (a check that has not reported yet is not), or, with none,
// running for settle.
func healthy(g *Guest, checks []string) bool {
	if len(checks) == 0 {
		return time.Duration(g.UptimeS)*time.Second >= settle
	}
	for _, c := range checks {
		if g.Health[c] != "healthy" {
			return false
		}
	}
	return true
}
