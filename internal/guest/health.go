package guest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// Health statuses reported in abi.EventHealth.
const (
	HealthStarting  = "starting"
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
)

// HealthState is the state machine of one health check. A service starts out "starting";
// failures within its start period do not count until it has been healthy once; a success makes
// it "healthy"; Retries consecutive failures make it "unhealthy".
type HealthState struct {
	Retries     int
	StartPeriod time.Duration

	status   string
	failures int
	since    time.Time // when the process (re)started
	seenOK   bool
}

// NewHealthState returns the state of check for a process started at now.
func NewHealthState(c abi.HealthCheck, now time.Time) *HealthState {
	r := c.Retries
	if r < 1 {
		r = 1
	}
	return &HealthState{Retries: r, StartPeriod: time.Duration(c.StartPeriod) * time.Second, status: HealthStarting, since: now}
}

// Status is the current status.
func (h *HealthState) Status() string { return h.status }

// Reset starts over for a process restarted at now; it reports whether the status changed.
func (h *HealthState) Reset(now time.Time) bool {
	changed := h.status != HealthStarting
	*h = HealthState{Retries: h.Retries, StartPeriod: h.StartPeriod, status: HealthStarting, since: now}
	return changed
}

// Observe records one probe result at now; it returns the status and whether it changed.
func (h *HealthState) Observe(ok bool, now time.Time) (string, bool) {
	prev := h.status
	switch {
	case ok:
		h.failures, h.seenOK, h.status = 0, true, HealthHealthy
	case !h.seenOK && now.Sub(h.since) < h.StartPeriod:
		// Still starting: a slow start is not a failure.
	default:
		h.failures++
		if h.failures >= h.Retries {
			h.status = HealthUnhealthy
		}
	}
	return h.status, h.status != prev
}

// probeHTTP GETs url within timeout: a 2xx or 3xx answer is healthy. Redirects are not followed.
// It speaks just enough HTTP/1.0 for a status line instead of using net/http, which would more
// than double the size of the init binary (net/http brings TLS, HTTP/2 and proxies with it).
// A host name is looked up first in the workload's /etc/hosts under root: init's own root, the
// initramfs, has no /etc/hosts (nor resolv.conf), so Go's resolver alone would ask a DNS server
// on the guest's loopback, and `localhost` would never answer.
func probeHTTP(ctx context.Context, rawURL, root string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return false
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	addrs := hostsLookup(filepath.Join(root, "etc", "hosts"), u.Hostname())
	if len(addrs) == 0 {
		addrs = []string{u.Hostname()} // an address, or a name for the resolver
	}
	var d net.Dialer
	var conn net.Conn
	for _, a := range addrs {
		if conn, err = d.DialContext(ctx, "tcp", net.JoinHostPort(a, port)); err == nil {
			break
		}
	}
	if err != nil {
		return false
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	path := u.RequestURI()
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: ukernel-init\r\nConnection: close\r\n\r\n", path, u.Host); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return false
	}
	// "HTTP/1.1 200 OK"
	fields := strings.Fields(line)
	if len(fields) < 2 || !strings.HasPrefix(fields[0], "HTTP/") {
		return false
	}
	code, err := strconv.Atoi(fields[1])
	return err == nil && code >= 200 && code < 400
}

// hostsLookup returns the addresses a hosts file gives name, in the file's order; none for an
// address or a name it does not list. Names match regardless of case, as in Go's resolver.
func hostsLookup(path, name string) []string {
	if name == "" || net.ParseIP(name) != nil {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var addrs []string
	for _, line := range strings.Split(string(data), "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) < 2 || net.ParseIP(f[0]) == nil {
			continue
		}
		for _, n := range f[1:] {
			if strings.EqualFold(n, name) {
				addrs = append(addrs, f[0])
				break
			}
		}
	}
	return addrs
}

// probeCmd runs spec (a health command in the root, as the service's user) and is healthy when
// it exits 0 within timeout; on timeout its process group is killed.
func probeCmd(ctx context.Context, sup *Supervisor, spec Spec, timeout time.Duration) bool {
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return false
	}
	defer devnull.Close()
	spec.Stdout, spec.Stderr = devnull, devnull
	p, err := sup.Start(spec)
	if err != nil {
		return false
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.Done():
		return p.Code() == 0
	case <-t.C:
	case <-ctx.Done():
	}
	_ = syscall.Kill(-p.PID, syscall.SIGKILL)
	select {
	case <-p.Done():
	case <-time.After(2 * time.Second):
	}
	return false
}
