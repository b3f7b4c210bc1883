package testenv

import (
	"net/http"
	"os/exec"
	"testing"
)

func TestStartRegistry(t *testing.T) {
	if _, err := exec.LookPath("docker-registry"); err != nil {
		t.Skip("docker-registry not installed (scripts/deps.sh --tests installs it)")
	}
	host, stop, err := StartRegistry(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + host + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v2/: %s", resp.Status)
	}
	stop()
	if _, err := http.Get("http://" + host + "/v2/"); err == nil {
		t.Error("the registry still answers after stop")
	}
}
