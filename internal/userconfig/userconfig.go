// Package userconfig is the user's own configuration, outside any project:
// $XDG_CONFIG_HOME/ukernel/config.toml (signing, the trust policy, registry settings), the
// user's signing keys in keys/ and the public keys they trust in trusted/.
//
// Settings are taken, first found: a command-line flag, then the environment, then the project,
// then this file (docs/CONFIG.md lists each one).
package userconfig

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/sign"
)

// File is config.toml's schema.
type File struct {
	Sign     SignSection                `toml:"sign"`
	Trust    TrustSection               `toml:"trust"`
	Registry map[string]RegistrySection `toml:"registry"`
	// Templates says where `template push` and `template pull` go without a REF.
	Templates TemplatesSection `toml:"templates"`
	// Cache is the shared build cache (remotecache).
	Cache CacheSection `toml:"cache"`
}

// CacheSection holds the shared build cache's settings.
type CacheSection struct {
	Remote string `toml:"remote"` // host[:port]/repository
	// Push makes this user a writer: `ukernel cache push` refuses otherwise (read-only default).
	Push bool `toml:"push"`
}

// TemplatesSection holds the template settings.
type TemplatesSection struct {
	Repository string `toml:"repository"` // host[:port]/path: template NAME is REPOSITORY/NAME
}

// TemplateRepositoryEnv overrides [templates] repository.
const TemplateRepositoryEnv = "UKERNEL_TEMPLATE_REPOSITORY"

// TemplateRepository returns where templates are pushed and pulled without a REF: the
// environment, else config.toml.
func (c *Config) TemplateRepository() string {
	if v := os.Getenv(TemplateRepositoryEnv); v != "" {
		return strings.TrimSuffix(v, "/")
	}
	return strings.TrimSuffix(c.File.Templates.Repository, "/")
}

// SignSection says how `push --sign` signs.
type SignSection struct {
	Key string `toml:"key"` // key name in keys/ that `push` signs with when --sign is given no name
}

// TrustSection is the trust policy.
type TrustSection struct {
	// Require lists references (globs: * matches any run of characters, / included) whose images
	// must carry a valid signature by a trusted key before pull, verify or run accept them.
	Require []string `toml:"require"`
	// Keys restricts the trusted keys that count to these names in trusted/; empty: all of them.
	Keys []string `toml:"keys"`
}

// RegistrySection holds the settings of one registry, keyed by its host[:port].
type RegistrySection struct {
	CAFile   string `toml:"ca_file"`  // PEM certificates trusted for this registry, besides the system's
	Insecure bool   `toml:"insecure"` // --insecure may use plain HTTP for this name (loopback always may)
}

// Config is the loaded user configuration.
type Config struct {
	Dir  string // $XDG_CONFIG_HOME/ukernel
	File File
}

// Dir returns $XDG_CONFIG_HOME/ukernel (default ~/.config/ukernel).
func Dir() (string, error) {
	base := os.Getenv("XDG_CONFIG_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("user configuration: neither XDG_CONFIG_HOME nor a home directory is set: %w", err)
		}
		base = filepath.Join(home, ".config")
	}
	return filepath.Join(base, "ukernel"), nil
}

// Load reads config.toml (a missing file is an empty configuration) and validates it.
func Load() (*Config, error) {
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	return LoadDir(dir)
}

// LoadDir reads the configuration kept in dir.
func LoadDir(dir string) (*Config, error) {
	c := &Config{Dir: dir}
	p := filepath.Join(dir, "config.toml")
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	if err := project.DecodeStrict(p, data, &c.File); err != nil {
		return nil, err
	}
	if err := c.validate(p); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) validate(file string) error {
	if k := c.File.Sign.Key; k != "" {
		if err := ValidKeyName(k); err != nil {
			return &project.Error{File: file, Key: "sign.key", Msg: err.Error()}
		}
	}
	for _, k := range c.File.Trust.Keys {
		if err := ValidKeyName(k); err != nil {
			return &project.Error{File: file, Key: "trust.keys", Msg: err.Error()}
		}
	}
	for _, g := range c.File.Trust.Require {
		if _, err := path.Match(g, ""); err != nil || g == "" {
			return &project.Error{File: file, Key: "trust.require", Msg: fmt.Sprintf("%q is not a glob (use * and ?, e.g. \"registry.example.com/team/*\")", g)}
		}
	}
	for host, r := range c.File.Registry {
		if host == "" || strings.ContainsAny(host, "/ ") {
			return &project.Error{File: file, Key: "registry", Msg: fmt.Sprintf("%q is not a registry name; write host or host:port", host)}
		}
		if r.CAFile != "" && !filepath.IsAbs(r.CAFile) {
			r.CAFile = filepath.Join(c.Dir, r.CAFile)
			c.File.Registry[host] = r
		}
	}
	return nil
}

// ValidKeyName checks a key's name: it becomes a file name.
func ValidKeyName(n string) error {
	if err := project.ValidateName(n); err != nil {
		return fmt.Errorf("key name %q: %w", n, err)
	}
	return nil
}

// KeysDir holds the user's signing keys (NAME.key, 0600, and NAME.pub).
func (c *Config) KeysDir() string { return filepath.Join(c.Dir, "keys") }

// TrustedDir holds the public keys the user trusts (NAME.pub).
func (c *Config) TrustedDir() string { return filepath.Join(c.Dir, "trusted") }

// Registry returns the settings of a registry (host[:port]).
func (c *Config) Registry(host string) RegistrySection { return c.File.Registry[host] }

// SigningKey reads the secret key NAME from keys/ (name may also be a path to a key file).
func (c *Config) SigningKey(name string) (sign.PrivateKey, error) {
	p := name
	if !strings.ContainsRune(name, '/') {
		if err := ValidKeyName(name); err != nil {
			return sign.PrivateKey{}, err
		}
		p = filepath.Join(c.KeysDir(), name+".key")
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return sign.PrivateKey{}, fmt.Errorf("signing key %q: %s does not exist; create it with 'ukernel key generate %s'", name, p, filepath.Base(strings.TrimSuffix(p, ".key")))
	}
	if err != nil {
		return sign.PrivateKey{}, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return sign.PrivateKey{}, fmt.Errorf("signing key %s is readable by others (mode %04o); run chmod 600 %s", p, fi.Mode().Perm(), p)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return sign.PrivateKey{}, err
	}
	k, err := sign.ParsePrivateKey(data)
	if err != nil {
		return sign.PrivateKey{}, fmt.Errorf("%s: %w", p, err)
	}
	return k, nil
}

// NamedKey is a trusted public key and its name (its file name in trusted/).
type NamedKey struct {
	Name string
	Key  sign.PublicKey
}

// TrustedKeys returns the keys that count under the policy: those in trusted/, restricted to
// [trust] keys when it is set.
func (c *Config) TrustedKeys() ([]NamedKey, error) {
	ents, err := os.ReadDir(c.TrustedDir())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var keys []NamedKey
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".pub")
		if !ok || e.IsDir() {
			continue
		}
		if len(c.File.Trust.Keys) > 0 && !slices.Contains(c.File.Trust.Keys, name) {
			continue
		}
		p := filepath.Join(c.TrustedDir(), e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		k, err := sign.ParsePublicKey(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		keys = append(keys, NamedKey{Name: name, Key: k})
	}
	for _, want := range c.File.Trust.Keys {
		if !slices.ContainsFunc(keys, func(k NamedKey) bool { return k.Name == want }) {
			return nil, fmt.Errorf("%s: [trust] keys names %q, but %s does not exist; add it with 'ukernel trust add KEY.pub --name %s'",
				filepath.Join(c.Dir, "config.toml"), want, filepath.Join(c.TrustedDir(), want+".pub"), want)
		}
	}
	return keys, nil
}

// RequiresSignature reports whether the policy asks for a trusted signature on ref (the
// reference as typed, without a digest or tag: host/repo, oci-layout:DIR...), and which glob
// asked for it.
func (c *Config) RequiresSignature(ref string) (bool, string) {
	for _, g := range c.File.Trust.Require {
		if globMatch(g, ref) {
			return true, g
		}
	}
	return false, ""
}

// globMatch matches like path.Match, except that * also crosses '/'.
func globMatch(glob, s string) bool {
	ok, _ := path.Match(strings.ReplaceAll(glob, "/", "\x00"), strings.ReplaceAll(s, "/", "\x00"))
	return ok
}
