package guest

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestProbeHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(200)
		case "/moved":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "/slow":
			time.Sleep(2 * time.Second)
		default:
			w.WriteHeader(500)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	root := t.TempDir()
	for path, want := range map[string]bool{"/ok": true, "/moved?x=1": true, "/broken": false} {
		if got := probeHTTP(ctx, srv.URL+path, root, time.Second); got != want {
			t.Errorf("%s: healthy=%v, want %v", path, got, want)
		}
	}
	start := time.Now()
	if probeHTTP(ctx, srv.URL+"/slow", root, 200*time.Millisecond) || time.Since(start) > time.Second {
		t.Errorf("a slow answer must fail within the timeout (took %v)", time.Since(start))
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	if probeHTTP(ctx, "http://"+addr+"/", root, time.Second) {
		t.Error("a refused connection is healthy")
	}
	if probeHTTP(ctx, "ftp://example.invalid/", root, time.Second) {
		t.Error("a non-http URL is healthy")
	}

	// A name resolves through the workload's /etc/hosts (init's own root has none): the first
	// address that answers, in the file's order, whatever the name's case.
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	hosts := "# comment\n127.0.0.1\tlocalhost\n192.0.2.1 other.invalid # not this one\n127.0.0.9 app.invalid\n127.0.0.1 App.Invalid\n"
	if err := os.WriteFile(filepath.Join(root, "etc", "hosts"), []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
	if !probeHTTP(ctx, "http://app.invalid:"+port+"/ok", root, 2*time.Second) {
		t.Error("a name from the workload's /etc/hosts is not healthy")
	}
	if !probeHTTP(ctx, "http://localhost:"+port+"/ok", root, 2*time.Second) {
		t.Error("localhost from the workload's /etc/hosts is not healthy")
	}
	if probeHTTP(ctx, "http://nowhere.invalid:"+port+"/ok", root, 2*time.Second) {
		t.Error("a name in no hosts file is healthy")
	}
}

func TestHostsLookup(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(p, []byte("127.0.0.1 localhost\n::1 localhost ip6-localhost\nbad line\n10.0.0.1 a b # c\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]string{
		"localhost": {"127.0.0.1", "::1"}, "LOCALHOST": {"127.0.0.1", "::1"}, "b": {"10.0.0.1"},
		"c": nil, "line": nil, "127.0.0.1": nil, "": nil,
	} {
		if got := hostsLookup(p, name); !slices.Equal(got, want) {
			t.Errorf("hostsLookup(%q) = %q, want %q", name, got, want)
		}
	}
	if got := hostsLookup(p+".missing", "localhost"); got != nil {
		t.Errorf("no hosts file: %q", got)
	}
}
