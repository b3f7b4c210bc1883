package deploy

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/guestlog"
)

// TestHealthy: a guest whose checks have not reported yet is not healthy, however long it has
// run (a guest's health map is empty until its first check reports).
func TestHealthy(t *testing.T) {
	long := int64(settle / time.Second * 10)
	for _, c := range []struct {
		g      Guest
		checks []string
		want   bool
	}{
		{Guest{UptimeS: long}, []string{"main"}, false},
		{Guest{UptimeS: long, Health: map[string]string{"main": "starting"}}, []string{"main"}, false},
		{Guest{UptimeS: 0, Health: map[string]string{"main": "healthy"}}, []string{"main"}, true},
		{Guest{Health: map[string]string{"main": "healthy"}}, []string{"main", "db"}, false},
		{Guest{Health: map[string]string{"main": "healthy", "db": "healthy"}}, []string{"main", "db"}, true},
		{Guest{UptimeS: 1}, nil, false},
		{Guest{UptimeS: long}, nil, true},
	} {
		if got := healthy(&c.g, c.checks); got != c.want {
			t.Errorf("healthy(%+v, %v) = %v", c.g, c.checks, got)
		}
	}
}

// A hostile host's answer reaches the user's terminal only with its control sequences escaped,
// and only its start.
func TestExcerptNeutralises(t *testing.T) {
	if got := excerpt([]byte("\x1b]0;owned\x07\x1b[2Jok")); got != `\x1b]0;owned\x07\x1b[2Jok` {
		t.Errorf("excerpt = %q", got)
	}
	if got := excerpt([]byte(strings.Repeat("a", 500))); got != strings.Repeat("a", 200)+"..." {
		t.Errorf("long answer: %d bytes", len(got))
	}
}

// TestHealthWatch: the rows of the run that the agent's start replaced are not judged. Under
// systemd `systemctl restart` returns before the new guest takes the name, so ps first shows
// the previous run's record: it exited when it was stopped, and a running previous run's
// health is not the new one's. Then the new run's rows decide.
func TestHealthWatch(t *testing.T) {
	since := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	code0 := 0
	before, after, later := since.Add(-time.Minute), since.Add(2*time.Second), since.Add(40*time.Second)
	type step struct {
		g       *Guest
		done    bool
		errWant string
	}
	for _, c := range []struct {
		name  string
		steps []step
		state string
	}{
		{"previous run's record, then the new run", []step{
			{g: &Guest{Status: "exited", Started: before, ExitCode: &code0}},
			{g: &Guest{Status: "running", Started: before, UptimeS: 600, Health: map[string]string{"main": "starting"}}},
			{g: nil},
			{g: &Guest{Status: "starting", Started: after}},
			{g: &Guest{Status: "running", Started: after, Health: map[string]string{"main": "starting"}}},
			{g: &Guest{Status: "running", Started: after, Health: map[string]string{"main": "healthy"}}, done: true},
		}, ""},
		{"the new run exits", []step{
			{g: &Guest{Status: "running", Started: after}},
			{g: &Guest{Status: "exited", Started: after, ExitCode: &code0}, errWant: "web exited (exit code 0)"},
		}, ""},
		{"the new run restarts", []step{
			{g: &Guest{Status: "running", Started: after}},
			{g: &Guest{Status: "running", Started: later}, errWant: "web restarted"},
		}, ""},
		{"unhealthy", []step{
			{g: &Guest{Status: "running", Started: after, Health: map[string]string{"main": "unhealthy"}}, errWant: "failed its health check main"},
		}, ""},
		{"never replaced", []step{
			{g: &Guest{Status: "running", Started: before, Health: map[string]string{"main": "starting"}}},
		}, "not started yet; ps shows the previous run: running, health map[main:starting]"},
	} {
		w := &healthWatch{name: "web", checks: []string{"main"}, since: since}
		for i, s := range c.steps {
			done, err := w.observe(s.g)
			if s.errWant == "" && err != nil || s.errWant != "" && (err == nil || !strings.Contains(err.Error(), s.errWant)) || done != s.done {
				t.Errorf("%s, row %d (%+v): done %v, err %v; want done %v, err %q", c.name, i, s.g, done, err, s.done, s.errWant)
			}
		}
		if c.state != "" && w.state() != c.state {
			t.Errorf("%s: state %q; want %q", c.name, w.state(), c.state)
		}
	}
}

// FuzzHostOutput: what a host (possibly hostile) writes reaches the user's terminal only
// neutralised: ssh's log when the connection fails (the host key it names among it), the
// host's ps row as the health wait judges and describes it.
func FuzzHostOutput(f *testing.F) {
	f.Add("debug1: Server host key: ssh-ed25519 SHA256:abc\nHost key verification failed.\n", []byte(`[{"name":"web","status":"running","started":"2026-12-03T10:00:00Z","uptime_s":9,"health":{"http":"healthy"}}]`))
	f.Add("debug1: Server host key: \x1b[2J SHA256:\x1b]0;x\x07\n@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @\n", []byte(`[{"name":"web","status":"exited","reason":"\u001b[2Jkilled","started":"2026-12-03T10:00:00Z"}]`))
	f.Add("ssh: connect to host h port 22: Connection refused\r\n\x9b31m", []byte(`[{"name":"web","status":"running","started":"2026-12-03T10:00:00Z","health":{"\u001b]0;t\u0007":"unhealthy"}}]`))
	f.Add("", []byte(`[{"name":"web","status":"\u009b2J","started":"2026-12-03T10:00:00Z","health":{"a":"\u001b[1m"}}]`))
	f.Fuzz(func(t *testing.T, sshLog string, ps []byte) {
		neutral := func(what, s string) {
			if guestlog.Neutralise(s) != s {
				t.Fatalf("%s carries a control sequence: %q", what, s)
			}
		}
		c := &Conn{Target: Target{Host: "h"}, stderr: &capped{max: 64 << 10}}
		c.stderr.Write([]byte(sshLog))
		neutral("ssh's failure", c.dialError(errors.New("exit status 255")).Error())
		neutral("an answer's excerpt", excerpt(ps))
		g, err := psRow(ps, "web")
		if err != nil {
			neutral("a ps answer's error", err.Error())
			return
		}
		w := &healthWatch{name: "web", checks: []string{"http"}}
		for range 2 {
			if _, err := w.observe(g); err != nil {
				neutral("the health wait's error", err.Error())
			}
		}
		neutral("the health wait's state", w.state())
	})
}

// FuzzAgentAnswer: a host's answer to prepare, status, stop, activate or rollback is used only
// once checked: every revision's digest a SHA-256 (deploy and `deploy status` print its first
// 12 characters), every string the user may see neutralised.
func FuzzAgentAnswer(f *testing.F) {
	d := strings.Repeat("ab", 32)
	f.Add([]byte(`{"name":"web","supervisor":"systemd","current":{"id":"r2","digest":"` + d + `","publish":["8080:80"],"health_checks":["http"]},"previous":{"id":"r1","digest":"` + d + `"},"dir":"/st/apps/web"}`))
	f.Add([]byte(`{"has_image":true,"supervisor":"monitor","app":{"name":"web","current":{"id":"r1","digest":"abc"}}}`))
	f.Add([]byte(`{"name":"\u001b]0;x\u0007","supervisor":"\u009b2J","current":{"id":"\u001b[2J","digest":"` + d + `","signed_by":["\u001b[1malice"]}}`))
	f.Add([]byte(`{"name":"web"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		neutral := func(v any) {
			if s := fmt.Sprintf("%+v", v); guestlog.Neutralise(s) != s {
				t.Fatalf("answer %q: %s carries a control sequence", b, s)
			}
		}
		var app App
		if err := decodeAnswer(b, &app); err != nil {
			neutral(err.Error())
		} else {
			for _, r := range []*Revision{app.Current, app.Previous} {
				if r != nil {
					if validDigest(r.Digest) != nil {
						t.Fatalf("answer %q: accepted digest %q", b, r.Digest)
					}
					neutral(*r)
				}
			}
			app.Current, app.Previous = nil, nil
			neutral(app)
		}
		var prep Prepared
		if err := decodeAnswer(b, &prep); err != nil {
			neutral(err.Error())
		} else if prep.App != nil {
			if c := prep.App.Current; c != nil && validDigest(c.Digest) != nil {
				t.Fatalf("answer %q: accepted digest %q", b, c.Digest)
			}
			neutral(prep.Supervisor)
		}
	})
}
