package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

var (
	regImgOnce sync.Once
	regImg     string
	regImgErr  string
)

const regHello = "Hello from reg-min"

// registryImage packs one small project image, shared by the registry tests.
func registryImage(t *testing.T) string {
	t.Helper()
	regImgOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ukernel-e2e-reg-")
		if err != nil {
			regImgErr = err.Error()
			return
		}
		dir = filepath.Join(dir, "reg-min")
		os.MkdirAll(dir, 0o755)
		if r := uk(t, dir, time.Minute, "init", "--name", "reg-min", "--lang", "python", "--template", "minimal"); r.code != 0 {
			regImgErr = "init: " + r.stderr
			return
		}
		writeFile(t, filepath.Join(dir, "src", "main.py"), "print('"+regHello+"', flush=True)\n")
		if r := uk(t, dir, 15*time.Minute, "pack"); r.code != 0 {
			regImgErr = "pack: " + r.stderr
			return
		}
		regImg = filepath.Join(dir, "dist", "reg-min.img")
	})
	if regImgErr != "" {
		t.Fatal(regImgErr)
	}
	return regImg
}

// registry is a real distribution registry (Debian's docker-registry, 2.8) on 127.0.0.1.
type registry struct {
	host    string
	storage string
}

type registryTLS struct{ cert, key, htpasswd string }

func startRegistry(t *testing.T, tlsConf *registryTLS) *registry {
	t.Helper()
	if _, err := exec.LookPath("docker-registry"); err != nil {
		t.Skip("docker-registry not installed (scripts/deps.sh --tests)")
	}
	dir := t.TempDir()
	port := freePort(t)
	r := &registry{host: fmt.Sprintf("127.0.0.1:%d", port), storage: filepath.Join(dir, "storage")}
	conf := fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", r.storage, r.host)
	scheme := "http"
	if tlsConf != nil {
		scheme = "https"
		conf += fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\nauth:\n  htpasswd:\n    realm: ukernel-test\n    path: %s\n", tlsConf.cert, tlsConf.key, tlsConf.htpasswd)
	}
	cfg := filepath.Join(dir, "config.yml")
	writeFile(t, cfg, conf)
	cmd := exec.Command("docker-registry", "serve", cfg)
	logf, _ := os.Create(filepath.Join(dir, "registry.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	client := &http.Client{Timeout: 2 * time.Second}
	if tlsConf != nil {
		client.Transport = &http.Transport{TLSClientConfig: insecureTLS()}
	}
	waitFor(t, "the registry to answer", 30*time.Second, func() (bool, string) {
		resp, err := client.Get(scheme + "://" + r.host + "/v2/")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return true, ""
	})
	return r
}

// env is one user's world: empty config, cache and data directories.
func userEnv(t *testing.T) []string {
	d := t.TempDir()
	return []string{"XDG_CONFIG_HOME=" + filepath.Join(d, "config"), "XDG_CACHE_HOME=" + filepath.Join(d, "cache"),
		"XDG_DATA_HOME=" + filepath.Join(d, "data"), "HOME=" + d, "REGISTRY_AUTH_FILE=", "DOCKER_CONFIG=" + filepath.Join(d, "docker")}
}

func envValue(env []string, key string) string {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, key+"="); ok {
			return v
		}
	}
	return ""
}

func mustUKEnv(t *testing.T, dir string, timeout time.Duration, env []string, args ...string) result {
	t.Helper()
	r := ukEnv(t, dir, timeout, env, args...)
	if r.code != 0 {
		t.Fatalf("ukernel %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

type pushOut struct {
	Ref      string `json:"ref"`
	Digest   string `json:"digest"`
	Revision string `json:"revision"`
	Tagged   bool   `json:"tagged"`
	Blobs    []struct {
		Digest string `json:"digest"`
		Moved  bool   `json:"transferred"`
	} `json:"blobs"`
	Signature *struct{} `json:"signature"`
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return v
}

// TestRegistryPushPullSigned: through a real registry (plain HTTP on loopback, --insecure):
// a signed push, a second push that sends no blob, a pull into an empty user under a policy
// that boots with no network, pull by digest, the policy's refusals (another key trusted, no
// signature), a damaged blob in the registry's storage refused by name, skopeo copying and
// reading the artifact, and an oci-layout round trip.
func TestRegistryPushPullSigned(t *testing.T) {
	skipShort(t)
	img := registryImage(t)
	reg := startRegistry(t, nil)
	work := t.TempDir()
	alice := userEnv(t)
	mustUKEnv(t, work, time.Minute, alice, "key", "generate", "alice")
	alicePub := filepath.Join(envValue(alice, "XDG_CONFIG_HOME"), "ukernel", "keys", "alice.pub")
	if fi, err := os.Stat(strings.TrimSuffix(alicePub, ".pub") + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key: %v %v", fi, err)
	}

	ref := reg.host + "/team/reg-min:v1"
	first := decode[pushOut](t, mustUKEnv(t, work, 5*time.Minute, alice, "--json", "push", ref, "--image", img, "--insecure", "--sign=alice").stdout)
	if len(first.Blobs) != 2 || !first.Blobs[0].Moved || !first.Blobs[1].Moved || first.Signature == nil {
		t.Fatalf("first push: %+v", first)
	}
	// Without a name, --sign takes the key from UKERNEL_SIGN_KEY.
	again := decode[pushOut](t, mustUKEnv(t, work, 5*time.Minute, append(alice, "UKERNEL_SIGN_KEY=alice"), "--json", "push", ref, "--image", img, "--insecure", "--sign").stdout)
	if again.Digest != first.Digest || again.Tagged || again.Blobs[0].Moved || again.Blobs[1].Moved || again.Signature == nil {
		t.Fatalf("second push sent something: %+v", again)
	}
	if r := ukEnv(t, work, time.Minute, alice, "push", ref, "--image", img, "--insecure", "--sign"); r.code != 2 || !strings.Contains(r.stderr, "UKERNEL_SIGN_KEY") {
		t.Fatalf("push --sign with no key named anywhere: exit %d\n%s", r.code, r.stderr)
	}

	// distribution 2.8 has no referrers API: the signature is listed by the referrers tag.
	tags, err := exec.Command("skopeo", "list-tags", "--tls-verify=false", "docker://"+reg.host+"/team/reg-min").CombinedOutput()
	if err != nil || !strings.Contains(string(tags), "sha256-"+strings.TrimPrefix(first.Digest, "sha256:")) {
		t.Fatalf("no referrers tag for %s: %v\n%s", first.Digest, err, tags)
	}

	// Bob trusts alice and requires signatures from this registry.
	bob := userEnv(t)
	mustUKEnv(t, work, time.Minute, bob, "trust", "add", alicePub)
	writeConfig(t, bob, fmt.Sprintf("[trust]\nrequire = [%q]\n", reg.host+"/*"))
	path := strings.TrimSpace(mustUKEnv(t, work, 5*time.Minute, bob, "pull", ref, "--insecure").stdout)
	if fileSum(t, path) != first.Revision {
		t.Fatalf("pulled image %s is not revision %s", path, first.Revision)
	}
	v := mustUKEnv(t, work, 5*time.Minute, bob, "verify", ref, "--insecure")
	if !strings.Contains(v.stdout, "Signed by: alice") {
		t.Fatalf("verify does not say who signed:\n%s", v.stdout)
	}
	if v := mustUKEnv(t, work, time.Minute, bob, "verify", path); !strings.Contains(v.stdout, "Signed by: alice") {
		t.Fatalf("verify of the pulled file:\n%s", v.stdout)
	}
	// Into a template (created by the pull, without a source), verified there under the policy,
	// and booted from it with no network: ukernel and QEMU in a network namespace of their own.
	tp := decode[struct {
		Template struct {
			Template, Revision string
			Created            bool
		} `json:"template_revision"`
	}](t, mustUKEnv(t, work, 5*time.Minute, bob, "--json", "template", "pull", "regmin", ref, "--insecure").stdout)
	if !tp.Template.Created || tp.Template.Revision != first.Revision {
		t.Fatalf("template pull: %+v", tp)
	}
	mustUKEnv(t, work, 5*time.Minute, bob, "template", "verify", "regmin")
	empty := t.TempDir()
	cmd := exec.Command("unshare", "-n", ukernelBin(t), "-C", empty, "run", "--template", "regmin", "--accel", "tcg")
	cmd.Env = append(os.Environ(), bob...)
	out, err := runWithDeadline(cmd, 5*time.Minute)
	if err != nil || !strings.Contains(out, regHello) {
		t.Fatalf("boot of the pulled template without a network: %v\n%s", err, out)
	}
	// The template's revision goes back out under its name.
	tb := decode[pushOut](t, mustUKEnv(t, work, 5*time.Minute, bob, "--json", "push", reg.host+"/team/from-template:v1", "--template", "regmin", "--insecure").stdout)
	if tb.Digest == first.Digest || tb.Revision != first.Revision {
		t.Fatalf("push --template: %+v (the manifest should name the template, the image stay the same)", tb)
	}

	// By digest.
	byDigest := reg.host + "/team/reg-min@" + first.Digest
	if p := strings.TrimSpace(mustUKEnv(t, work, 5*time.Minute, bob, "pull", byDigest, "--insecure").stdout); p != path {
		t.Fatalf("pull by digest: %s, want %s", p, path)
	}

	// Carol trusts only another key: refused, naming alice's key and the digest.
	carol := userEnv(t)
	mustUKEnv(t, work, time.Minute, carol, "key", "generate", "mallory")
	mustUKEnv(t, work, time.Minute, carol, "trust", "add", filepath.Join(envValue(carol, "XDG_CONFIG_HOME"), "ukernel", "keys", "mallory.pub"))
	writeConfig(t, carol, "[trust]\nrequire = [\"*\"]\n")
	aliceID := strings.Fields(strings.Split(readFile(t, alicePub), "\n")[0])[5]
	r := ukEnv(t, work, 5*time.Minute, carol, "pull", ref, "--insecure")
	if r.code != 1 || !strings.Contains(r.stderr, first.Digest) || !strings.Contains(r.stderr, "untrusted key "+aliceID) {
		t.Fatalf("pull signed by an untrusted key: exit %d\n%s", r.code, r.stderr)
	}
	if entries, _ := filepath.Glob(filepath.Join(envValue(carol, "XDG_CACHE_HOME"), "ukernel", "sha256", "*", first.Revision)); len(entries) > 0 {
		t.Fatal("a refused image was stored")
	}
	// Unsigned, under bob's policy: refused.
	unsigned := reg.host + "/team/unsigned:v1"
	// Another repository of the same registry: the layer is mounted from the first, not sent.
	mounted := decode[pushOut](t, mustUKEnv(t, work, 5*time.Minute, alice, "--json", "push", unsigned, "--image", img, "--insecure").stdout)
	if mounted.Blobs[1].Moved {
		t.Errorf("the layer was sent again to another repository of the same registry: %+v", mounted)
	}
	if r := ukEnv(t, work, 5*time.Minute, bob, "pull", unsigned, "--insecure"); r.code != 1 || !strings.Contains(r.stderr, "not signed") || !strings.Contains(r.stderr, first.Digest) {
		t.Fatalf("unsigned pull under the policy: exit %d\n%s", r.code, r.stderr)
	}

	// skopeo copies the artifact to another registry and reads it: the format is standard.
	other := startRegistry(t, nil)
	if out, err := exec.Command("skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
		"docker://"+ref, "docker://"+other.host+"/copied/reg-min:v1").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	raw, err := exec.Command("skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+other.host+"/copied/reg-min:v1").Output()
	if err != nil || !strings.Contains(string(raw), `"artifactType":"application/vnd.ukernel.image.v1"`) {
		t.Fatalf("skopeo inspect --raw: %v\n%s", err, raw)
	}
	config, err := exec.Command("skopeo", "inspect", "--config", "--raw", "--tls-verify=false", "docker://"+other.host+"/copied/reg-min:v1").Output()
	if err != nil || !strings.Contains(string(config), `"name": "reg-min"`) && !strings.Contains(string(config), `"name":"reg-min"`) {
		t.Fatalf("skopeo inspect --config: %v\n%s", err, config)
	}
	dave := userEnv(t)
	copied := decode[struct{ Digest, Revision string }](t, mustUKEnv(t, work, 5*time.Minute, dave, "--json", "pull", other.host+"/copied/reg-min:v1", "--insecure").stdout)
	if copied.Digest != first.Digest || copied.Revision != first.Revision {
		t.Fatalf("the copy is another artifact: %+v, pushed %+v", copied, first)
	}

	// oci-layout round trip, and skopeo reads the layout.
	layout := filepath.Join(work, "layout")
	mustUKEnv(t, work, 5*time.Minute, alice, "push", "oci-layout:"+layout+":v1", "--image", img, "--sign=alice")
	lp := decode[struct{ Digest, Revision string }](t, mustUKEnv(t, work, 5*time.Minute, bob, "--json", "pull", "oci-layout:"+layout+":v1").stdout)
	if lp.Revision != first.Revision || lp.Digest != first.Digest {
		t.Fatalf("oci-layout round trip: %+v", lp)
	}
	if out, err := exec.Command("skopeo", "inspect", "--raw", "oci:"+layout+":v1").CombinedOutput(); err != nil || !strings.Contains(string(out), first.Blobs[1].Digest) {
		t.Fatalf("skopeo inspect of the layout: %v\n%s", err, out)
	}

	checkWithMinisign(t, layout, first.Digest, alicePub)

	// A byte flipped in the layer as the registry stores it: pull refuses, naming the digest.
	layer := strings.TrimPrefix(first.Blobs[1].Digest, "sha256:")
	data := filepath.Join(reg.storage, "docker", "registry", "v2", "blobs", "sha256", layer[:2], layer, "data")
	b, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(data, b, 0o644); err != nil {
		t.Fatal(err)
	}
	eve := userEnv(t)
	r = ukEnv(t, work, 5*time.Minute, eve, "pull", ref, "--insecure")
	if r.code != 1 || !strings.Contains(r.stderr, first.Blobs[1].Digest) || !strings.Contains(r.stderr, "damaged or was altered") {
		t.Fatalf("pull of a damaged layer: exit %d\n%s", r.code, r.stderr)
	}
	if left, _ := filepath.Glob(filepath.Join(envValue(eve, "XDG_CACHE_HOME"), "ukernel", "sha256", "*", "*")); len(left) > 0 {
		t.Fatalf("the damaged pull left %v", left)
	}
	if r := ukEnv(t, work, 5*time.Minute, eve, "verify", ref, "--insecure"); r.code != 1 || !strings.Contains(r.stderr, first.Blobs[1].Digest) {
		t.Fatalf("verify of a damaged layer: exit %d\n%s", r.code, r.stderr)
	}
}

// checkWithMinisign finds the signature of manifest digest in an OCI layout and checks it with
// the minisign tool: the signature is minisign's own format, over the manifest's bytes.
func checkWithMinisign(t *testing.T, layout, digest, pub string) {
	t.Helper()
	if _, err := exec.LookPath("minisign"); err != nil {
		t.Fatal("minisign not installed (scripts/deps.sh --tests installs it)")
	}
	blob := func(d string) string {
		return filepath.Join(layout, "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))
	}
	var index struct {
		Manifests []struct{ Digest, ArtifactType string }
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(layout, "index.json"))), &index); err != nil {
		t.Fatal(err)
	}
	for _, m := range index.Manifests {
		if m.ArtifactType != "application/vnd.ukernel.signature.v1" {
			continue
		}
		var sm struct {
			Subject struct{ Digest string }
			Layers  []struct{ Digest string }
		}
		if err := json.Unmarshal([]byte(readFile(t, blob(m.Digest))), &sm); err != nil || sm.Subject.Digest != digest || len(sm.Layers) != 1 {
			continue
		}
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "manifest.json"), readFile(t, blob(digest)))
		writeFile(t, filepath.Join(dir, "manifest.json.minisig"), readFile(t, blob(sm.Layers[0].Digest)))
		out, err := exec.Command("minisign", "-V", "-p", pub, "-m", filepath.Join(dir, "manifest.json")).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Trusted comment: ukernel image "+digest) {
			t.Fatalf("minisign -V of the pushed signature: %v\n%s", err, out)
		}
		return
	}
	t.Fatalf("no signature of %s in %s", digest, layout)
}

// TestRegistryTLSAuth: a registry with TLS from a test CA and htpasswd auth. Credentials come
// from --username/--password-stdin or REGISTRY_AUTH_FILE; the CA from config.toml; without
// either the transfer fails, saying why.
func TestRegistryTLSAuth(t *testing.T) {
	skipShort(t)
	img := registryImage(t)
	dir := t.TempDir()
	ca := writeTestPKI(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "htpasswd"), "ci:"+string(hash)+"\n")
	reg := startRegistry(t, &registryTLS{cert: filepath.Join(dir, "server.pem"), key: filepath.Join(dir, "server-key.pem"), htpasswd: filepath.Join(dir, "htpasswd")})
	ref := reg.host + "/secure/reg-min:v1"
	work := t.TempDir()

	u := userEnv(t)
	// The CA is not known yet: TLS verification fails.
	if r := ukEnv(t, work, time.Minute, u, "push", ref, "--image", img); r.code != 1 || !strings.Contains(r.stderr, "certificate") {
		t.Fatalf("push to an unknown CA: exit %d\n%s", r.code, r.stderr)
	}
	writeConfig(t, u, fmt.Sprintf("[registry.%q]\nca_file = %q\n", reg.host, ca))
	// No credentials: unauthorized.
	if r := ukEnv(t, work, time.Minute, u, "push", ref, "--image", img); r.code != 1 || !strings.Contains(strings.ToLower(r.stderr), "unauthorized") {
		t.Fatalf("push without credentials: exit %d\n%s", r.code, r.stderr)
	}
	// --insecure is plain HTTP, which a TLS registry on loopback does not speak.
	if r := ukEnv(t, work, time.Minute, u, "push", ref, "--image", img, "--insecure", "--username", "ci", "--password-stdin"); r.code == 0 {
		t.Fatal("plain HTTP to a TLS registry succeeded")
	}
	push := exec.Command(ukernelBin(t), "-C", work, "--json", "push", ref, "--image", img, "--username", "ci", "--password-stdin")
	push.Env = append(os.Environ(), u...)
	push.Stdin = strings.NewReader("s3cret\n")
	out, err := runWithDeadline(push, 5*time.Minute)
	if err != nil {
		t.Fatalf("push with --password-stdin: %v\n%s", err, out)
	}

	auth := filepath.Join(dir, "auth.json")
	writeFile(t, auth, fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.host, base64.StdEncoding.EncodeToString([]byte("ci:s3cret"))))
	p := userEnv(t)
	writeConfig(t, p, fmt.Sprintf("[registry.%q]\nca_file = %q\n", reg.host, ca))
	for i, e := range p {
		if strings.HasPrefix(e, "REGISTRY_AUTH_FILE=") {
			p[i] = "REGISTRY_AUTH_FILE=" + auth
		}
	}
	path := strings.TrimSpace(mustUKEnv(t, work, 5*time.Minute, p, "pull", ref).stdout)
	if im := fileSum(t, path); im != fileSum(t, img) {
		t.Fatalf("pulled %s, pushed %s", im, fileSum(t, img))
	}

	certDir := filepath.Join(dir, "certs")
	os.MkdirAll(certDir, 0o755)
	os.Link(ca, filepath.Join(certDir, "ca.crt"))
	if out, err := exec.Command("skopeo", "inspect", "--raw", "--cert-dir", certDir, "--creds", "ci:s3cret", "docker://"+ref).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "application/vnd.ukernel.image.v1") {
		t.Fatalf("skopeo inspect over TLS: %v\n%s", err, out)
	}
}

func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } // readiness probe only

// writeConfig writes the user's config.toml.
func writeConfig(t *testing.T, env []string, content string) {
	t.Helper()
	dir := filepath.Join(envValue(env, "XDG_CONFIG_HOME"), "ukernel")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "config.toml"), content)
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func runWithDeadline(cmd *exec.Cmd, d time.Duration) (string, error) {
	var buf strings.Builder
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return buf.Write(p) })
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		mu.Lock()
		defer mu.Unlock()
		return buf.String(), err
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return buf.String(), fmt.Errorf("no result within %v", d)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// writeTestPKI writes a test CA and a server certificate for 127.0.0.1 signed by it; it
// returns the CA's PEM path.
func writeTestPKI(t *testing.T, dir string) string {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ukernel test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	writeFile(t, filepath.Join(dir, "ca.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})))
	writeFile(t, filepath.Join(dir, "server.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER})))
	writeFile(t, filepath.Join(dir, "server-key.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
	return filepath.Join(dir, "ca.pem")
}
