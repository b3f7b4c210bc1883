package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pollUntil polls cond every interval until it holds or timeout passes; it fails with what.
func pollUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("no %s within %v", what, timeout)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

type event struct {
	Type   string `json:"type"`
	Name   string `json:"name"`
	Status string `json:"status"`
}

// latestEvents reads the events of the project's latest run.
func latestEvents(t *testing.T, dir string) []event {
	t.Helper()
	link, err := os.Readlink(filepath.Join(dir, "logs", "console.log"))
	if err != nil {
		return nil
	}
	f, err := os.Open(filepath.Join(dir, "logs", filepath.Dir(link), "events.jsonl"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var evs []event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			evs = append(evs, e)
		}
	}
	return evs
}

func countEvents(evs []event, typ, name, status string) int {
	n := 0
	for _, e := range evs {
		if e.Type == typ && e.Name == name && (status == "" || e.Status == status) {
			n++
		}
	}
	return n
}

const servicesTOML = `[project]
name = 'svc-e2e'
language = 'shell'
# The entry runs as app, as reader does: each reads only its own secret.
entry = 'src/main.sh'
secrets = ['entry_key']

[env]
base = 'debian-12'

[run]
memory_mb = 256
publish = ['%d:8080']

# A Debian service package (busybox, added with env add --system) as a declared service.
[services.web]
command = 'busybox httpd -f -p 8080 -h /app/www'
restart = 'on-failure'

[services.crasher]
command = '/bin/sh /app/crash.sh'
restart = 'on-failure'

[services.sick]
command = '/bin/sh /app/sick.sh'
restart = 'always'

[services.reader]
command = '/bin/sh /app/reader.sh'
secrets = ['token', 'shared']

# shared is declared by processes of two users: both read it, nobody else.
[services.keeper]
command = '/bin/sh /app/keeper.sh'
user = 'daemon'
secrets = ['shared']

[services.nosy]
command = '/bin/sh /app/nosy.sh'
user = 'nobody'

[health.web]
http = 'http://localhost:8080/'   # a name: looked up in the image's /etc/hosts
interval_s = 1
retries = 2

[health.sick]
cmd = '/bin/sh -c "exit 1"'
interval_s = 1
timeout_s = 2
retries = 2
`

// TestServices: services run as their users with their restart policies and health checks, a
// Debian package's server answers from the host, and a secret reaches only the processes that
// declare it, also when another process runs as the same user.
func TestServices(t *testing.T) {
	skipShort(t)
	dir := newProject(t, "svc-e2e", "--lang", "shell", "--template", "worker")
	port := freePort(t)
	writeFile(t, filepath.Join(dir, "ukernel.toml"), fmt.Sprintf(servicesTOML, port))
	if err := os.MkdirAll(filepath.Join(dir, "src", "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "src", "www", "index.html"), "hello from busybox httpd\n")
	writeFile(t, filepath.Join(dir, "src", "crash.sh"), "echo crasher up\nsleep 1\nexit 3\n")
	writeFile(t, filepath.Join(dir, "src", "sick.sh"), "echo sick up\nexec sleep 100000\n")
	writeFile(t, filepath.Join(dir, "src", "reader.sh"), `echo "token sha256 $(busybox sha256sum /run/secrets/token | busybox cut -d' ' -f1)"
echo "token file $(busybox stat -c '%a %U' /run/secrets/token) read by uid $(busybox id -u)"
echo "reader read shared $(cat /run/secrets/shared)"
if cat /run/secrets/entry_key >/dev/null 2>&1; then echo "reader read entry_key"; else echo "reader was denied entry_key"; fi
echo $$ >/tmp/reader.pid.tmp && mv /tmp/reader.pid.tmp /tmp/reader.pid
exec sleep 100000
`)
	// The entry, also app, tries the reader's token directly, through the reader's root in
	// /proc, and through the reader's memory.
	writeFile(t, filepath.Join(dir, "src", "main.sh"), `echo "[reader] forged by the entry"
echo "entry read entry_key $(cat /run/secrets/entry_key) as uid $(busybox id -u)"
if cat /run/secrets/token >/dev/null 2>&1; then echo "entry read the token"; else echo "entry was denied the token"; fi
i=0
while [ ! -s /tmp/reader.pid ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
pid=$(cat /tmp/reader.pid)
echo "entry found reader pid $pid uid $(busybox stat -c %u /proc/$pid)"
if cat /proc/$pid/root/run/secrets/token >/dev/null 2>&1; then echo "entry read the token through /proc"; else echo "entry was denied the token through /proc"; fi
if ( : </proc/$pid/mem ) 2>/dev/null; then echo "entry opened the reader's memory"; else echo "entry was denied the reader's memory"; fi
exec sleep 100000
`)
	writeFile(t, filepath.Join(dir, "src", "keeper.sh"), `echo "keeper read shared $(cat /run/secrets/shared)"
exec sleep 100000
`)
	writeFile(t, filepath.Join(dir, "src", "nosy.sh"), `if cat /run/secrets/token >/dev/null 2>&1; then echo "nosy read the token"; else echo "nosy was denied"; fi
if cat /run/secrets/shared >/dev/null 2>&1; then echo "nosy read shared"; else echo "nosy was denied shared"; fi
exec sleep 100000
`)
	mustUK(t, dir, 5*time.Minute, "env", "add", "--system", "busybox")

	raw := make([]byte, 16)
	rand.Read(raw)
	secret := "s3cr3t-" + hex.EncodeToString(raw)
	secretFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, secretFile, secret)
	sum := sha256.Sum256([]byte(secret))

	sharedFile := filepath.Join(t.TempDir(), "shared")
	writeFile(t, sharedFile, "shared-value-"+hex.EncodeToString(raw[:4]))
	entryKey := "entry-value-" + hex.EncodeToString(raw[4:8])
	entryFile := filepath.Join(t.TempDir(), "entry_key")
	writeFile(t, entryFile, entryKey)
	mustUK(t, dir, 15*time.Minute, "run", "-d", "--accel", "tcg", "--secret", "token=@"+secretFile, "--secret", "shared=@"+sharedFile, "--secret", "entry_key=@"+entryFile)
	defer noQEMULeft(t, dir)
	defer uk(t, dir, time.Minute, "stop", "svc-e2e")

	// The packaged server answers its client on the host through --publish.
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	pollUntil(t, 3*time.Minute, "answer from busybox httpd at "+url, func() bool {
		c := http.Client{Timeout: 3 * time.Second}
		resp, err := c.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), "hello from busybox httpd")
	})

	pollUntil(t, 3*time.Minute, "restarts of crasher (on-failure) and sick (unhealthy), web healthy", func() bool {
		evs := latestEvents(t, dir)
		return countEvents(evs, "service.start", "crasher", "") >= 3 &&
			countEvents(evs, "health", "sick", "unhealthy") >= 1 && countEvents(evs, "service.start", "sick", "") >= 2 &&
			countEvents(evs, "health", "web", "healthy") >= 1
	})

	var rows []struct {
		Name   string            `json:"name"`
		Health map[string]string `json:"health"`
	}
	ps := mustUK(t, dir, time.Minute, "--json", "ps")
	if err := json.Unmarshal([]byte(ps.stdout), &rows); err != nil {
		t.Fatalf("ps --json: %v: %s", err, ps.stdout)
	}
	found := false
	for _, r := range rows {
		if r.Name == "svc-e2e" {
			found = true
			if r.Health["web"] != "healthy" {
				t.Errorf("ps --json health of web = %q, want healthy (%v)", r.Health["web"], r.Health)
			}
		}
	}
	if !found {
		t.Errorf("ps --json does not list svc-e2e: %s", ps.stdout)
	}
	if strings.Contains(ps.stdout, secret) {
		t.Error("ps --json shows the secret")
	}
	if table := mustUK(t, dir, time.Minute, "ps"); !strings.Contains(table.stdout, "HEALTH") || !strings.Contains(table.stdout, "web=healthy") {
		t.Errorf("ps shows no health:\n%s", table.stdout)
	}

	reader := mustUK(t, dir, time.Minute, "logs", "--service", "reader").stdout
	if !strings.Contains(reader, "token sha256 "+hex.EncodeToString(sum[:])) {
		t.Errorf("reader did not read the secret; its log:\n%s", reader)
	}
	// A service's output is named by init, by the process it read it from: the entry's line that
	// looks like the reader's is the entry's.
	if strings.Contains(reader, "forged by the entry") {
		t.Errorf("the entry's line passed for the reader's in logs --service reader:\n%s", reader)
	}
	if !strings.Contains(mustUK(t, dir, time.Minute, "logs").stdout, "[reader] forged by the entry") {
		t.Error("the entry's own line is missing from logs")
	}
	if !strings.Contains(reader, "token file 440 root read by uid 1000") {
		t.Errorf("secret file mode/owner or reader's uid wrong; its log:\n%s", reader)
	}
	if nosy := mustUK(t, dir, time.Minute, "logs", "--service", "nosy").stdout; strings.Contains(nosy, "nosy read") || !strings.Contains(nosy, "nosy was denied shared") {
		t.Errorf("a service that did not declare the secrets could read them; its log:\n%s", nosy)
	}
	shared := "shared-value-" + hex.EncodeToString(raw[:4])
	keeper := mustUK(t, dir, time.Minute, "logs", "--service", "keeper").stdout
	if !strings.Contains(reader, "reader read shared "+shared) || !strings.Contains(keeper, "keeper read shared "+shared) {
		t.Errorf("a secret declared by services of two users is not readable by both:\nreader:\n%s\nkeeper:\n%s", reader, keeper)
	}
	// The entry and reader both run as app; each reads its own secret and not the other's.
	pollUntil(t, 2*time.Minute, "the entry's attempts on the reader's token", func() bool {
		return strings.Contains(uk(t, dir, time.Minute, "logs").stdout, "the reader's memory")
	})
	console := mustUK(t, dir, time.Minute, "logs").stdout
	if strings.Contains(console, "entry read the token") || strings.Contains(console, "entry opened") {
		t.Errorf("the entry reached the reader's token; console:\n%s", console)
	}
	for _, want := range []string{"entry read entry_key " + entryKey + " as uid 1000", "entry was denied the token",
		"entry was denied the token through /proc", "entry was denied the reader's memory"} {
		if !strings.Contains(console, want) {
			t.Errorf("the entry's output lacks %q; console:\n%s", want, console)
		}
	}
	if !regexp.MustCompile(`entry found reader pid [0-9]+ uid 1000`).MatchString(console) {
		t.Errorf("the entry did not find the reader's process; console:\n%s", console)
	}
	if !strings.Contains(reader, "reader was denied entry_key") {
		t.Errorf("reader, of the entry's user, was not denied the entry's secret; its log:\n%s", reader)
	}
	// Its third start was reported; its line follows on the output channel.
	crasher := ""
	pollUntil(t, time.Minute, "three lives of crasher in logs --service crasher", func() bool {
		crasher = mustUK(t, dir, time.Minute, "logs", "--service", "crasher").stdout
		return strings.Count(crasher, "crasher up") >= 3
	})
	if strings.Contains(crasher, "[crasher]") {
		t.Errorf("logs --service crasher:\n%s", crasher)
	}

	mustUK(t, dir, 2*time.Minute, "stop", "svc-e2e")
	// The secret is nowhere on the host but in the file it came from.
	for _, sub := range []string{"logs", "dist", "build", ".ukernel"} {
		filepath.Walk(filepath.Join(dir, sub), func(p string, fi os.FileInfo, err error) error {
			if err != nil || !fi.Mode().IsRegular() {
				return nil
			}
			b, err := os.ReadFile(p)
			if err == nil && bytes.Contains(b, []byte(secret)) {
				t.Errorf("the secret is in %s", p)
			}
			return nil
		})
	}
}

// TestDataVolumeGrows: raising [data] disk_mb grows the volume and its filesystem at the next
// run, keeping what the workload wrote.
func TestDataVolumeGrows(t *testing.T) {
	skipShort(t)
	dir := newProject(t, "grow-data", "--lang", "shell", "--template", "minimal")
	entry := "#!/bin/sh\ndf -kP /data | tail -n 1\nls /data\necho kept > /data/kept\n"
	writeFile(t, filepath.Join(dir, "src", "main.sh"), entry)
	setDisk := func(mb int) {
		t.Helper()
		p := filepath.Join(dir, "ukernel.toml")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s := regexp.MustCompile(`(?m)^disk_mb = \d+`).ReplaceAllString(string(b), fmt.Sprintf("disk_mb = %d", mb))
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// df's second column: the filesystem's size in KiB.
	size := func(out string) int {
		t.Helper()
		m := regexp.MustCompile(`(?m)^\S+\s+(\d+)\s+\d+\s+\d+\s+\d+%\s+/data\r?$`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no df line for /data:\n%s", out)
		}
		kb, _ := strconv.Atoi(m[1])
		return kb
	}
	setDisk(16)
	first := mustUK(t, dir, 15*time.Minute, "run")
	setDisk(48)
	second := mustUK(t, dir, 15*time.Minute, "run")
	if a, b := size(first.stdout), size(second.stdout); a > 16<<10 || b < 40<<10 {
		t.Errorf("/data was %d KiB, then %d KiB; want about 16 MiB, then about 48 MiB", a, b)
	}
	if !strings.Contains(second.stdout, "kept") {
		t.Errorf("the first run's file is gone after growing:\n%s", second.stdout)
	}
	if fi, err := os.Stat(filepath.Join(dir, ".ukernel", "data.img")); err != nil || fi.Size() != 48<<20 {
		t.Errorf("volume file: %v %v", fi, err)
	}
	noQEMULeft(t, dir)
}

const signalTOML = `[project]
name = 'svc-signal'
language = 'shell'

[env]
base = 'debian-12'

[run]
memory_mb = 256
net = 'none'

[services.daemon]
command = '/bin/sh /app/daemon.sh'
restart = 'always'
user = 'root'
`

// TestServicesStopOnSignalToInit: in a guest with services and no entry, SIGTERM to init (what
// Firecracker's Ctrl-Alt-Del becomes, or a root process's `kill 1`) stops the services and powers
// off. Passed on to the services instead, restart = 'always' would start them again forever.
func TestServicesStopOnSignalToInit(t *testing.T) {
	skipShort(t)
	dir := newProject(t, "svc-signal", "--lang", "shell", "--template", "worker")
	writeFile(t, filepath.Join(dir, "ukernel.toml"), signalTOML)
	writeFile(t, filepath.Join(dir, "src", "daemon.sh"), "echo daemon up\ntrap 'echo daemon stopping; exit 0' TERM\nkill -TERM 1\nwhile :; do sleep 1; done\n")
	mustUK(t, dir, 10*time.Minute, "pack")
	defer noQEMULeft(t, dir)
	r := uk(t, dir, 3*time.Minute, "run", "--accel", "tcg")
	if r.code != 0 {
		t.Fatalf("run: exit %d, want 0 (services stopped on request)\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if n := strings.Count(r.stdout, "daemon up"); n != 1 {
		t.Errorf("the daemon started %d times, want once (stopped, not restarted):\n%s", n, r.stdout)
	}
	if !strings.Contains(r.stdout, "daemon stopping") {
		t.Errorf("the daemon got no SIGTERM from the stop:\n%s", r.stdout)
	}
}
