package userconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoadDir feeds config.toml, a file the user writes, through LoadDir: it fails with an error
// or yields a configuration that holds what validate promises.
func FuzzLoadDir(f *testing.F) {
	f.Add([]byte("[sign]\nkey = \"release\"\n\n[trust]\nrequire = [\"reg.example/team/*\"]\nkeys = [\"ci\"]\n"))
	f.Add([]byte("[registry.\"localhost:5000\"]\nca_file = \"ca.pem\"\ninsecure = true\n\n[templates]\nrepository = \"reg.example/t/\"\n"))
	f.Add([]byte("[trust]\nrequire = [\"[\"]\n"))
	f.Add([]byte("[registry.\"a/b\"]\n"))
	f.Add([]byte("[sign]\nkey = \"../x\"\nother = 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "config.toml"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadDir(dir)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if k := c.File.Sign.Key; k != "" && ValidKeyName(k) != nil {
			t.Fatalf("sign.key %q accepted", k)
		}
		for _, k := range c.File.Trust.Keys {
			if ValidKeyName(k) != nil {
				t.Fatalf("trust.keys %q accepted", k)
			}
		}
		for host, r := range c.File.Registry {
			if host == "" || strings.ContainsAny(host, "/ ") {
				t.Fatalf("registry %q accepted", host)
			}
			if r.CAFile != "" && !filepath.IsAbs(r.CAFile) {
				t.Fatalf("registry %q: ca_file %q left relative", host, r.CAFile)
			}
		}
		for _, g := range c.File.Trust.Require {
			c.RequiresSignature(g)
			c.RequiresSignature("reg.example/team/app")
		}
	})
}
