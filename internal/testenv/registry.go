package testenv

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// StartRegistry starts Debian's docker-registry (a real OCI distribution registry, plain HTTP)
// on a free 127.0.0.1 port with its storage in dir/storage, and returns its host:port and a
// function that stops it. Benchmarks use it; test/e2e's registry adds TLS and auth.
func StartRegistry(dir string) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	host := l.Addr().String()
	l.Close()
	conf := filepath.Join(dir, "registry.yml")
	y := fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(dir, "storage"), host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	if err := os.WriteFile(conf, []byte(y), 0o644); err != nil {
		return "", nil, err
	}
	cmd := exec.Command("docker-registry", "serve", conf)
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("docker-registry (scripts/deps.sh --tests installs it): %w", err)
	}
	stop := func() { cmd.Process.Kill(); cmd.Wait() }
	c := &http.Client{Timeout: 2 * time.Second}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := c.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			return host, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("the registry on %s did not answer within 30s: %w", host, err)
		}
	}
}
