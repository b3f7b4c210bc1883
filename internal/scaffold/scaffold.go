package scaffold

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/project"
)

// Options is what `ukernel init` asks for.
type Options struct {
	Name string
	Lang string // resolved with ResolveLang
	Plan Plan   // validated with Plan.Validate(Lang)
	// Prompt, when set, is recorded in ukernel-prompt.json.
	Prompt *PromptRecord
}

// PromptFile records how a prompt became a plan.
const PromptFile = "ukernel-prompt.json"

// PromptRecord is the content of ukernel-prompt.json. It has no timestamp so that the same
// prompt and answer give the same file.
type PromptRecord struct {
	SchemaVersion int      `json:"schema_version"`
	Prompt        string   `json:"prompt"`
	Mode          string   `json:"mode"` // heuristic or llm
	Provider      string   `json:"provider,omitempty"`
	Model         string   `json:"model,omitempty"`
	Summary       string   `json:"summary"`
	Notes         []string `json:"notes"`
	Plan          Plan     `json:"plan"`
}

// File is one generated file, relative to the project directory.
type File struct {
	Path string
	Data []byte
	Mode fs.FileMode
}

// Scaffold is a rendered project, checked and ready to write.
type Scaffold struct {
	Config *project.Config
	Env    *project.Env
	Files  []File // in the order they are reported; env/ukernel.env is written by Env.Save
	// Notes are remarks for the user (features recorded but not generated).
	Notes []string
}

// FlaskRequirements are the flask preset's Python requirements: Flask, and waitress to serve it
// (a production WSGI server in pure Python, one process, no C extension to build). The build
// locks them, with their dependencies, by hash as `ukernel env add` does.
var FlaskRequirements = []string{"flask==3.1.3", "waitress==3.0.2"}

const postgresHealthCmd = "/usr/lib/postgresql/15/bin/pg_isready -h 127.0.0.1 -p 5432"

// Render builds the project for validated options. It writes nothing; the config it renders
// is decoded again with project.Parse so that init never writes a file ukernel cannot read.
func Render(o Options) (*Scaffold, error) {
	if err := project.ValidateName(o.Name); err != nil {
		return nil, err
	}
	p := o.Plan
	lang, ok := project.LookupLanguage(o.Lang)
	src, hasProgram := programs[o.Lang][p.Preset]
	if !ok || !hasProgram {
		return nil, fmt.Errorf("the %s preset has no %s version; choose another --lang", p.Preset, o.Lang)
	}
	fill := strings.NewReplacer("@NAME@", o.Name, "@PORT@", strconv.Itoa(p.Port),
		"@HEALTH@", p.HealthPath, "@INTERVAL@", strconv.Itoa(p.IntervalS))

	entry := project.SrcDir + "/" + p.Entrypoint
	cfg := &project.Config{
		Project: project.ProjectSection{Name: o.Name, Language: o.Lang, Entry: entry},
		Env:     project.EnvSection{Base: lang.Base},
		Build:   project.BuildSection{Adapter: o.Lang},
		Run:     project.RunSection{VCPU: project.DefaultVCPU, MemoryMB: project.DefaultMemoryMB, Net: project.DefaultNet, Env: map[string]string{}},
	}
	env := &project.Env{Base: cfg.Env.Base, Kernel: project.DefaultKernel, System: []string{}, Python: []string{}}
	s := &Scaffold{Config: cfg, Env: env}
	mode := fs.FileMode(0o644)
	if lang.Executable {
		mode = 0o755
	}
	s.Files = append(s.Files, File{Path: entry, Data: []byte(fill.Replace(src)), Mode: mode})

	// An interpreter's start under TCG on a busy host can outlast three probes 5 s apart: without a
	// start period a healthy guest would be judged unhealthy (and a deploy rolled back) before it listens.
	httpHealth := &project.Health{HTTP: fmt.Sprintf("http://127.0.0.1:%d%s", p.Port, p.HealthPath), IntervalS: 5, TimeoutS: 3, Retries: 3, StartPeriodS: 60}
	switch p.Preset {
	case "minimal":
		// Nothing in it talks to a network, and a guest without one boots measurably faster
		// (no NIC driver, no interface to configure). `--net user` or net = "user" adds it.
		cfg.Run.Net = string(abi.NetNone)
	case "worker":
		cfg.Run.Env["WORKER_INTERVAL_S"] = strconv.Itoa(p.IntervalS)
	case "http", "python", "flask":
		cfg.Run.Env["PORT"] = strconv.Itoa(p.Port)
		cfg.Run.Publish = []string{fmt.Sprintf("%d:%d", p.Port, p.Port)}
		cfg.Health = map[string]project.Health{project.EntryService: *httpHealth}
	case "postgres":
		cfg.Project.User = "postgres"
		cfg.Run.MemoryMB = 512
		cfg.Run.Publish = []string{fmt.Sprintf("%d:%d", PostgresPort, PostgresPort)}
		cfg.Data.DiskMB = 512
		cfg.Health = map[string]project.Health{project.EntryService: {Cmd: project.Command(strings.Fields(postgresHealthCmd)), IntervalS: 5, TimeoutS: 3, Retries: 3, StartPeriodS: 120}}
		env.System = append(env.System, "postgresql-15")
	}
	if o.Lang == "python" {
		cfg.Run.Env["PYTHONUNBUFFERED"] = "1"
	}
	if p.Preset == "flask" {
		env.Python = append(env.Python, FlaskRequirements...)
	}
	if o.Lang == "go" {
		s.Files = append(s.Files, File{Path: project.SrcDir + "/go.mod", Data: []byte("module " + o.Name + "\n\ngo 1.22\n"), Mode: 0o644})
	}
	if o.Lang == "shell" && p.Preset == "http" {
		env.System = append(env.System, "busybox")
		s.Files = append(s.Files, wwwFiles(o.Name, p.HealthPath)...)
	}

	// Secondary features. A backing database is added as a service; other features are
	// recorded in the plan and named in a note, since one entry program serves one preset.
	if p.Has(FeaturePostgres) && p.Preset != "postgres" {
		cfg.Services = map[string]project.Service{"db": {
			Command: project.Command{"sh", "/app/postgres.sh"}, Restart: "on-failure", User: "postgres",
		}}
		if cfg.Health == nil {
			cfg.Health = map[string]project.Health{}
		}
		cfg.Health["db"] = project.Health{Cmd: project.Command(strings.Fields(postgresHealthCmd)), IntervalS: 5, TimeoutS: 3, Retries: 3, StartPeriodS: 120}
		cfg.Run.Env["DATABASE_URL"] = fmt.Sprintf("postgresql://postgres@127.0.0.1:%d/postgres", PostgresPort)
		cfg.Run.MemoryMB = 512
		cfg.Data.DiskMB = 512
		env.System = append(env.System, "postgresql-15")
		// The script needs a shell and mkdir, chmod, cat, which a Python or Node base's
		// runtime does not hold.
		base, _ := project.LookupBase(cfg.Env.Base)
		for _, pkg := range []string{"dash", "coreutils"} {
			if !slices.Contains(base.Packages, pkg) {
				env.System = append(env.System, pkg)
			}
		}
		s.Files = append(s.Files, File{Path: project.SrcDir + "/postgres.sh", Data: []byte(fill.Replace(postgresScript)), Mode: 0o755})
	}
	for _, f := range p.Features {
		if f != featureOf(p.Preset) && f != FeaturePostgres {
			s.Notes = append(s.Notes, fmt.Sprintf("feature %q is recorded in the plan but the %s preset's entry does not implement it; add a [services.NAME] for it", f, p.Preset))
		}
	}
	if len(cfg.Run.Env) == 0 {
		cfg.Run.Env = nil
	}

	toml, err := cfg.Marshal()
	if err != nil {
		return nil, fmt.Errorf("encode %s: %v", project.ConfigFile, err)
	}
	toml = append([]byte(configHeader), toml...)
	parsed, err := project.Parse(project.ConfigFile, toml)
	if err != nil {
		return nil, fmt.Errorf("generated %s does not validate (a bug in the %s preset): %w", project.ConfigFile, p.Preset, err)
	}
	s.Config = parsed
	if err := env.Validate(project.EnvFile, nil); err != nil {
		return nil, fmt.Errorf("generated %s does not validate: %w", project.EnvFile, err)
	}

	s.Files = append([]File{{Path: project.ConfigFile, Data: toml, Mode: 0o644}}, s.Files...)
	s.Files = append(s.Files,
		File{Path: project.EnvFile},
		File{Path: ".gitignore", Data: []byte(gitignore), Mode: 0o644},
		File{Path: "README.md", Data: []byte(readme(o, s)), Mode: 0o644})
	if o.Prompt != nil {
		rec := *o.Prompt
		rec.SchemaVersion = 1
		rec.Plan = p
		if rec.Notes == nil {
			rec.Notes = []string{}
		}
		data, err := json.MarshalIndent(rec, "", "  ")
		if err != nil {
			return nil, err
		}
		s.Files = append(s.Files, File{Path: PromptFile, Data: append(data, '\n'), Mode: 0o644})
	}
	return s, nil
}

const configHeader = "# ukernel project configuration; see 'ukernel init --help'.\n" +
	"# The entry is the main process: when it exits the VM powers off and 'ukernel run' exits\n" +
	"# with its code.\n\n"

// gitignore covers what ukernel writes in a project: its outputs, and a build's staging tree
// (.build-tmp-*, left only by a killed build until the next one removes it).
const gitignore = "build/\ndist/\nlogs/\n.ukernel/\n.build-tmp-*/\n"

// wwwFiles are the documents busybox httpd serves for the shell http preset: an index and the
// health path (a directory's index.html when the path ends in '/').
func wwwFiles(name, health string) []File {
	index := fmt.Sprintf("<!doctype html>\n<title>%s</title>\n<p>Hello from %s!</p>\n", name, name)
	files := []File{{Path: project.SrcDir + "/www/index.html", Data: []byte(index), Mode: 0o644}}
	if health != "/" {
		p := strings.TrimPrefix(health, "/")
		if strings.HasSuffix(p, "/") {
			p += "index.html"
		}
		files = append(files, File{Path: path.Join(project.SrcDir, "www", p), Data: []byte("ok\n"), Mode: 0o644})
	}
	return files
}

// Paths lists the files in report order.
func (s *Scaffold) Paths() []string {
	out := make([]string, len(s.Files))
	for i, f := range s.Files {
		out[i] = f.Path
	}
	return out
}

// ExistsError lists files that would be overwritten.
type ExistsError struct{ Paths []string }

func (e *ExistsError) Error() string {
	return fmt.Sprintf("%s already exist%s; nothing was written (use --force to overwrite)",
		strings.Join(e.Paths, ", "), map[bool]string{true: "s", false: ""}[len(e.Paths) == 1])
}

// Check reports, without writing, whether Write would fail: files that exist (unless force),
// and paths blocked by a non-directory parent or a directory in the way.
func (s *Scaffold) Check(dir string, force bool) error {
	var exists []string
	for _, f := range s.Files {
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			if fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(d))); err == nil && !fi.IsDir() {
				return fmt.Errorf("%s is a file; expected a directory to hold %s", d, f.Path)
			}
		}
		fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(f.Path)))
		switch {
		case err == nil && fi.IsDir():
			return fmt.Errorf("%s is a directory; expected to write a file there", f.Path)
		case err == nil:
			if !force {
				exists = append(exists, f.Path)
			}
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("check %s: %w", f.Path, err)
		}
	}
	if len(exists) > 0 {
		sort.Strings(exists)
		return &ExistsError{Paths: exists}
	}
	return nil
}

// Write checks everything, then writes every file atomically. created is called after each
// file is in place.
func (s *Scaffold) Write(dir string, force bool, created func(path string)) error {
	if err := s.Check(dir, force); err != nil {
		return err
	}
	for _, f := range s.Files {
		var err error
		if f.Path == project.EnvFile {
			err = s.Env.Save(dir)
		} else {
			err = atomicfile.WriteFile(filepath.Join(dir, filepath.FromSlash(f.Path)), f.Data, f.Mode)
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
		if created != nil {
			created(f.Path)
		}
	}
	return nil
}
