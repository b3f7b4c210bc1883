package perf

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func isReady(r *readiness) bool {
	select {
	case <-r.Ready():
		return true
	default:
		return false
	}
}

// TestReadinessFirstLine: the workload's first whole line is its sign of life.
func TestReadinessFirstLine(t *testing.T) {
	r := newReadiness(filepath.Join(t.TempDir(), "events.jsonl"))
	r.Write([]byte("partial, no newline yet"))
	if isReady(r) {
		t.Fatal("ready before a whole line")
	}
	before := time.Now()
	r.Write([]byte(" tick 1\nand more"))
	if !isReady(r) {
		t.Fatal("not ready after the first line")
	}
	if at, why := r.result(); why != ReadyLine || at.Before(before) {
		t.Errorf("ready %q at %v, want %q after %v", why, at, ReadyLine, before)
	}
	r.Write([]byte("tick 2\n")) // later lines change nothing
}

// TestReadinessHealthy: a service's first healthy check is a sign of life (a server that
// prints nothing), seen by following the events as the guest writes them.
func TestReadinessHealthy(t *testing.T) {
	events := filepath.Join(t.TempDir(), "events.jsonl")
	appendFile(t, events, `{"type":"service.start","t_ns":1,"name":"db","pid":9}`+"\n")
	r := newReadiness(events)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	vmDone := make(chan struct{})
	go r.watchEvents(ctx, vmDone)
	appendFile(t, events, `{"type":"health","t_ns":2,"name":"db","status":"unhealthy"}`+"\n")
	time.Sleep(100 * time.Millisecond)
	if isReady(r) {
		t.Fatal("ready on an unhealthy check")
	}
	appendFile(t, events, `{"type":"health","t_ns":3,"name":"db",`)
	appendFile(t, events, `"status":"healthy"}`+"\n")
	select {
	case <-r.Ready():
	case <-ctx.Done():
		t.Fatal("a healthy check was not noticed")
	}
	if _, why := r.result(); why != ReadyHealthy {
		t.Errorf("ready %q, want %q", why, ReadyHealthy)
	}
	close(vmDone)
}
