package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func tmpFiles(t *testing.T, c *Cache) []string {
	entries, err := os.ReadDir(filepath.Join(c.Dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestPutVerifyCorrupt(t *testing.T) {
	c, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("hello")
	s, err := c.PutBytes(data)
	if err != nil || s != sum(data) {
		t.Fatal(s, err)
	}
	if _, err := c.Put(bytes.NewReader(data), strings.Repeat("0", 64)); err == nil {
		t.Fatal("wrong digest accepted")
	}
	p, err := c.Path(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("hellO"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Path(s); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corrupt blob: %v", err)
	}
	if c.Has(s) {
		t.Fatal("corrupt blob kept")
	}
	if len(tmpFiles(t, c)) != 0 {
		t.Fatal("temporary files left")
	}
}

func TestFetchInterruptedLeavesNothing(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 1<<20)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Length", "1048576")
		w.Write(body[:1000])
		w.(http.Flusher).Flush()
		// Hang up mid-body, as a dropped connection would.
		hj, _ := w.(http.Hijacker)
		conn, _, _ := hj.Hijack()
		conn.Close()
	}))
	defer srv.Close()
	c, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &Fetcher{Attempts: 3, Backoff: 10 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = f.Fetch(ctx, c, srv.URL+"/x.deb", sum(body), "x", int64(len(body)))
	if err == nil {
		t.Fatal("truncated download accepted")
	}
	if hits.Load() != 3 {
		t.Errorf("%d attempts, want 3 (retries)", hits.Load())
	}
	if c.Has(sum(body)) || len(tmpFiles(t, c)) != 0 {
		t.Fatalf("partial file left: %v", tmpFiles(t, c))
	}
}

func TestFetchCancelledLeavesNothing(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "2000")
		w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c, _ := OpenDir(t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := (&Fetcher{}).Fetch(ctx, c, srv.URL+"/y", strings.Repeat("a", 64), "y", 2000)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	if len(tmpFiles(t, c)) != 0 {
		t.Fatalf("partial file left: %v", tmpFiles(t, c))
	}
}

// TestFetchStalledServerTimesOut: a server that stops sending (after its headers and part of
// the body, or before answering at all) fails the attempt once nothing has moved for the stall
// bound, and the fetch is retried, instead of waiting forever under a context without a
// deadline (env lock, build: the command's own context has none).
func TestFetchStalledServerTimesOut(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/body" {
			w.Header().Set("Content-Length", "2000")
			w.Write(make([]byte, 1000))
			w.(http.Flusher).Flush()
		}
		select { // "/headers" never answers
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	c, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/body", "/headers"} {
		hits.Store(0)
		f := &Fetcher{Attempts: 2, Backoff: 10 * time.Millisecond, Stall: 300 * time.Millisecond}
		// Only a safety net: the stall bound must end the fetch long before.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		start := time.Now()
		_, err := f.Fetch(ctx, c, srv.URL+path, strings.Repeat("a", 64), "y", 2000)
		cancel()
		if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "stalled") {
			t.Errorf("%s: got %v after %s, want a stall error within about 1s", path, err, time.Since(start).Round(time.Millisecond))
		}
		if hits.Load() != 2 {
			t.Errorf("%s: %d attempts, want 2 (a stall is retried)", path, hits.Load())
		}
		if len(tmpFiles(t, c)) != 0 {
			t.Fatalf("%s: partial file left: %v", path, tmpFiles(t, c))
		}
	}
	// Get (an InRelease) is bounded the same way.
	f := &Fetcher{Attempts: 1, Stall: 300 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := f.Get(ctx, srv.URL+"/body"); err == nil || !strings.Contains(err.Error(), "stalled") {
		t.Errorf("Get: got %v, want a stall error", err)
	}
}

func TestFetchNotFoundAndProgress(t *testing.T) {
	body := []byte("package bytes")
	big := bytes.Repeat([]byte("x"), announceSize)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/gone":
			http.NotFound(w, r)
		case "/big":
			w.Write(big)
		default:
			w.Write(body)
		}
	}))
	defer srv.Close()
	c, _ := OpenDir(t.TempDir())
	var progress bytes.Buffer
	f := &Fetcher{Progress: &progress}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := f.Fetch(ctx, c, srv.URL+"/gone", sum(body), "gone", 0); !errors.Is(err, ErrNotOnServer) {
		t.Fatalf("404: %v", err)
	}
	p, err := f.Fetch(ctx, c, srv.URL+"/ok", sum(body), "pkg 1.0", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, body) {
		t.Fatal("content")
	}
	// A small download says only that it ended; a large one also that it started.
	if strings.Contains(progress.String(), "Downloading pkg 1.0") || !strings.Contains(progress.String(), "Downloaded pkg 1.0") {
		t.Errorf("progress: %q", progress.String())
	}
	progress.Reset()
	if _, err := f.Fetch(ctx, c, srv.URL+"/big", sum(big), "big 1.0", int64(len(big))); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(progress.String(), "Downloading big 1.0 (4.2 MB)") || !strings.Contains(progress.String(), "Downloaded big 1.0") {
		t.Errorf("progress of a large download: %q", progress.String())
	}
	// A quick download keeps its milliseconds: never "in 0.0s".
	if !regexp.MustCompile(`Downloaded big 1\.0 \(4\.2 MB in \d+ms\)`).MatchString(progress.String()) {
		t.Errorf("a quick download's time: %q", progress.String())
	}

	// On a terminal the bar is cleared when the download ends, never left at its last redraw.
	var term bytes.Buffer
	tf := &Fetcher{Progress: &term, TTY: true}
	slow := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(big)))
		for i := 0; i < len(big); i += len(big) / 8 {
			w.Write(big[i:min(i+len(big)/8, len(big))])
			w.(http.Flusher).Flush()
			time.Sleep(60 * time.Millisecond)
		}
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go slow.Serve(l)
	defer slow.Close()
	c2, _ := OpenDir(t.TempDir())
	if _, err := tf.Fetch(ctx, c2, "http://"+l.Addr().String()+"/big", sum(big), "big 1.0", int64(len(big))); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(term.String(), "big 1.0 [") {
		t.Errorf("no bar was drawn on the terminal: %q", term.String())
	}
	if out := term.String(); !strings.HasSuffix(out, "\r\x1b[K") || strings.Contains(out, "\n") {
		t.Errorf("the bar was not erased when the download ended: %q", out)
	}
}

// Two processes' worth of concurrent writers of the same blob: every reader sees a whole blob.
func TestConcurrentPut(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("concurrent"), 100000)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := OpenDir(dir)
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := c.Put(bytes.NewReader(data), sum(data)); err != nil {
				t.Error(err)
			}
			if _, err := c.Path(sum(data)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

func TestPrune(t *testing.T) {
	c, _ := OpenDir(t.TempDir())
	c.PutBytes([]byte("a"))
	c.WriteState("x/y", []byte("b"))
	res, err := c.Prune(0)
	if err != nil || res.Files != 2 {
		t.Fatalf("%+v %v", res, err)
	}
	if sz, _ := c.Size(); sz.Files != 0 {
		t.Fatal("blobs left")
	}
}

// writeAged writes the files under c.Dir and then dates each path in aged (file or directory)
// age ago, as if last used then.
func writeAged(t *testing.T, c *Cache, files []string, age time.Duration, aged ...string) {
	t.Helper()
	for _, f := range files {
		p := filepath.Join(c.Dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	then := time.Now().Add(-age)
	for _, a := range aged {
		if err := os.Chtimes(filepath.Join(c.Dir, a), then, then); err != nil {
			t.Fatal(err)
		}
	}
}

func exists(c *Cache, p string) bool {
	_, err := os.Stat(filepath.Join(c.Dir, p))
	return err == nil
}

// The derived directories (one kernel tree, init or boot pair per key, growing with every packed
// image) are pruned by the age of their entries, and state by the age of its files.
func TestPruneDerivedAndStateByAge(t *testing.T) {
	c, _ := OpenDir(t.TempDir())
	const day = 24 * time.Hour
	writeAged(t, c, []string{
		"kernels/old/boot/vmlinuz-1", "kernels/old/lib/modules/1/modules.dep",
		"init/old/ukernel-init", "boot/old/vmlinuz", "boot/old/initrd.cpio",
		"vmlinux/old/vmlinux", "verified/old.json", "kvm-probe/old.json",
		"state/inrelease/old", "state/inrelease/used",
	}, 40*day, "kernels/old", "init/old", "boot/old", "vmlinux/old", "verified/old.json",
		"kvm-probe/old.json", "state/inrelease/old", "state/inrelease/used")
	writeAged(t, c, []string{"kernels/new/boot/vmlinuz-1", "init/new/ukernel-init", "boot/new/vmlinuz", "state/inrelease/new"}, 0)
	// Reading state is using it: an offline lock that read it yesterday still needs it.
	if _, err := c.ReadState("inrelease/used"); err != nil {
		t.Fatal(err)
	}

	res, err := c.Prune(30 * day)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"kernels/old", "init/old", "boot/old", "vmlinux/old", "verified/old.json", "kvm-probe/old.json", "state/inrelease/old"} {
		if exists(c, p) {
			t.Errorf("%s not used for 40 days, kept by --older-than 720h", p)
		}
	}
	for _, p := range []string{"kernels/new/boot/vmlinuz-1", "init/new/ukernel-init", "boot/new/vmlinuz", "state/inrelease/new", "state/inrelease/used"} {
		if !exists(c, p) {
			t.Errorf("%s used recently, removed by --older-than 720h", p)
		}
	}
	if res.Files != 9 || res.Bytes != 36 {
		t.Errorf("pruned %+v, want 9 files of 4 bytes", res)
	}

	if _, err := c.Prune(0); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"kernels/new", "init/new", "boot/new", "state/inrelease/new"} {
		if exists(c, p) {
			t.Errorf("%s kept by a prune of everything", p)
		}
	}
}
