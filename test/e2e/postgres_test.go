package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// psql runs the host's psql against the guest's published port with a deadline.
func psql(port int, sql string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "psql", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres",
		"-tA", "-c", sql).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestPostgresPreset: `init --lang python --template postgres` (a Python app with PostgreSQL
// as its db service, the postgres preset's script run as a service rather than as the entry)
// answers psql through --publish, keeps its database on the data volume across stop and a new
// run, and reports the health of both the app and the database to ps. The shell preset, where
// the same script is the entry, differs only in the config, which internal/scaffold checks.
func TestPostgresPreset(t *testing.T) {
	skipShort(t)
	if _, err := exec.LookPath("psql"); err != nil {
		t.Skip("psql not found: install postgresql-client (scripts/deps.sh)")
	}
	dir := newProject(t, "pg-e2e", "--lang", "python", "--template", "postgres")
	port := freePort(t)
	publish := fmt.Sprintf("%d:5432", port)
	// initdb under TCG took about 15 s here; the start period of the health check is 120 s.
	const ready = 4 * time.Minute

	start := time.Now()
	mustUK(t, dir, 15*time.Minute, "run", "-d", "--accel", "tcg", "--publish", publish)
	defer noQEMULeft(t, dir)
	defer uk(t, dir, time.Minute, "stop", "pg-e2e")
	pollUntil(t, ready, "psql answer on port "+strconv.Itoa(port), func() bool {
		out, err := psql(port, "select 1")
		return err == nil && out == "1"
	})
	t.Logf("first run: psql answered %v after run -d", time.Since(start).Round(time.Second))
	if out, err := psql(port, "create table kept(v text); insert into kept values ('survives')"); err != nil {
		t.Fatalf("psql: %v: %s", err, out)
	}
	if fi, err := os.Stat(filepath.Join(dir, ".ukernel", "data.img")); err != nil || fi.Size() != 512<<20 {
		t.Fatalf("data volume: %v %v", fi, err)
	}
	pollUntil(t, 2*time.Minute, "ps --json health main=healthy db=healthy", func() bool {
		r := uk(t, dir, time.Minute, "--json", "ps")
		var rows []struct {
			Name   string            `json:"name"`
			Health map[string]string `json:"health"`
		}
		return json.Unmarshal([]byte(r.stdout), &rows) == nil && len(rows) > 0 && func() bool {
			for _, row := range rows {
				if row.Name == "pg-e2e" && row.Health["main"] == "healthy" && row.Health["db"] == "healthy" {
					return true
				}
			}
			return false
		}()
	})
	mustUK(t, dir, 2*time.Minute, "stop", "pg-e2e")

	// A rebuild does not touch the volume either: the image is packed again from scratch.
	os.RemoveAll(filepath.Join(dir, "dist"))
	mustUK(t, dir, 15*time.Minute, "run", "-d", "--accel", "tcg", "--publish", publish)
	pollUntil(t, ready, "psql answer after a new run", func() bool {
		_, err := psql(port, "select 1")
		return err == nil
	})
	if out, err := psql(port, "select v from kept"); err != nil || out != "survives" {
		t.Fatalf("row of the first run: %q, %v", out, err)
	}
	mustUK(t, dir, 2*time.Minute, "stop", "pg-e2e")
}
