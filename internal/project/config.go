// Package project defines a ukernel project on disk: the ukernel.toml schema, the requested
// environment (env/ukernel.env), their strict decoding and validation, and the known bases.
// Every other package reads a project through here; nothing else parses these files.
package project

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	toml "github.com/pelletier/go-toml/v2"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// Well-known paths inside a project directory.
const (
	ConfigFile = "ukernel.toml"
	EnvFile    = "env/ukernel.env"
	LockFile   = "env/ukernel.lock"
	SrcDir     = "src"
	BuildDir   = "build"
	DistDir    = "dist"
	LogsDir    = "logs"
	StateDir   = ".ukernel"
)

// Config is ukernel.toml.
type Config struct {
	Project  ProjectSection     `toml:"project"`
	Env      EnvSection         `toml:"env"`
	Build    BuildSection       `toml:"build"`
	Run      RunSection         `toml:"run"`
	Services map[string]Service `toml:"services,omitempty"`
	Health   map[string]Health  `toml:"health,omitempty"`
	Data     DataSection        `toml:"data"`
	Logs     LogsSection        `toml:"logs,omitempty"`
	Roles    map[string]Role    `toml:"roles,omitempty"`

	// SelectedRole is the role WithRole applied ("": none). Not a key of the file; it is part
	// of the config's JSON, which the build's cache key hashes.
	SelectedRole string       `toml:"-" json:"selected_role,omitempty"`
	Debug        DebugSection `toml:"debug,omitempty"`
	// Cache is where the team's shared build cache is (not part of the image: kept out of the
	// build key's JSON).
	Cache CacheSection `toml:"cache,omitempty" json:"-"`

	// file and src are the name and bytes the config was parsed from, so that checks made
	// later (the entry file exists) can give the line of the key at fault.
	file string
	src  []byte
}

// ProjectSection names the project and its entry program.
type ProjectSection struct {
	Name     string `toml:"name"`
	Language string `toml:"language"`
	// Entry is the main program, relative to the project ("src/main.py"); empty for
	// service-only projects.
	Entry string `toml:"entry,omitempty"`
	// User runs the entry; empty means an unprivileged user made for the project
	// ("root" must be asked for).
	User string `toml:"user,omitempty"`
	// Secrets names the run-time secrets (run --secret) the entry may read in /run/secrets.
	Secrets []string `toml:"secrets,omitempty"`
}

// EnvSection selects the base environment and where its packages come from.
type EnvSection struct {
	Base string `toml:"base"`
	// Mirror overrides the Debian mirror (else UKERNEL_DEBIAN_MIRROR, else the host's apt sources).
	Mirror string `toml:"mirror,omitempty"`
}

// BuildSection selects the language adapter.
type BuildSection struct {
	Adapter string `toml:"adapter"`
}

// RunSection holds the default run settings; `run` flags override them.
type RunSection struct {
	VCPU     int      `toml:"vcpu"`
	MemoryMB int      `toml:"memory_mb"`
	Net      string   `toml:"net"`
	Publish  []string `toml:"publish,omitempty"`
	// Env is the workload's default environment; `run -e` overrides it.
	Env map[string]string `toml:"env,omitempty"`
}

// Service is a supervised process in the guest.
type Service struct {
	Command Command           `toml:"command"`
	Restart string            `toml:"restart,omitempty"`
	Env     map[string]string `toml:"env,omitempty"`
	User    string            `toml:"user,omitempty"`
	Workdir string            `toml:"workdir,omitempty"`
	// Secrets names the run-time secrets this service may read in /run/secrets.
	Secrets []string `toml:"secrets,omitempty"`
}

// Health is a health check of a declared service.
type Health struct {
	HTTP         string  `toml:"http,omitempty"`
	Cmd          Command `toml:"cmd,omitempty"`
	IntervalS    int     `toml:"interval_s,omitempty"`
	TimeoutS     int     `toml:"timeout_s,omitempty"`
	Retries      int     `toml:"retries,omitempty"`
	StartPeriodS int     `toml:"start_period_s,omitempty"`
}

// CacheSection names the shared build cache (docs/CONFIG.md). A project only reads from it:
// who may write is the user's setting, not the repository's.
type CacheSection struct {
	Remote string `toml:"remote,omitempty"` // host[:port]/repository
}

// DebugSection opens a release image to inspection.
type DebugSection struct {
	// Shell allows `ukernel exec` and `ukernel shell` into a --release or pack --readonly
	// image (development images always allow them).
	Shell bool `toml:"shell,omitempty"`
}

// LogsSection bounds each log of a run on the host (its output log and its console), as
// Docker's json-file driver's max-size and max-file do: a log that reaches MaxSize moves to
// NAME.1, and MaxFiles files are kept, the current one included. Empty: 10m and 3.
type LogsSection struct {
	MaxSize  string `toml:"max_size,omitempty"`  // a size: 10m, 512k, 1g (bytes without a unit)
	MaxFiles int    `toml:"max_files,omitempty"` // 1-100
}

// MaxSizeBytes is MaxSize in bytes (0 when unset).
func (l LogsSection) MaxSizeBytes() (int64, error) {
	if l.MaxSize == "" {
		return 0, nil
	}
	return ParseSize(l.MaxSize)
}

// ParseSize reads a size such as 10m, 512k, 1g or 4096 (bytes), in powers of 1024.
func ParseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k':
			mult, t = 1<<10, t[:n-1]
		case 'm':
			mult, t = 1<<20, t[:n-1]
		case 'g':
			mult, t = 1<<30, t[:n-1]
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v <= 0 || v > (1<<40)/mult {
		return 0, fmt.Errorf("%q is not a size; expected a positive number with k, m or g (10m, 512k)", s)
	}
	return v * mult, nil
}

// DataSection sizes the persistent data volume; 0 means none.
type DataSection struct {
	DiskMB int `toml:"disk_mb"`
}

// Command is an argv written either as a TOML array or as one string split like a shell would
// (quotes group words; no expansion happens, so "$PORT" stays literal for the program).
type Command []string

// UnmarshalTOML accepts a string or an array of strings.
func (c *Command) UnmarshalText(b []byte) error {
	words, err := SplitCommand(string(b))
	if err != nil {
		return err
	}
	*c = words
	return nil
}

// MarshalText writes a command as one string.
func (c Command) MarshalText() ([]byte, error) { return []byte(JoinCommand(c)), nil }

// SplitCommand splits s into words with POSIX-shell quoting rules and no expansion.
func SplitCommand(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' in command %q", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case ch == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(`"\$`+"`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated \" in command %q", s)
			}
			inWord = true
		case ch == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case ch == ' ' || ch == '\t' || ch == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// JoinCommand quotes words so that SplitCommand gives them back.
func JoinCommand(words []string) string {
	out := make([]string, len(words))
	for i, w := range words {
		if w != "" && strings.IndexFunc(w, func(r rune) bool { return !isSafeShellRune(r) }) < 0 {
			out[i] = w
		} else {
			out[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}

func isSafeShellRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@%+", r)
}

// Defaults applied to fields left out of ukernel.toml.
const (
	DefaultVCPU     = 1
	DefaultMemoryMB = 256
	DefaultNet      = string(abi.NetUser)
)

// EntryService is the name under which health checks and logs refer to the entry process.
const EntryService = "main"

// Restart policies.
var restartPolicies = []string{"no", "on-failure", "always"}

// Error is a problem in a project file, with its position when known.
type Error struct {
	File string
	Line int // 0 when unknown
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads and validates dir/ukernel.toml.
func Load(dir string) (*Config, error) {
	p := filepath.Join(dir, ConfigFile)
	data, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s not found: run 'ukernel init' to create a project (or pass -C DIR)", p)
		}
		return nil, err
	}
	return Parse(ConfigFile, data)
}

// Parse decodes and validates ukernel.toml content; name is used in error messages.
func Parse(name string, data []byte) (*Config, error) {
	var c Config
	if err := decodeStrict(name, data, &c); err != nil {
		return nil, err
	}
	c.applyDefaults(definedKeys(data))
	if err := c.Validate(name, data); err != nil {
		return nil, err
	}
	c.file, c.src = name, data
	return &c, nil
}

// Errorf returns a problem with key, at the key's line in the file the config was parsed from
// (no line for a config made in code).
func (c *Config) Errorf(key, format string, args ...any) *Error {
	file := c.file
	if file == "" {
		file = ConfigFile
	}
	return &Error{File: file, Line: lineOf(c.src, key), Key: key, Msg: fmt.Sprintf(format, args...)}
}

// definedKeys returns the dotted keys the file sets ("run.vcpu", "health.web.retries"). The
// data has already decoded into a Config, so it is valid TOML.
func definedKeys(data []byte) map[string]bool {
	var m map[string]any
	if err := toml.Unmarshal(data, &m); err != nil {
		return nil
	}
	keys := map[string]bool{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			keys[prefix+k] = true
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
			}
		}
	}
	walk("", m)
	return keys
}

// applyDefaults fills in what the file leaves out. A key the file sets keeps its value, zero
// included, so that `vcpu = 0` is reported as out of range rather than silently replaced.
func (c *Config) applyDefaults(defined map[string]bool) {
	if c.Run.VCPU == 0 && !defined["run.vcpu"] {
		c.Run.VCPU = DefaultVCPU
	}
	if c.Run.MemoryMB == 0 && !defined["run.memory_mb"] {
		c.Run.MemoryMB = DefaultMemoryMB
	}
	if c.Run.Net == "" {
		c.Run.Net = DefaultNet
	}
	if c.Build.Adapter == "" {
		c.Build.Adapter = c.Project.Language // each language builds with its own adapter
	}
	for name, s := range c.Services {
		if s.Restart == "" {
			s.Restart = "no"
			c.Services[name] = s
		}
	}
	for name, h := range c.Health {
		key := "health." + name + "."
		if h.IntervalS == 0 && !defined[key+"interval_s"] {
			h.IntervalS = 5
		}
		if h.TimeoutS == 0 && !defined[key+"timeout_s"] {
			h.TimeoutS = 3
		}
		if h.Retries == 0 && !defined[key+"retries"] {
			h.Retries = 3
		}
		c.Health[name] = h
	}
}

var (
	nameRe    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	svcNameRe = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	envKeyRe  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	secretRe  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,63}$`)
)

// ValidateEnvName checks an environment variable's name (ukernel.toml's env tables, run -e and
// --env-file): a shell-style name, which also keeps it a single env-file line.
func ValidateEnvName(n string) error {
	if !envKeyRe.MatchString(n) {
		return fmt.Errorf("%q is not a valid environment variable name (letters, digits and '_', not starting with a digit)", n)
	}
	return nil
}

// ValidateSecretName checks a secret's name: it becomes a file name in /run/secrets.
func ValidateSecretName(n string) error {
	if !secretRe.MatchString(n) {
		return fmt.Errorf("invalid secret name %q: use up to 64 letters, digits, '_', '.' and '-', starting with a letter or '_'", n)
	}
	return nil
}

// validateSecrets reports bad or repeated names in a secrets list.
func validateSecrets(names []string) error {
	seen := map[string]bool{}
	for _, n := range names {
		if err := ValidateSecretName(n); err != nil {
			return err
		}
		if seen[n] {
			return fmt.Errorf("secret %q is listed twice", n)
		}
		seen[n] = true
	}
	return nil
}

// ValidateName checks that a project name is usable as a host name and a file name.
func ValidateName(n string) error {
	if !nameRe.MatchString(n) {
		return fmt.Errorf("invalid project name %q: use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit (it becomes the guest's host name and the image's file name)", n)
	}
	return nil
}

// Validate checks the decoded config; data (the file's bytes) is used to find line numbers.
func (c *Config) Validate(file string, data []byte) error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, &Error{File: file, Line: lineOf(data, key), Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if c.Project.Name == "" {
		add("project.name", "missing: set name = \"my-app\" under [project]")
	} else if err := ValidateName(c.Project.Name); err != nil {
		add("project.name", "%v", err)
	}
	if _, ok := LookupLanguage(c.Project.Language); !ok {
		add("project.language", "%q is not supported; expected one of %s", c.Project.Language, strings.Join(Languages(), ", "))
	}
	if c.Project.Entry != "" {
		if err := ValidateEntry(c.Project.Entry); err != nil {
			add("project.entry", "%v", err)
		}
	} else if len(c.Services) == 0 {
		add("project.entry", "missing: a project needs an entry (e.g. entry = \"src/main.py\") or at least one [services.NAME]")
	}
	if err := validateSecrets(c.Project.Secrets); err != nil {
		add("project.secrets", "%v", err)
	}
	if c.Env.Base == "" {
		add("env.base", "missing: set base = \"python-3.11\" (known: %s)", strings.Join(BaseNames(), ", "))
	} else if _, err := LookupBase(c.Env.Base); err != nil {
		add("env.base", "%v", err)
	}
	if c.Env.Mirror != "" {
		if u, err := url.Parse(c.Env.Mirror); err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file") {
			add("env.mirror", "%q is not an http(s):// or file:// URL", c.Env.Mirror)
		}
	}
	if _, ok := LookupLanguage(c.Build.Adapter); !ok {
		add("build.adapter", "%q is not supported; expected one of %s", c.Build.Adapter, strings.Join(Languages(), ", "))
	}
	if err := CheckVCPU(c.Run.VCPU); err != nil {
		add("run.vcpu", "%v", err)
	}
	if err := CheckMemoryMB(c.Run.MemoryMB); err != nil {
		add("run.memory_mb", "%v", err)
	}
	if _, err := abi.ParseNet(c.Run.Net); err != nil {
		add("run.net", "%v", err)
	}
	for k := range c.Run.Env {
		if !envKeyRe.MatchString(k) {
			add("run.env", "%q is not a valid environment variable name", k)
		}
	}
	for _, p := range c.Run.Publish {
		if _, _, err := ParsePublish(p); err != nil {
			add("run.publish", "%v", err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Services)) {
		s := c.Services[name]
		key := "services." + name
		if name == EntryService {
			add(key, "the service name %q is reserved for the entry", name)
		} else if !svcNameRe.MatchString(name) {
			add(key, "invalid service name %q: use lowercase letters, digits, '-' and '_', starting with a letter", name)
		}
		if len(s.Command) == 0 {
			add(key+".command", "missing: the program to run, e.g. command = \"python3 /app/main.py\"")
		}
		if !contains(restartPolicies, s.Restart) {
			add(key+".restart", "%q is not a restart policy; expected one of %s", s.Restart, strings.Join(restartPolicies, ", "))
		}
		for k := range s.Env {
			if !envKeyRe.MatchString(k) {
				add(key+".env", "%q is not a valid environment variable name", k)
			}
		}
		if err := validateSecrets(s.Secrets); err != nil {
			add(key+".secrets", "%v", err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Health)) {
		h := c.Health[name]
		key := "health." + name
		if _, ok := c.Services[name]; !ok && !(name == EntryService && c.Project.Entry != "") {
			add(key, "no service %q is declared; a health check names a [services.%s] or %q (the entry)", name, name, EntryService)
		}
		if (h.HTTP == "") == (len(h.Cmd) == 0) {
			add(key, "set exactly one of http = \"http://127.0.0.1:PORT/PATH\" or cmd = \"...\"")
		}
		if h.HTTP != "" {
			if u, err := url.Parse(h.HTTP); err != nil || u.Scheme != "http" || u.Host == "" {
				add(key+".http", "%q is not an http:// URL", h.HTTP)
			}
		}
		if h.IntervalS < 1 || h.IntervalS > 3600 {
			add(key+".interval_s", "%d is out of range; expected 1-3600", h.IntervalS)
		}
		if h.TimeoutS < 1 || h.TimeoutS > 3600 {
			add(key+".timeout_s", "%d is out of range; expected 1-3600", h.TimeoutS)
		}
		if h.Retries < 1 || h.Retries > 100 {
			add(key+".retries", "%d is out of range; expected 1-100", h.Retries)
		}
		if h.StartPeriodS < 0 || h.StartPeriodS > 3600 {
			add(key+".start_period_s", "%d is out of range; expected 0-3600", h.StartPeriodS)
		}
	}
	if n, err := c.Logs.MaxSizeBytes(); err != nil {
		add("logs.max_size", "%v", err)
	} else if n != 0 && n < 4<<10 {
		add("logs.max_size", "%q is below the smallest size, 4k", c.Logs.MaxSize)
	}
	if c.Logs.MaxFiles < 0 || c.Logs.MaxFiles > 100 {
		add("logs.max_files", "%d is out of range; expected 1-100", c.Logs.MaxFiles)
	}
	if c.Data.DiskMB < 0 || c.Data.DiskMB > MaxDataMB {
		add("data.disk_mb", "%d is out of range; expected 0 (none) to %d", c.Data.DiskMB, MaxDataMB)
	}
	c.validateRoles(add)
	return errors.Join(errs...)
}

// ValidateEntry checks that an entry is a relative path inside src/.
func ValidateEntry(entry string) error {
	if strings.HasPrefix(entry, "/") || strings.Contains(entry, "\\") {
		return fmt.Errorf("%q must be a relative path inside src/ (e.g. src/main.py)", entry)
	}
	for _, part := range strings.Split(entry, "/") {
		if part == ".." {
			return fmt.Errorf("%q must not contain '..': the entry has to stay inside src/", entry)
		}
	}
	clean := path.Clean(entry)
	if !strings.HasPrefix(clean, SrcDir+"/") || clean == SrcDir+"/" {
		return fmt.Errorf("%q must be a file inside src/ (e.g. src/main.py)", entry)
	}
	return nil
}

// ParsePublish parses HOST:GUEST port pairs (both 1-65535).
func ParsePublish(p string) (host, guest int, err error) {
	h, g, ok := strings.Cut(p, ":")
	if !ok {
		return 0, 0, fmt.Errorf("%q: expected HOST:GUEST ports, e.g. 8080:8080", p)
	}
	if host, err = parsePort(h); err == nil {
		guest, err = parsePort(g)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("%q: %v", p, err)
	}
	return host, guest, nil
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q out of range; expected 1-65535", s)
	}
	return n, nil
}

// lineOf finds the line where a dotted key is set, for messages about valid TOML with bad values.
func lineOf(data []byte, key string) int {
	parts := strings.Split(key, ".")
	leaf := parts[len(parts)-1]
	table := strings.Join(parts[:len(parts)-1], ".")
	cur := ""
	tableLine := 0
	for i, line := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "[") {
			cur = strings.Trim(t, "[] ")
			if cur == key {
				tableLine = i + 1
			}
			continue
		}
		if k, _, ok := strings.Cut(t, "="); ok && cur == table && strings.Trim(strings.TrimSpace(k), `"`) == leaf {
			return i + 1
		}
	}
	return tableLine
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Marshal encodes a config as TOML.
func (c *Config) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := toml.NewEncoder(&buf)
	enc.SetIndentTables(false)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// EntryInGuest maps the entry to its guest path: src/main.py -> /app/main.py.
func (c *Config) EntryInGuest() string {
	if c.Project.Entry == "" {
		return ""
	}
	return "/app/" + strings.TrimPrefix(path.Clean(c.Project.Entry), SrcDir+"/")
}

// The ranges of [run] vcpu and memory_mb and of [data] disk_mb; run's --vcpu, --memory and
// --data-mb (and a template's vcpu, memory_mb and data_mb) take the same.
const (
	MinVCPU, MaxVCPU         = 1, 32
	MinMemoryMB, MaxMemoryMB = 64, 65536
	MaxDataMB                = 1 << 20
)

// CheckVCPU says why n virtual CPUs are out of range, if they are.
func CheckVCPU(n int) error {
	if n < MinVCPU || n > MaxVCPU {
		return fmt.Errorf("%d is out of range; expected %d-%d", n, MinVCPU, MaxVCPU)
	}
	return nil
}

// CheckMemoryMB says why n MiB of guest memory are out of range, if they are.
func CheckMemoryMB(n int) error {
	if n < MinMemoryMB || n > MaxMemoryMB {
		return fmt.Errorf("%d is out of range; expected %d-%d (MiB)", n, MinMemoryMB, MaxMemoryMB)
	}
	return nil
}

// CheckDataMB says why a data volume of n MiB is out of range, if it is (0: none, or the
// image's).
func CheckDataMB(n int) error {
	if n < 0 || n > MaxDataMB {
		return fmt.Errorf("%d is out of range; expected 0 to %d (MiB)", n, MaxDataMB)
	}
	return nil
}
