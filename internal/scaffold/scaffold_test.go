package scaffold

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/project"
)

// combos are the valid preset x language pairs.
func combos() [][2]string {
	var out [][2]string
	for _, preset := range Presets {
		for _, lang := range project.Languages() {
			if _, err := ResolveLang(preset, lang); err == nil {
				out = append(out, [2]string{preset, lang})
			}
		}
	}
	return out
}

func render(t *testing.T, preset, lang string, edit func(*Plan)) (string, *Scaffold) {
	t.Helper()
	p := DefaultPlan(preset)
	if edit != nil {
		edit(&p)
	}
	if err := p.Validate(lang); err != nil {
		t.Fatal(err)
	}
	s, err := Render(Options{Name: "demo", Lang: lang, Plan: p})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var created []string
	if err := s.Write(dir, false, func(p string) { created = append(created, p) }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(created, s.Paths()) {
		t.Fatalf("created %v; want %v", created, s.Paths())
	}
	return dir, s
}

func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("%s is not installed; install it to check the generated programs", tool)
	}
	return p
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// checkSyntax compiles or syntax-checks the entry with the language's own tool and returns the
// argv that runs it on this host.
func checkSyntax(t *testing.T, dir, lang, entry string) []string {
	t.Helper()
	file := filepath.Join(dir, entry)
	switch lang {
	case "python":
		run(t, dir, []string{"PYTHONPYCACHEPREFIX=" + t.TempDir()}, need(t, "python3"), "-m", "py_compile", file)
		return []string{"python3", file}
	case "shell":
		run(t, dir, nil, "sh", "-n", file)
		return []string{"sh", file}
	case "node":
		run(t, dir, nil, need(t, "node"), "--check", file)
		return []string{"node", file}
	case "go":
		gobin := need(t, "go")
		src := filepath.Join(dir, "src")
		env := []string{"GOWORK=off", "GOFLAGS=", "CGO_ENABLED=0"}
		run(t, src, env, gobin, "vet", ".")
		bin := filepath.Join(t.TempDir(), "entry")
		run(t, src, env, gobin, "build", "-o", bin, ".")
		return []string{bin}
	}
	t.Fatalf("no checker for %s", lang)
	return nil
}

func TestRenderAllPresets(t *testing.T) {
	for _, c := range combos() {
		preset, lang := c[0], c[1]
		t.Run(preset+"-"+lang, func(t *testing.T) {
			dir, s := render(t, preset, lang, nil)
			cfg, err := project.Load(dir)
			if err != nil {
				t.Fatalf("generated ukernel.toml: %v", err)
			}
			if _, err := project.LoadEnv(dir); err != nil {
				t.Fatalf("generated env: %v", err)
			}
			if cfg.Project.Language != lang || cfg.Project.Name != "demo" || cfg.Build.Adapter != lang {
				t.Errorf("config project = %+v", cfg.Project)
			}
			app := preset
			if preset == "postgres" && lang != "shell" {
				// PostgreSQL beside an app in lang: the app's preset, the database a service.
				app = "http"
				if lang == "python" {
					app = "python"
				}
				if len(cfg.Services["db"].Command) == 0 || len(cfg.Health["db"].Cmd) == 0 || cfg.Data.DiskMB != 512 ||
					cfg.Run.Env["DATABASE_URL"] == "" || !slices.Contains(mustEnv(t, dir).System, "postgresql-15") {
					t.Errorf("app with postgres: config %+v", cfg)
				}
				if _, err := os.Stat(filepath.Join(dir, "src", "postgres.sh")); err != nil {
					t.Error(err)
				}
				// The script's shell and tools come with the base or are asked for.
				base, _ := project.LookupBase(cfg.Env.Base)
				for _, pkg := range []string{"dash", "coreutils"} {
					if !slices.Contains(base.Packages, pkg) && !slices.Contains(mustEnv(t, dir).System, pkg) {
						t.Errorf("%s base: env/ukernel.env lacks %s for postgres.sh", cfg.Env.Base, pkg)
					}
				}
			}
			switch app {
			case "http", "python", "flask":
				if h := cfg.Health[project.EntryService].HTTP; h != "http://127.0.0.1:8080/healthz" {
					t.Errorf("health.main.http = %q", h)
				}
				if sp := cfg.Health[project.EntryService].StartPeriodS; sp < 30 {
					t.Errorf("health.main.start_period_s = %d: an interpreter's start under TCG outlasts 3 probes 5 s apart", sp)
				}
				if !slices.Equal(cfg.Run.Publish, []string{"8080:8080"}) || cfg.Run.Env["PORT"] != "8080" {
					t.Errorf("run = %+v", cfg.Run)
				}
			case "postgres":
				if cfg.Project.User != "postgres" || cfg.Data.DiskMB != 512 || len(cfg.Health["main"].Cmd) == 0 {
					t.Errorf("postgres config = %+v", cfg)
				}
			default:
				if len(cfg.Health) != 0 || len(cfg.Run.Publish) != 0 {
					t.Errorf("%s declares health/publish: %+v %+v", preset, cfg.Health, cfg.Run)
				}
			}
			gi, _ := os.ReadFile(filepath.Join(dir, ".gitignore"))
			if string(gi) != "build/\ndist/\nlogs/\n.ukernel/\n.build-tmp-*/\n" {
				t.Errorf(".gitignore = %q", gi)
			}
			readme, _ := os.ReadFile(filepath.Join(dir, "README.md"))
			if preset == "postgres" && !strings.Contains(string(readme), "local development default") {
				t.Errorf("postgres README does not state the trust default:\n%s", readme)
			}
			argv := checkSyntax(t, dir, lang, cfg.Project.Entry)
			checkBehaviour(t, dir, app, lang, argv)
			if s.Files[0].Path != project.ConfigFile || s.Files[1].Path != cfg.Project.Entry {
				t.Errorf("report order %v; want ukernel.toml, then the entry", s.Paths())
			}
		})
	}
}

func mustEnv(t *testing.T, dir string) *project.Env {
	t.Helper()
	e, err := project.LoadEnv(dir)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// checkBehaviour runs the generated program on the host and checks what the preset promises.
func checkBehaviour(t *testing.T, dir, preset, lang string, argv []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch preset {
	case "minimal":
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).Output()
		if err != nil || string(out) != "Hello from demo!\n" {
			t.Fatalf("minimal printed %q, %v; want the greeting and exit 0", out, err)
		}
	case "worker":
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "WORKER_INTERVAL_S=1")
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(stdout)
		for _, want := range []string{"tick 1\n", "tick 2\n"} {
			if line, err := r.ReadString('\n'); line != want {
				t.Fatalf("worker printed %q (%v); want %q", line, err, want)
			}
		}
		cmd.Process.Signal(syscall.SIGTERM)
		rest, _ := io.ReadAll(r)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("worker did not exit cleanly on SIGTERM: %v (output %q)", err, rest)
		}
		if !strings.Contains(string(rest), "worker stopped") {
			t.Errorf("worker output after SIGTERM = %q", rest)
		}
	case "http", "python", "flask":
		if preset == "flask" {
			if err := exec.Command(argv[0], "-c", "import flask, waitress").Run(); err != nil {
				t.Skip("flask or waitress is not importable on this host; e2e TestRunHTTPPresets/flask boots the preset")
			}
		}
		port := freePort(t)
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		if lang == "shell" {
			// The entry runs busybox httpd on /app/www; on the host serve src/www the same way.
			cmd = exec.CommandContext(ctx, need(t, "busybox"), "httpd", "-f", "-p", fmt.Sprint(port), "-h", filepath.Join(dir, "src", "www"))
		}
		cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", port))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}()
		for _, p := range []string{"/", "/healthz"} {
			if code := get(ctx, t, fmt.Sprintf("http://127.0.0.1:%d%s", port, p)); code != 200 {
				t.Errorf("GET %s = %d; want 200", p, code)
			}
		}
		if code := get(ctx, t, fmt.Sprintf("http://127.0.0.1:%d/nope", port)); code != 404 {
			t.Errorf("GET /nope = %d; want 404", code)
		}
	case "postgres":
		checkSQLLiteral(t, filepath.Join(dir, "src", "main.sh"))
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// get polls url until the server answers or ctx ends, and returns the status code.
func get(ctx context.Context, t *testing.T, url string) int {
	t.Helper()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			return resp.StatusCode
		}
		select {
		case <-ctx.Done():
			t.Fatalf("GET %s: no answer: %v", url, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// checkSQLLiteral runs the script's quoting function: a password with quotes must not end the
// SQL string literal.
func checkSQLLiteral(t *testing.T, script string) {
	data, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	start := strings.Index(s, "sql_literal() {")
	end := strings.Index(s[start:], "\n}\n")
	fn := s[start : start+end+3]
	for in, want := range map[string]string{"secret": "'secret'", "it's": "'it''s'", "''": "''''''", "a'b'c$(id)": "'a''b''c$(id)'"} {
		out, err := exec.Command("sh", "-c", fn+`sql_literal "$1"`, "sh", in).Output()
		if err != nil || string(out) != want {
			t.Errorf("sql_literal(%q) = %q, %v; want %q", in, out, err, want)
		}
	}
}

func TestPlanAppliedToProject(t *testing.T) {
	dir, _ := render(t, "python", "python", func(p *Plan) {
		p.Port, p.HealthPath, p.Entrypoint = 9090, "/api/health", "app/server.py"
		p.Features = append(p.Features, FeaturePostgres, FeatureWorker)
	})
	cfg, err := project.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Project.Entry != "src/app/server.py" || cfg.Health["main"].HTTP != "http://127.0.0.1:9090/api/health" ||
		cfg.Run.Env["PORT"] != "9090" || !slices.Equal(cfg.Run.Publish, []string{"9090:9090"}) {
		t.Errorf("plan not applied: %+v %+v %+v", cfg.Project, cfg.Run, cfg.Health)
	}
	if _, ok := cfg.Services["db"]; !ok || len(cfg.Health["db"].Cmd) == 0 || cfg.Data.DiskMB == 0 || cfg.Run.Env["DATABASE_URL"] == "" {
		t.Errorf("postgres feature not applied: %+v %+v", cfg.Services, cfg.Health)
	}
	env, err := project.LoadEnv(dir)
	if err != nil || !slices.Contains(env.System, "postgresql-15") {
		t.Errorf("env = %+v, %v; want postgresql-15", env, err)
	}
	src, _ := os.ReadFile(filepath.Join(dir, "src/app/server.py"))
	if !strings.Contains(string(src), `HEALTH_PATH = "/api/health"`) || !strings.Contains(string(src), `"9090"`) {
		t.Errorf("program does not use the plan:\n%s", src)
	}
	for _, f := range []string{"src/postgres.sh"} {
		run(t, dir, nil, "sh", "-n", filepath.Join(dir, f))
	}
	readme, _ := os.ReadFile(filepath.Join(dir, "README.md"))
	if !strings.Contains(string(readme), `feature "worker"`) {
		t.Errorf("README does not note the unimplemented worker feature")
	}
}

func TestShellHTTPServesHealthPath(t *testing.T) {
	dir, _ := render(t, "http", "shell", func(p *Plan) { p.HealthPath = "/status/" })
	if _, err := os.Stat(filepath.Join(dir, "src/www/status/index.html")); err != nil {
		t.Fatal(err)
	}
	env, err := project.LoadEnv(dir)
	if err != nil || !slices.Contains(env.System, "busybox") {
		t.Fatalf("env = %+v, %v; want busybox", env, err)
	}
}

func TestWriteRefusesExistingAndWritesNothing(t *testing.T) {
	p := DefaultPlan("worker")
	if err := p.Validate("python"); err != nil {
		t.Fatal(err)
	}
	s, err := Render(Options{Name: "demo", Lang: "python", Plan: p, Prompt: &PromptRecord{Prompt: "a worker", Mode: "heuristic"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var ee *ExistsError
	if err := s.Write(dir, false, nil); !errors.As(err, &ee) || !slices.Equal(ee.Paths, []string{"README.md"}) {
		t.Fatalf("Write = %v; want README.md exists", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("something was written: %v", entries)
	}
	if err := s.Write(dir, true, nil); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, PromptFile))
	var rec PromptRecord
	if err := json.Unmarshal(data, &rec); err != nil || rec.Plan.Preset != "worker" || rec.Mode != "heuristic" || rec.SchemaVersion != 1 {
		t.Fatalf("%s = %s (%v)", PromptFile, data, err)
	}

	// A file where a directory must go is found before anything is written.
	dir2 := t.TempDir()
	os.WriteFile(filepath.Join(dir2, "src"), nil, 0o644)
	if err := s.Write(dir2, true, nil); err == nil || !strings.Contains(err.Error(), "src is a file") {
		t.Fatalf("Write = %v; want src is a file", err)
	}
	if entries, _ := os.ReadDir(dir2); len(entries) != 1 {
		t.Fatalf("something was written: %v", entries)
	}
}

func TestRenderDeterministic(t *testing.T) {
	for _, c := range combos() {
		p := DefaultPlan(c[0])
		if err := p.Validate(c[1]); err != nil {
			t.Fatal(err)
		}
		a, err1 := Render(Options{Name: "demo", Lang: c[1], Plan: p})
		b, err2 := Render(Options{Name: "demo", Lang: c[1], Plan: p})
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		for i := range a.Files {
			if string(a.Files[i].Data) != string(b.Files[i].Data) {
				t.Errorf("%v: %s differs between renders", c, a.Files[i].Path)
			}
		}
	}
}

// The README's first line says what was asked for: --template postgres with another language
// is that language's app with PostgreSQL, not just its app preset.
func TestReadmeNamesPostgres(t *testing.T) {
	for lang, want := range map[string]string{
		"shell":  "A ukernel project (postgres preset, shell).",
		"python": "A ukernel project (python preset with PostgreSQL, python).",
		"go":     "A ukernel project (http preset with PostgreSQL, go).",
	} {
		p := DefaultPlan("postgres")
		if err := p.Validate(lang); err != nil {
			t.Fatal(err)
		}
		s, err := Render(Options{Name: "demo", Lang: lang, Plan: p})
		if err != nil {
			t.Fatal(err)
		}
		var readme string
		for _, f := range s.Files {
			if f.Path == "README.md" {
				readme = string(f.Data)
			}
		}
		if !strings.Contains(readme, want) {
			t.Errorf("%s: README lacks %q:\n%s", lang, want, readme)
		}
	}
}
