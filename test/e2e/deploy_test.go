package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/testenv"
)

type deployResult struct {
	Host       string `json:"host"`
	Name       string `json:"name"`
	Digest     string `json:"digest"`
	Supervisor string `json:"supervisor"`
	Binary     string `json:"binary"`
	Image      string `json:"image"`
	SentBytes  int64  `json:"sent_bytes"`
	Previous   string `json:"previous_digest"`
	Status     string `json:"status"`
	Error      string `json:"error"`
}

// TestDeployOverSSH deploys a project to this machine through Debian's OpenSSH server started
// on 127.0.0.1 (generated host and user keys). The remote side has its own HOME and runtime
// directory (sshd's SetEnv), apart from the test's. It curls the published port, redeploys a
// changed image (only that image moves), the same image pulled from a registry (signed: refused
// until the host trusts the key), and as a template's revision pulled from there (nothing
// moves; the template's data volume size reaches the host), deploys one whose health check fails and
// sees the previous revision put back, then reads status, logs and stops it. Last, where a
// systemd user manager can run (root), the same deployment moves under systemd, is redeployed
// (the unit restarted) and stopped.
func TestDeployOverSSH(t *testing.T) {
	skipShort(t)
	t.Setenv("UKERNEL_TEMPLATES", filepath.Join(t.TempDir(), "templates"))
	began := time.Now()
	phase := func(name string) { t.Logf("%5.0fs %s", time.Since(began).Seconds(), name) }
	remoteHome := t.TempDir()
	remoteRun, err := os.MkdirTemp("/dev/shm", "ukernel-e2e-remote-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(remoteRun)
	sshd := testenv.StartSSHD(t, testenv.SSHDOptions{Env: map[string]string{
		"HOME": remoteHome, "XDG_RUNTIME_DIR": remoteRun,
	}})
	hostArgs := []string{"--host", sshd.Target, "--ssh-config", sshd.Config, "--identity", sshd.ClientKey, "--known-hosts", sshd.KnownHosts}

	dir := newProject(t, "deployweb", "--lang", "python", "--template", "http")
	cfg := filepath.Join(dir, "ukernel.toml")
	conf, _ := os.ReadFile(cfg)
	conf = []byte(strings.Replace(string(conf), "[project]\n", "[project]\nsecrets = ['api_token']\n", 1))
	// A longer start period than the scaffold's covers python's start on a very busy host; a
	// broken revision is judged at its first probe instead.
	setHealth := func(retries, startPeriod int) {
		const scaffolded = "retries = 3\nstart_period_s = 60\n"
		c := strings.Replace(string(conf), scaffolded, fmt.Sprintf("retries = %d\nstart_period_s = %d\n", retries, startPeriod), 1)
		if c == string(conf) {
			t.Fatalf("no %q in the scaffold's ukernel.toml:\n%s", scaffolded, conf)
		}
		writeFile(t, cfg, c)
	}
	setHealth(3, 120)
	mainPy := filepath.Join(dir, "src", "main.py")
	orig, _ := os.ReadFile(mainPy)
	// The body says the revision and the -e value the guest got.
	setVersion := func(v string, healthPath string) {
		s := strings.Replace(string(orig), `body = b"ok\n"`, `body = ("`+v+` " + os.environ.get("GREETING", "") + "\n").encode()`, 1)
		s = strings.Replace(s, `HEALTH_PATH = "/healthz"`, `HEALTH_PATH = "`+healthPath+`"`, 1)
		writeFile(t, mainPy, s)
	}
	port := freePort(t)
	secret := filepath.Join(t.TempDir(), "token")
	const secretValue = "s3cr3t-value-that-must-stay-in-memory"
	writeFile(t, secret, secretValue)
	deployEnv := func(env []string, wantCode int, extra ...string) (deployResult, result) {
		t.Helper()
		args := append(append([]string{"--json", "deploy"}, hostArgs...), extra...)
		args = append(args, "--publish", fmt.Sprintf("%d:8080", port), "-e", "GREETING=hello", "--secret", "api_token=@"+secret,
			"--health-timeout", "4m")
		r := ukEnv(t, dir, 20*time.Minute, env, args...)
		if r.code != wantCode {
			t.Fatalf("deploy: exit %d, want %d\nstdout:\n%s\nstderr:\n%s\nsshd: %s\nthe host's runs:\n%s", r.code, wantCode, r.stdout, r.stderr, sshd.Log(), remoteRuns(t, remoteHome))
		}
		var res []deployResult
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || len(res) != 1 {
			t.Fatalf("deploy --json: %v\n%s", err, r.stdout)
		}
		return res[0], r
	}
	deploy := func(wantCode int, extra ...string) (deployResult, result) {
		t.Helper()
		return deployEnv(nil, wantCode, extra...)
	}
	// The first requests to a guest under TCG on a busy machine can be slow: retried.
	body := func() string {
		t.Helper()
		var got string
		waitFor(t, "HTTP 200 on the published port", 2*time.Minute, func() (bool, string) {
			out, err := exec.Command("curl", "-fsS", "--max-time", "10", fmt.Sprintf("http://127.0.0.1:%d/", port)).CombinedOutput()
			got = string(out)
			return err == nil, fmt.Sprintf("%v: %s", err, out)
		})
		return got
	}
	remoteUK := filepath.Join(remoteHome, ".local", "bin", "ukernel")
	defer func() {
		uk(t, dir, 2*time.Minute, append([]string{"deploy", "stop"}, hostArgs...)...)
		noQEMULeft(t, remoteRun)
	}()

	// 1. First deploy: the binary and the image go over; the guest answers on the published port.
	setVersion("v1", "/healthz")
	mustUK(t, dir, 15*time.Minute, "pack")
	img := filepath.Join(dir, "dist", "deployweb.img")
	size1 := fileSize(t, img)
	exeSize := fileSize(t, ukernelBin(t))
	r1, _ := deploy(0)
	if r1.Status != "healthy" || r1.Binary != "copied" || r1.Image != "sent" || r1.SentBytes != exeSize+size1 || r1.Supervisor != "monitor" {
		t.Fatalf("first deploy: %+v; want healthy, binary copied, image sent, %d bytes (binary %d + image %d)", r1, exeSize+size1, exeSize, size1)
	}
	if b := body(); b != "v1 hello\n" {
		t.Fatalf("GET / = %q; want v1 with the -e value", b)
	}
	// The secret reached the host on tmpfs only: under the runtime directory, 0600, and
	// nowhere in the remote home on disk.
	secretFiles, _ := filepath.Glob(filepath.Join(remoteRun, "ukernel-deploy", "deployweb", "*", "secrets", "api_token"))
	if len(secretFiles) != 1 {
		t.Fatalf("secret files on the host's tmpfs: %v", secretFiles)
	}
	if fi, err := os.Stat(secretFiles[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the secret's file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	if out, _ := exec.Command("grep", "-rl", secretValue, remoteHome).Output(); len(out) > 0 {
		t.Errorf("the secret is on the host's disk: %s", out)
	}
	phase("first deploy")
	// 2. A changed image: only it moves.
	setVersion("v2", "/healthz")
	mustUK(t, dir, 15*time.Minute, "pack")
	size2 := fileSize(t, img)
	r2, _ := deploy(0)
	if r2.Status != "healthy" || r2.Binary != "present" || r2.Image != "sent" || r2.SentBytes != size2 || r2.Previous != r1.Digest {
		t.Fatalf("second deploy: %+v; want healthy, only the image sent (%d bytes), previous %s", r2, size2, r1.Digest)
	}
	if b := body(); b != "v2 hello\n" {
		t.Fatalf("GET / after the redeploy = %q; want v2", b)
	}
	phase("changed image")

	// 2b. The same image as REF, pushed signed to a registry (Debian's docker-registry on
	// loopback) and pulled by deploy: the host applies its own [trust] policy to the signatures
	// sent with it. Untrusted there: refused before anything starts. Trusted: it runs,
	// recorded as signed.
	reg := startRegistry(t, nil)
	localCfg := []string{"XDG_CONFIG_HOME=" + filepath.Join(t.TempDir(), "config")}
	remoteCfg := []string{"HOME=" + remoteHome, "XDG_CONFIG_HOME=", "XDG_RUNTIME_DIR=" + remoteRun}
	mustUKEnv(t, dir, time.Minute, localCfg, "key", "generate", "rel")
	ref := reg.host + "/team/deployweb:v2"
	mustUKEnv(t, dir, 5*time.Minute, localCfg, "push", ref, "--image", img, "--insecure", "--sign=rel")
	if err := os.MkdirAll(filepath.Join(remoteHome, ".config", "ukernel"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(remoteHome, ".config", "ukernel", "config.toml"), "[trust]\nrequire = [\"127.0.0.1:*\"]\n")
	refArgs := append(append([]string{"--json", "deploy"}, hostArgs...), "--publish", fmt.Sprintf("%d:8080", port), "-e", "GREETING=hello",
		"--secret", "api_token=@"+secret, "--health-timeout", "4m", "--insecure", ref)
	refused := ukEnv(t, dir, 5*time.Minute, localCfg, refArgs...)
	if refused.code != 1 || !strings.Contains(refused.stderr, "the host's trust policy") {
		t.Fatalf("REF signed by a key the host does not trust: exit %d\n%s\n%s", refused.code, refused.stdout, refused.stderr)
	}
	if b := body(); b != "v2 hello\n" {
		t.Fatalf("GET / after a refused deploy = %q; want v2 untouched", b)
	}
	pub := filepath.Join(strings.TrimPrefix(localCfg[0], "XDG_CONFIG_HOME="), "ukernel", "keys", "rel.pub")
	mustUKEnv(t, dir, time.Minute, remoteCfg, "trust", "add", pub, "--name", "rel")
	signed := ukEnv(t, dir, 10*time.Minute, localCfg, refArgs...)
	var rs []deployResult
	if err := json.Unmarshal([]byte(signed.stdout), &rs); signed.code != 0 || err != nil || len(rs) != 1 || rs[0].Status != "healthy" || rs[0].Digest != r2.Digest || rs[0].Image != "present" {
		t.Fatalf("REF signed by a key the host trusts: exit %d\n%s\n%s\nthe host's runs:\n%s", signed.code, signed.stdout, signed.stderr, remoteRuns(t, remoteHome))
	}
	rec, _ := os.ReadFile(filepath.Join(remoteHome, ".local", "state", "ukernel", "deploy", "apps", "deployweb", "deploy.json"))
	if !strings.Contains(string(rec), `"signed_by": [`) || !strings.Contains(string(rec), `"rel"`) || !strings.Contains(string(rec), `"ref": "`+reg.host+`/team/deployweb`) {
		t.Errorf("the host's record of the signed revision: %s", rec)
	}
	os.Remove(filepath.Join(remoteHome, ".config", "ukernel", "config.toml"))
	phase("REF from the registry")

	// The same image again, as a template's revision pulled from the registry (a template
	// with no source), named with its @REV: nothing is sent, and the template's data_mb
	// reaches the host, where the revision's run attaches a data volume of that size.
	mustUKEnv(t, dir, 5*time.Minute, localCfg, "template", "pull", "deployweb-t", ref, "--insecure")
	mustUKEnv(t, dir, time.Minute, localCfg, "template", "edit", "deployweb-t", "--data-mb", "24")
	tplRef := "deployweb-t@" + strings.TrimPrefix(r2.Digest, "sha256:")[:12]
	rt, _ := deployEnv(localCfg, 0, "--template", tplRef, "--name", "deployweb")
	if rt.Status != "healthy" || rt.Digest != r2.Digest || rt.Binary != "present" || rt.Image != "present" || rt.SentBytes != 0 || rt.Previous != r2.Digest {
		t.Errorf("deploy --template %s of the running image: %+v; want healthy, digest %s, nothing sent", tplRef, rt, r2.Digest)
	}
	appDir := filepath.Join(remoteHome, ".local", "state", "ukernel", "deploy", "apps", "deployweb")
	if size := fileSize(t, filepath.Join(appDir, ".ukernel", "data.img")); size != 24<<20 {
		t.Errorf("the deployment's data volume on the host: %d bytes; want the template's data_mb, 24 MiB", size)
	}
	if rec, _ := os.ReadFile(filepath.Join(appDir, "deploy.json")); !strings.Contains(string(rec), `"data_mb": 24`) {
		t.Errorf("the host's record of the template's revision lacks its data_mb: %s", rec)
	}
	phase("deploy --template")
	// 3. A revision whose health check fails. With --no-rollback it stays for debugging;
	// deploy rollback puts v2 back by hand.
	setVersion("v3", "/not-the-health-path")
	setHealth(1, 0)
	mustUK(t, dir, 15*time.Minute, "pack")
	r3, res3 := deploy(1, "--no-rollback")
	if r3.Status != "failed" || !strings.Contains(r3.Error, "health check main") || r3.Image != "sent" {
		t.Fatalf("broken deploy with --no-rollback: %+v\nstderr:\n%s", r3, res3.stderr)
	}
	if b := body(); b != "v3 hello\n" {
		t.Fatalf("GET / after --no-rollback = %q; want v3 still running", b)
	}
	mustUK(t, dir, 10*time.Minute, append([]string{"deploy", "rollback", "--health-timeout", "4m"}, hostArgs...)...)
	if b := body(); b != "v2 hello\n" {
		t.Fatalf("GET / after deploy rollback = %q; want v2", b)
	}
	// Without --no-rollback deploy puts v2 back itself (and the host has v3's image).
	r3, res3 = deploy(1)
	if r3.Status != "rolled-back" || !strings.Contains(r3.Error, "health check main") || r3.Previous != r2.Digest || r3.SentBytes != 0 {
		t.Fatalf("broken deploy: %+v\nstderr:\n%s", r3, res3.stderr)
	}
	if b := body(); b != "v2 hello\n" {
		t.Fatalf("GET / after the rollback = %q; want v2", b)
	}

	phase("failed health, rollbacks")
	// Status: v2 runs, v3 is the previous revision (a rollback would try it again).
	st := mustUK(t, dir, 2*time.Minute, append([]string{"--json", "deploy", "status"}, hostArgs...)...)
	var status []struct {
		Deployment struct {
			Current  struct{ Digest string } `json:"current"`
			Previous struct{ Digest string } `json:"previous"`
		} `json:"deployment"`
		Guest struct {
			Status string            `json:"status"`
			Health map[string]string `json:"health"`
		} `json:"guest"`
	}
	if err := json.Unmarshal([]byte(st.stdout), &status); err != nil || len(status) != 1 {
		t.Fatalf("deploy status --json: %v\n%s", err, st.stdout)
	}
	s := status[0]
	if "sha256:"+s.Deployment.Current.Digest != r2.Digest || "sha256:"+s.Deployment.Previous.Digest != r3.Digest ||
		s.Guest.Status != "running" || s.Guest.Health["main"] != "healthy" {
		t.Errorf("deploy status: %s", st.stdout)
	}
	// Only the images of the current and previous revisions stay on the host... once v1's is
	// an hour old; until then it stays too (another deploy may be about to use it).
	imgs, _ := filepath.Glob(filepath.Join(remoteHome, ".local", "state", "ukernel", "deploy", "images", "*.img"))
	if len(imgs) != 3 {
		t.Errorf("images on the host: %v", imgs)
	}
	logs := mustUK(t, dir, 2*time.Minute, append([]string{"deploy", "logs"}, hostArgs...)...)
	if !strings.Contains(logs.stdout, "listening on 8080") {
		t.Errorf("deploy logs: %q", logs.stdout)
	}
	if _, err := os.Stat(remoteUK); err != nil {
		t.Errorf("the remote ukernel: %v", err)
	}
	// Refusals, through the command: a changed host key (the fingerprint shown, nothing done)
	// and a host that accepts connections but never speaks SSH (named, within its deadline).
	other := filepath.Join(t.TempDir(), "other")
	testenv.Keygen(t, other)
	changed := filepath.Join(t.TempDir(), "known_hosts")
	writeFile(t, changed, testenv.KnownHostsLine(t, sshd.Port, other+".pub"))
	bad := uk(t, dir, time.Minute, "deploy", "--host", sshd.Target, "--ssh-config", sshd.Config, "--identity", sshd.ClientKey,
		"--known-hosts", changed, "--accept-new-host-key", "--image", img)
	if bad.code != 1 || !strings.Contains(bad.stderr, "CHANGED") || !strings.Contains(bad.stderr, sshd.HostKeyFingerprint) {
		t.Errorf("changed host key: exit %d\n%s", bad.code, bad.stderr)
	}
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	// Hosts are deployed one after the other: the first failing stops the deployment, and the
	// hosts after it are reported skipped, untouched.
	start := time.Now()
	bad = uk(t, dir, time.Minute, "--json", "deploy", "--host", silent.Addr().String(), "--host", sshd.Target, "--ssh-config", sshd.Config,
		"--identity", sshd.ClientKey, "--known-hosts", sshd.KnownHosts, "--connect-timeout", "3s", "--image", img)
	var two []deployResult
	if took := time.Since(start); bad.code != 1 || !strings.Contains(bad.stderr, silent.Addr().String()) || took > 20*time.Second ||
		json.Unmarshal([]byte(bad.stdout), &two) != nil || len(two) != 2 || two[0].Status != "failed" || two[1].Status != "skipped" {
		t.Errorf("silent listener, then a good host: exit %d after %s (connect timeout 3s)\n%s\n%s", bad.code, took, bad.stdout, bad.stderr)
	}

	mustUK(t, dir, 2*time.Minute, append([]string{"deploy", "stop"}, hostArgs...)...)
	noQEMULeft(t, remoteRun)
	if _, err := (&http.Client{Timeout: 2 * time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
		t.Errorf("the port still answers after deploy stop")
	}

	phase("status, logs, refusals, stop")
	// 4. The same host with systemd: a real systemd user manager (in a mount namespace of its
	// own, where /run/systemd/system says systemd runs) and an sshd whose sessions see it.
	// The deployment moves from the monitor to a unit, and a redeploy restarts the unit: the
	// stopped guest's record is still listed when systemctl restart returns, and is not taken
	// for the new revision.
	if why := testenv.UserSystemdMissing(); why != "" {
		t.Logf("systemd mode not tested here: %s", why)
		return
	}
	sdRun, err := os.MkdirTemp("/dev/shm", "ukernel-e2e-sd-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sdRun)
	sd := testenv.StartUserSystemd(t, remoteHome, sdRun)
	sdHost := testenv.StartSSHD(t, testenv.SSHDOptions{Env: map[string]string{"HOME": remoteHome, "XDG_RUNTIME_DIR": sdRun}, Wrap: sd.Enter()})
	hostArgs = []string{"--host", sdHost.Target, "--ssh-config", sdHost.Config, "--identity", sdHost.ClientKey, "--known-hosts", sdHost.KnownHosts}
	defer func() {
		uk(t, dir, 2*time.Minute, append([]string{"deploy", "stop"}, hostArgs...)...)
		noQEMULeft(t, sdRun)
	}()
	unit := "ukernel-deployweb.service"
	// A host whose ukernel differs from this one gets this one.
	f, err := os.OpenFile(remoteUK, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("\n"))
	f.Close()
	for i, wantSent := range []int64{exeSize, 0} {
		rs, res := deployEnv(localCfg, 0, "--template", "deployweb-t", "--name", "deployweb")
		if rs.Status != "healthy" || rs.Supervisor != "systemd" || rs.Digest != r2.Digest || rs.SentBytes != wantSent || rs.Image != "present" {
			t.Fatalf("deploy %d under systemd: %+v; want healthy, %d bytes sent (the binary the first time)\nstderr:\n%s", i+1, rs, wantSent, res.stderr)
		}
		if b := body(); b != "v2 hello\n" {
			t.Fatalf("GET / under systemd = %q; want v2", b)
		}
		if out, err := sd.Ctl("is-active", unit); err != nil || out != "active\n" {
			t.Fatalf("%s after deploy %d: %q, %v", unit, i+1, out, err)
		}
	}
	if _, err := os.Stat(filepath.Join(remoteHome, ".config", "systemd", "user", unit)); err != nil {
		t.Errorf("the user unit: %v", err)
	}
	mustUK(t, dir, 2*time.Minute, append([]string{"deploy", "stop"}, hostArgs...)...)
	if out, _ := sd.Ctl("is-active", unit); out != "inactive\n" {
		t.Errorf("%s after deploy stop: %q; want inactive (stopped through its ExecStop)", unit, out)
	}
	noQEMULeft(t, sdRun)
	phase("systemd")
}

// remoteRuns is the end of each run's console and events on the host, for a failure's report.
func remoteRuns(t *testing.T, home string) string {
	var b strings.Builder
	runs, _ := filepath.Glob(filepath.Join(home, ".local", "state", "ukernel", "deploy", "apps", "*", "logs", "runs", "*"))
	for _, r := range runs {
		fmt.Fprintf(&b, "== %s\n", r)
		for _, f := range []string{"console.log", "events.jsonl", "output.jsonl"} {
			data, _ := os.ReadFile(filepath.Join(r, f))
			if len(data) > 3000 {
				data = data[len(data)-3000:]
			}
			fmt.Fprintf(&b, "-- %s:\n%s\n", f, data)
		}
	}
	return b.String()
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
