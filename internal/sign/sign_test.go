package sign

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func write(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRoundTrip(t *testing.T) {
	k, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ParsePrivateKey(k.Marshal())
	if err != nil || k2.ID != k.ID || !bytes.Equal(k2.Key, k.Key) {
		t.Fatalf("private key round trip: %v", err)
	}
	pub, err := ParsePublicKey(k.Public().Marshal())
	if err != nil || pub.ID != k.ID {
		t.Fatalf("public key round trip: %v", err)
	}
	msg := []byte(`{"schemaVersion":2}`)
	sig, err := Sign(k, msg, "ukernel image sha256:abc")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSignature(sig)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(pub, msg); err != nil {
		t.Fatal(err)
	}
	if s.TrustedComment != "ukernel image sha256:abc" {
		t.Fatalf("trusted comment %q", s.TrustedComment)
	}
	if err := s.Verify(pub, append(msg, ' ')); err == nil {
		t.Fatal("a changed message verified")
	}
	other, _ := Generate()
	if err := s.Verify(other.Public(), msg); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("another key: %v", err)
	}
	s.TrustedComment = "ukernel image sha256:def"
	if err := s.Verify(pub, msg); err == nil {
		t.Fatal("an altered trusted comment verified")
	}
	// A public key with the right ID but other bytes (a forged key file) does not verify.
	forged := other.Public()
	forged.ID = k.ID
	s, _ = ParseSignature(sig)
	if err := s.Verify(forged, msg); err == nil {
		t.Fatal("a forged key verified")
	}
}

// The reference tool checks what ukernel signs, and ukernel what it signs with ukernel's key.
func TestMinisignInterop(t *testing.T) {
	if _, err := exec.LookPath("minisign"); err != nil {
		t.Skip("minisign not installed (scripts/deps.sh --tests)")
	}
	dir := t.TempDir()
	k, _ := Generate()
	pubPath := write(t, dir, "k.pub", k.Public().Marshal())
	keyPath := write(t, dir, "k.key", k.Marshal())
	msg := []byte("manifest bytes\n")
	msgPath := write(t, dir, "m", msg)
	sig, err := Sign(k, msg, "ukernel image sha256:0123")
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, "m.minisig", sig)
	out, err := exec.Command("minisign", "-V", "-p", pubPath, "-m", msgPath).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("Trusted comment: ukernel image sha256:0123")) {
		t.Fatalf("minisign -V: %v\n%s", err, out)
	}
	write(t, dir, "m", []byte("manifest bytes!\n"))
	if out, err := exec.Command("minisign", "-V", "-p", pubPath, "-m", msgPath).CombinedOutput(); err == nil {
		t.Fatalf("minisign -V accepted a changed message:\n%s", out)
	}

	// minisign signs with ukernel's secret key; ukernel verifies.
	write(t, dir, "m", msg)
	if out, err := exec.Command("minisign", "-S", "-s", keyPath, "-m", msgPath, "-t", "by minisign").CombinedOutput(); err != nil {
		t.Fatalf("minisign -S with ukernel's key: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(msgPath + ".minisig")
	s, err := ParseSignature(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(k.Public(), msg); err != nil || s.TrustedComment != "by minisign" {
		t.Fatalf("verify minisign's signature: %v (%q)", err, s.TrustedComment)
	}

	// A key minisign made (unencrypted) signs for ukernel.
	if out, err := exec.Command("minisign", "-G", "-W", "-p", filepath.Join(dir, "g.pub"), "-s", filepath.Join(dir, "g.key")).CombinedOutput(); err != nil {
		t.Fatalf("minisign -G: %v\n%s", err, out)
	}
	gk, err := os.ReadFile(filepath.Join(dir, "g.key"))
	if err != nil {
		t.Fatal(err)
	}
	mk, err := ParsePrivateKey(gk)
	if err != nil {
		t.Fatal(err)
	}
	gp, _ := os.ReadFile(filepath.Join(dir, "g.pub"))
	mp, err := ParsePublicKey(gp)
	if err != nil || mp.ID != mk.ID {
		t.Fatalf("minisign's public key: %v", err)
	}
}

func TestEncryptedKeyRefused(t *testing.T) {
	k, _ := Generate()
	b := k.Marshal()
	p, _ := payload(b, "")
	p[2], p[3] = 'S', 'c'
	enc := []byte("untrusted comment: x\n" + encode(p) + "\n")
	if _, err := ParsePrivateKey(enc); err == nil || !bytes.Contains([]byte(err.Error()), []byte("encrypted")) {
		t.Fatalf("encrypted key: %v", err)
	}
}

func FuzzParseSignature(f *testing.F) {
	k, _ := Generate()
	sig, _ := Sign(k, []byte("m"), "c")
	f.Add(sig)
	f.Add(k.Public().Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := ParseSignature(b); err == nil {
			_ = s.Verify(k.Public(), []byte("m"))
		}
		_, _ = ParsePublicKey(b)
		_, _ = ParsePrivateKey(b)
	})
}

func encode(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
