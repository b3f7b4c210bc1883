package guestlog

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFollow(t *testing.T) {
	p := filepath.Join(t.TempDir(), "console.log")
	done := make(chan struct{})
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- Follow(ctx, p, &out, done) }()
	time.Sleep(50 * time.Millisecond)
	os.WriteFile(p, []byte("one\n"), 0o644)
	time.Sleep(100 * time.Millisecond)
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("two\n")
	f.Close()
	close(done)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if out.String() != "one\ntwo\n" {
		t.Errorf("followed %q", out.String())
	}
}

func TestWatchWrites(t *testing.T) {
	p := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c, stop, err := watchWrites(p)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	select {
	case <-c:
		t.Fatal("a signal before any write")
	case <-time.After(50 * time.Millisecond):
	}
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("line\n")
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatal("no signal after a write")
	}
}

// TestFollowAcrossRotation: a follow of a log that rotates while it is read gets every line,
// in order: the old file to its end, then the new one from its start.
func TestFollowAcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "output.jsonl")
	w, err := OpenRotating(path, Limits{MaxSize: 2000, MaxFiles: 2})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	got := &lockedBuffer{}
	followed := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() { followed <- Follow(ctx, path, got, done) }()
	var want strings.Builder
	// Batches of less than a file: the follower, waited for after each, sees every rotation
	// (with two files kept, a reader that falls two rotations behind loses the removed one).
	for i := 0; i < 3000; i++ {
		line := fmt.Sprintf("line %d\n", i)
		want.WriteString(line)
		w.Write([]byte(line))
		if i%150 == 149 {
			pollFor(t, 10*time.Second, func() bool { return got.Len() >= want.Len() })
		}
	}
	w.Close()
	close(done)
	if err := <-followed; err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Errorf("followed %d bytes, want %d; first difference near %q", got.Len(), want.Len(), firstDiff(got.String(), want.String()))
	}
}

func firstDiff(a, b string) string {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[max(0, i-20):min(len(a), i+20)]
		}
	}
	return ""
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func pollFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
	}
}
