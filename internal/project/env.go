package project

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
)

// Env is what the user asked for: the base from ukernel.toml ([env] base, its one home) and
// the packages from env/ukernel.env. The lock pins its closure.
type Env struct {
	Base string `toml:"-"`
	// Kernel is the Debian package of the guest kernel (a metapackage is followed to the
	// versioned image package).
	Kernel string   `toml:"kernel,omitempty"`
	System []string `toml:"system"`
	Python []string `toml:"python"`
}

// envFile is env/ukernel.env's schema. Base is read only to check what older versions of
// ukernel wrote there (the base lived in both files, and they could disagree).
type envFile struct {
	Base   string   `toml:"base"`
	Kernel string   `toml:"kernel,omitempty"`
	System []string `toml:"system"`
	Python []string `toml:"python"`
}

// DefaultKernel is Debian's cloud kernel, which boots fast on microvm.
const DefaultKernel = "linux-image-cloud-amd64"

var (
	debNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$`)
	pyReqRe   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?\s*((==|>=|<=|~=|!=|<|>)\s*[A-Za-z0-9.*+!-]+\s*,?\s*)*$`)
)

// LoadEnv reads and validates the request of the project in dir: its base from ukernel.toml and
// its packages from env/ukernel.env.
func LoadEnv(dir string) (*Env, error) {
	cfgData, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s not found: run 'ukernel init' to create a project (or pass -C DIR)", filepath.Join(dir, ConfigFile))
		}
		return nil, err
	}
	cfg, err := Parse(ConfigFile, cfgData)
	if err != nil {
		return nil, err
	}
	p := filepath.Join(dir, EnvFile)
	data, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s not found: run 'ukernel init' to create a project", p)
		}
		return nil, err
	}
	e, err := ParseEnv(EnvFile, data, cfg.Env.Base)
	var be *BaseMismatchError
	if errors.As(err, &be) {
		be.ConfigLine = lineOf(cfgData, "env.base")
	}
	return e, err
}

// ParseEnv decodes and validates env file content; base is the project's (ukernel.toml's).
func ParseEnv(name string, data []byte, base string) (*Env, error) {
	var f envFile
	if err := decodeStrict(name, data, &f); err != nil {
		return nil, err
	}
	if f.Base != "" && f.Base != base {
		return nil, &BaseMismatchError{File: name, Line: lineOf(data, "base"), Base: f.Base, ConfigBase: base}
	}
	e := Env{Base: base, Kernel: f.Kernel, System: f.System, Python: f.Python}
	if e.Kernel == "" {
		e.Kernel = DefaultKernel
	}
	if err := e.Validate(name, data); err != nil {
		return nil, err
	}
	return &e, nil
}

// BaseMismatchError is an env file, written by an older ukernel, whose base is not the one in
// ukernel.toml. The line is then dead: ukernel.toml's base is the one locked and built.
type BaseMismatchError struct {
	File       string
	Line       int
	Base       string
	ConfigBase string
	ConfigLine int
}

func (e *BaseMismatchError) Error() string {
	cfg := ConfigFile
	if e.ConfigLine > 0 {
		cfg += ":" + strconv.Itoa(e.ConfigLine)
	}
	return fmt.Sprintf("%s:%d: base = %q, but %s sets [env] base = %q: the base is set in %s only; delete this line from %s, and set the base you want in %s",
		e.File, e.Line, e.Base, cfg, e.ConfigBase, ConfigFile, e.File, ConfigFile)
}

// ValidSystemEntry reports whether s is a Debian package as env/ukernel.env lists one: NAME or
// NAME=VERSION, the name in lower case.
func ValidSystemEntry(s string) bool { return debNameRe.MatchString(s) }

// Validate checks the requested environment.
func (e *Env) Validate(file string, data []byte) error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, &Error{File: file, Line: lineOf(data, key), Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if !debNameRe.MatchString(e.Kernel) {
		add("kernel", "%q is not a Debian package name", e.Kernel)
	}
	seen := map[string]bool{}
	for _, s := range e.System {
		if !debNameRe.MatchString(s) {
			add("system", "%q is not a Debian package name (NAME or NAME=VERSION)", s)
		}
		n, _, _ := strings.Cut(s, "=")
		if seen[n] {
			add("system", "%q is listed twice", n)
		}
		seen[n] = true
	}
	seen = map[string]bool{}
	for _, r := range e.Python {
		if !pyReqRe.MatchString(r) {
			add("python", "%q is not a requirement like requests==2.32.3", r)
		}
		n := strings.ToLower(PythonReqName(r))
		if seen[n] {
			add("python", "%q is listed twice", n)
		}
		seen[n] = true
	}
	return errors.Join(errs...)
}

// PythonReqName returns the project name of a requirement ("requests" of "requests==2.32").
func PythonReqName(req string) string {
	i := strings.IndexAny(req, "[=<>!~ ")
	if i < 0 {
		return req
	}
	return req[:i]
}

// Save writes the env file atomically, sorted.
func (e *Env) Save(dir string) error {
	sort.Strings(e.System)
	sort.Slice(e.Python, func(i, j int) bool {
		return strings.ToLower(e.Python[i]) < strings.ToLower(e.Python[j])
	})
	var b strings.Builder
	b.WriteString("# The requested environment. `ukernel env add/remove` edit this file;\n")
	b.WriteString("# `ukernel env lock` pins its full closure in env/ukernel.lock. The base is\n")
	b.WriteString("# ukernel.toml's [env] base.\n")
	if e.Kernel != "" && e.Kernel != DefaultKernel {
		fmt.Fprintf(&b, "kernel = %q\n", e.Kernel)
	}
	fmt.Fprintf(&b, "system = %s\n", tomlList(e.System))
	fmt.Fprintf(&b, "python = %s\n", tomlList(e.Python))
	return atomicfile.WriteFile(filepath.Join(dir, EnvFile), []byte(b.String()), 0o644)
}

func tomlList(items []string) string {
	if len(items) == 0 {
		return "[]"
	}
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// Base is a named starting environment: a Debian release and the runtime packages of an adapter.
type Base struct {
	Name          string
	Codename      string // Debian release codename
	Adapter       string // python, shell, go
	Runtime       string // adapter runtime name, e.g. python-3.11
	Packages      []string
	PythonVersion string // "3.11" for python bases
}

var bases = []Base{
	{Name: "python-3.11", Codename: "bookworm", Adapter: "python", Runtime: "python-3.11", Packages: []string{"python3.11"}, PythonVersion: "3.11"},
	{Name: "python-3.13", Codename: "trixie", Adapter: "python", Runtime: "python-3.13", Packages: []string{"python3.13"}, PythonVersion: "3.13"},
	{Name: "node-18", Codename: "bookworm", Adapter: "node", Runtime: "node-18", Packages: []string{"nodejs"}},
	{Name: "debian-12", Codename: "bookworm", Adapter: "shell", Runtime: "debian-12", Packages: []string{"dash", "coreutils"}},
	{Name: "debian-13", Codename: "trixie", Adapter: "shell", Runtime: "debian-13", Packages: []string{"dash", "coreutils"}},
}

// BaseNames lists the known bases.
func BaseNames() []string {
	names := make([]string, len(bases))
	for i, b := range bases {
		names[i] = b.Name
	}
	return names
}

// LookupBase returns a known base by name.
func LookupBase(name string) (Base, error) {
	for _, b := range bases {
		if b.Name == name {
			return b, nil
		}
	}
	return Base{}, fmt.Errorf("unknown base %q; known bases: %s", name, strings.Join(BaseNames(), ", "))
}
