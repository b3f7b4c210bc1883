package userconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/sign"
)

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	p := filepath.Join(dir, name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	c, err := LoadDir(dir)
	if err != nil || len(c.File.Trust.Require) != 0 {
		t.Fatalf("no file: %+v %v", c, err)
	}
	write(t, dir, "config.toml", "[trust]\nrequire = [\"reg.example/team/*\"]\n\n[registry.\"reg.example:5443\"]\nca_file = \"ca.pem\"\n")
	c, err = LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Registry("reg.example:5443").CAFile; got != filepath.Join(dir, "ca.pem") {
		t.Fatalf("ca_file %q", got)
	}
	for ref, want := range map[string]bool{"reg.example/team/worker": true, "reg.example/team/a/b": true, "reg.example/other": false, "oci-layout:/x": false} {
		if got, _ := c.RequiresSignature(ref); got != want {
			t.Errorf("RequiresSignature(%q) = %v", ref, got)
		}
	}
	for content, want := range map[string]string{
		"[trust]\nrequired = [\"*\"]\n":         "config.toml:2: trust.required: unknown key",
		"[trust]\nrequire = \"*\"\n":            "config.toml:2: trust.require",
		"[trust]\nrequire = [\"[\"]\n":          "trust.require: \"[\" is not a glob",
		"[sign]\nkey = \"../x\"\n":              "sign.key",
		"[registry.\"a/b\"]\ninsecure = true\n": "is not a registry name",
	} {
		write(t, dir, "config.toml", content)
		if _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", content, err, want)
		}
	}
}

func TestKeys(t *testing.T) {
	dir := t.TempDir()
	c := &Config{Dir: dir}
	k, _ := sign.Generate()
	write(t, dir, "keys/release.key", string(k.Marshal()))
	if _, err := c.SigningKey("release"); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, "keys/release.key"), 0o644)
	if _, err := c.SigningKey("release"); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a key others may read: %v", err)
	}
	if _, err := c.SigningKey("missing"); err == nil || !strings.Contains(err.Error(), "ukernel key generate missing") {
		t.Fatalf("missing key: %v", err)
	}
	write(t, dir, "trusted/a.pub", string(k.Public().Marshal()))
	other, _ := sign.Generate()
	write(t, dir, "trusted/b.pub", string(other.Public().Marshal()))
	keys, err := c.TrustedKeys()
	if err != nil || len(keys) != 2 {
		t.Fatalf("trusted keys: %v %v", keys, err)
	}
	c.File.Trust.Keys = []string{"b"}
	if keys, err := c.TrustedKeys(); err != nil || len(keys) != 1 || keys[0].Name != "b" {
		t.Fatalf("[trust] keys = [b]: %v %v", keys, err)
	}
	c.File.Trust.Keys = []string{"c"}
	if _, err := c.TrustedKeys(); err == nil || !strings.Contains(err.Error(), "trust add") {
		t.Fatalf("a named key that is missing: %v", err)
	}
}
