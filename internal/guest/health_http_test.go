package guest

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
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
	for path, want := range map[string]bool{"/ok": true, "/moved?x=1": true, "/broken": false} {
		if got := probeHTTP(ctx, srv.URL+path, time.Second); got != want {
			t.Errorf("%s: healthy=%v, want %v", path, got, want)
		}
	}
	start := time.Now()
	if probeHTTP(ctx, srv.URL+"/slow", 200*time.Millisecond) || time.Since(start) > time.Second {
		t.Errorf("a slow answer must fail within the timeout (took %v)", time.Since(start))
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	if probeHTTP(ctx, "http://"+addr+"/", time.Second) {
		t.Error("a refused connection is healthy")
	}
	if probeHTTP(ctx, "ftp://example.invalid/", time.Second) {
		t.Error("a non-http URL is healthy")
	}
}
