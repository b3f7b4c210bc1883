package project

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const goodConfig = `[project]
name = "example-worker"
language = "python"
entry = "src/main.py"

[env]
base = "python-3.11"

[run]
vcpu = 2
publish = ["8080:8080"]

[services.app]
command = "python3 /app/main.py --port '8080'"
restart = "on-failure"
env = { PORT = "8080" }

[services.side]
command = ["/bin/sh", "-c", "echo hi"]

[health.app]
http = "http://127.0.0.1:8080/"
`

func TestParseGood(t *testing.T) {
	c, err := Parse("ukernel.toml", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.Run.MemoryMB != DefaultMemoryMB || c.Run.Net != "user" || c.Run.VCPU != 2 || c.Build.Adapter != "python" {
		t.Errorf("defaults not applied: %+v %+v", c.Run, c.Build)
	}
	if diff := cmp.Diff(Command{"python3", "/app/main.py", "--port", "8080"}, c.Services["app"].Command); diff != "" {
		t.Errorf("string command split (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Command{"/bin/sh", "-c", "echo hi"}, c.Services["side"].Command); diff != "" {
		t.Errorf("array command (-want +got):\n%s", diff)
	}
	if h := c.Health["app"]; h.IntervalS != 5 || h.TimeoutS != 3 {
		t.Errorf("health defaults: %+v", h)
	}
	if got := c.EntryInGuest(); got != "/app/main.py" {
		t.Errorf("EntryInGuest = %q", got)
	}
	// Round trip through Marshal.
	data, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Parse("ukernel.toml", data)
	if err != nil {
		t.Fatalf("re-parse of marshalled config: %v\n%s", err, data)
	}
	if diff := cmp.Diff(c, c2, cmpopts.IgnoreUnexported(Config{})); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, edit, want string
		line             int
	}{
		{"unknown key", strings.Replace(goodConfig, "vcpu = 2", "vcpus = 2", 1), "run.vcpus: unknown key; did you mean vcpu? (docs/CONFIG.md lists every key)", 10},
		{"unknown key far from any", strings.Replace(goodConfig, "vcpu = 2", "cores = 2", 1), "ukernel.toml:10: run.cores: unknown key (docs/CONFIG.md lists every key)", 10},
		{"unknown key in a service", strings.Replace(goodConfig, `restart = "on-failure"`, `restrat = "no"`, 1), "services.app.restrat: unknown key; did you mean restart?", 15},
		{"unknown table", strings.Replace(goodConfig, "[run]", "[rnu]", 1), "ukernel.toml:9: rnu: unknown key; did you mean run?", 9},
		// Wrong types in the file's words, never Go's.
		{"wrong type", strings.Replace(goodConfig, "vcpu = 2", `vcpu = "two"`, 1), `ukernel.toml:10: run.vcpu: expected an integer, got a string ("two")`, 10},
		{"quoted number", strings.Replace(goodConfig, "vcpu = 2", `vcpu = "2"`, 1), `run.vcpu: expected an integer, got a string ("2"); write 2 without quotes`, 10},
		{"float", strings.Replace(goodConfig, "vcpu = 2", `vcpu = 2.5`, 1), `run.vcpu: expected an integer, got a float (2.5)`, 10},
		{"bool", strings.Replace(goodConfig, "vcpu = 2", "vcpu = 2\nmemory_mb = true", 1), `run.memory_mb: expected an integer, got a boolean (true)`, 11},
		{"date", strings.Replace(goodConfig, "vcpu = 2", "vcpu = 2\nmemory_mb = 1979-05-27", 1), `run.memory_mb: expected an integer, got a date`, 11},
		{"string", strings.Replace(goodConfig, `name = "example-worker"`, `name = 3`, 1), `ukernel.toml:2: project.name: expected a string, got an integer (3)`, 2},
		{"array", strings.Replace(goodConfig, `publish = ["8080:8080"]`, `publish = "8080:8080"`, 1), `run.publish: expected an array of strings, got a string ("8080:8080")`, 11},
		{"array item", strings.Replace(goodConfig, `publish = ["8080:8080"]`, `publish = ["1:1", 8080]`, 1), `run.publish: expected an array of strings, got an array with an integer (8080) as item 2`, 11},
		{"table value", strings.Replace(goodConfig, `env = { PORT = "8080" }`, `env = { PORT = 8080 }`, 1), `services.app.env.PORT: expected a string, got an integer (8080)`, 16},
		{"table", strings.Replace(goodConfig, `env = { PORT = "8080" }`, `env = "PORT=8080"`, 1), `services.app.env: expected a table of strings, got a string ("PORT=8080")`, 16},
		{"command", strings.Replace(goodConfig, `command = ["/bin/sh", "-c", "echo hi"]`, `command = 3`, 1), `ukernel.toml:19: services.side.command: expected a string or an array of strings, got an integer (3)`, 19},
		{"command item", strings.Replace(goodConfig, `command = ["/bin/sh", "-c", "echo hi"]`, `command = ["sh", true]`, 1), `services.side.command: expected a string or an array of strings, got an array with a boolean (true) as item 2`, 19},
		{"array of tables", strings.Replace(goodConfig, "[services.side]", "[[services.side]]", 1), `services.side: expected a table, got an array of tables; write [services.side], with one pair of brackets`, 18},
		{"section", "project = 3\n", `ukernel.toml:1: project: expected a table, got an integer (3)`, 1},
		{"malformed", strings.Replace(goodConfig, "[run]", "[run", 1), "ukernel.toml:9", 9},
		{"vcpu range", strings.Replace(goodConfig, "vcpu = 2", "vcpu = 33", 1), "expected 1-32", 10},
		{"vcpu zero", strings.Replace(goodConfig, "vcpu = 2", "vcpu = 0", 1), "0 is out of range; expected 1-32", 10},
		{"interval zero", strings.Replace(goodConfig, "http = \"http://127.0.0.1:8080/\"", "http = \"http://127.0.0.1:8080/\"\ninterval_s = 0", 1), "health.app.interval_s: 0 is out of range", 23},
		{"memory range", strings.Replace(goodConfig, "vcpu = 2", "vcpu = 2\nmemory_mb = 10", 1), "expected 64-65536", 11},
		{"bad name", strings.Replace(goodConfig, "example-worker", "Example_Worker", 1), "invalid project name", 2},
		{"entry escape", strings.Replace(goodConfig, "src/main.py", "src/../../etc/passwd", 1), "must not contain '..'", 4},
		{"entry absolute", strings.Replace(goodConfig, "src/main.py", "/etc/passwd", 1), "relative path", 4},
		{"entry outside src", strings.Replace(goodConfig, "src/main.py", "main.py", 1), "inside src/", 4},
		{"port", strings.Replace(goodConfig, "8080:8080", "0:8080", 1), "expected 1-65535", 11},
		{"health without service", strings.Replace(goodConfig, "[health.app]", "[health.web]", 1), "no service \"web\"", 21},
		{"restart", strings.Replace(goodConfig, "on-failure", "sometimes", 1), "restart policy", 15},
		{"base", strings.Replace(goodConfig, "python-3.11", "python-3.12", 1), "known bases: python-3.11", 7},
		{"log size", goodConfig + "\n[logs]\nmax_size = \"10 MB\"\n", `logs.max_size: "10 MB" is not a size; expected a positive number with k, m or g (10m, 512k)`, 25},
		{"log size small", goodConfig + "\n[logs]\nmax_size = \"100\"\n", `logs.max_size: "100" is below the smallest size, 4k`, 25},
		{"log files", goodConfig + "\n[logs]\nmax_size = \"1m\"\nmax_files = 101\n", `logs.max_files: 101 is out of range; expected 1-100`, 26},
		{"net", strings.Replace(goodConfig, "vcpu = 2", "vcpu = 2\nnet = \"bridge\"", 1), "network mode", 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("ukernel.toml", []byte(tt.edit))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			for _, goName := range []string{"toml: ", "struct", "Section", "of type", "[]string", "int64"} {
				if strings.Contains(err.Error(), goName) {
					t.Errorf("error %q speaks Go (%q)", err, goName)
				}
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *project.Error", err)
			}
			if pe.Line != tt.line {
				t.Errorf("line = %d, want %d (%v)", pe.Line, tt.line, err)
			}
		})
	}
}

// writeConfig writes a ukernel.toml on base into dir; [env] base is on line 6.
func writeConfig(t *testing.T, dir, base string) {
	t.Helper()
	data := fmt.Sprintf("[project]\nname = \"demo\"\nlanguage = \"python\"\nentry = \"src/main.py\"\n[env]\nbase = %q\n", base)
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestEnvRoundTrip(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "python-3.11")
	e := &Env{Base: "python-3.11", System: []string{"libssl3", "curl"}, Python: []string{"requests==2.32.3"}}
	if err := e.Save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := LoadEnv(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := &Env{Base: "python-3.11", Kernel: DefaultKernel, System: []string{"curl", "libssl3"}, Python: []string{"requests==2.32.3"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := ParseEnv(EnvFile, []byte("kernel = \"linux-image-amd64\"\nsystem = [\"BAD NAME\"]\n"), "python-3.11"); err == nil || !strings.Contains(err.Error(), "env/ukernel.env:2: system") {
		t.Errorf("bad system package: %v", err)
	}
	if _, err := ParseEnv(EnvFile, []byte("system = []\nextra = 1\n"), "python-3.11"); err == nil || !strings.Contains(err.Error(), "env/ukernel.env:2: extra: unknown key") {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := ParseEnv(EnvFile, []byte("system = \"curl\"\n"), "python-3.11"); err == nil || err.Error() != `env/ukernel.env:1: system: expected an array of strings, got a string ("curl")` {
		t.Errorf("wrong type: %v", err)
	}
	if _, err := ParseEnv(EnvFile, []byte("sytem = [\"curl\"]\n"), "python-3.11"); err == nil || !strings.Contains(err.Error(), "env/ukernel.env:1: sytem: unknown key; did you mean system?") {
		t.Errorf("unknown key: %v", err)
	}
}

// The base has one home, ukernel.toml: env/ukernel.env no longer holds it, and a base line an
// older ukernel wrote there is refused when it disagrees (once, the env file's base was locked
// while the adapter was labelled with ukernel.toml's).
func TestEnvBaseHasOneHome(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "python-3.13")
	if err := os.MkdirAll(filepath.Join(dir, "env"), 0o755); err != nil {
		t.Fatal(err)
	}
	load := func(env string) (*Env, error) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, EnvFile), []byte(env), 0o644); err != nil {
			t.Fatal(err)
		}
		return LoadEnv(dir)
	}
	e, err := load("system = []\n")
	if err != nil || e.Base != "python-3.13" {
		t.Fatalf("base from ukernel.toml: %+v, %v", e, err)
	}
	_, err = load("# old\nbase = \"python-3.11\"\nsystem = []\n")
	want := `env/ukernel.env:2: base = "python-3.11", but ukernel.toml:6 sets [env] base = "python-3.13": the base is set in ukernel.toml only; delete this line from env/ukernel.env`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("disagreeing bases: %v\nwant %s", err, want)
	}
	e, err = load("base = \"python-3.13\"\nsystem = [\"curl\"]\n")
	if err != nil || e.Base != "python-3.13" {
		t.Fatalf("an old env file that agrees: %+v, %v", e, err)
	}
	if err := e.Save(dir); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, EnvFile)); strings.Contains(string(data), "base =") {
		t.Errorf("Save wrote a base into env/ukernel.env:\n%s", data)
	}
}

func TestSplitCommand(t *testing.T) {
	for in, want := range map[string][]string{
		`a b  c`:           {"a", "b", "c"},
		`sh -c 'echo $X'`:  {"sh", "-c", "echo $X"},
		`echo "a \"b\" c"`: {"echo", `a "b" c`},
		`x\ y`:             {"x y"},
		`''`:               {""},
	} {
		got, err := SplitCommand(in)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", in, diff)
		}
		back, _ := SplitCommand(JoinCommand(got))
		if diff := cmp.Diff(got, back); diff != "" {
			t.Errorf("join round trip %q: %s", in, diff)
		}
	}
	if _, err := SplitCommand(`echo 'x`); err == nil {
		t.Error("unterminated quote accepted")
	}
}

func TestSecretsValidated(t *testing.T) {
	base := "[project]\nname = 'a'\nlanguage = 'shell'\nentry = 'src/main.sh'\nsecrets = ['%s']\n[env]\nbase = 'debian-12'\n[services.db]\ncommand = 'x'\nsecrets = ['ok', '%s']\n"
	if _, err := Parse("ukernel.toml", []byte(fmt.Sprintf(base, "api_token", "db.pw"))); err != nil {
		t.Fatalf("valid secrets refused: %v", err)
	}
	_, err := Parse("ukernel.toml", []byte(fmt.Sprintf(base, "../etc", "ok")))
	if err == nil || !strings.Contains(err.Error(), "project.secrets") || !strings.Contains(err.Error(), "services.db.secrets") {
		t.Errorf("bad and repeated secret names: %v", err)
	}
}

// FuzzParse: any ukernel.toml is accepted or refused with a positioned error in the file's
// terms, never a panic and never Go's names for the schema.
func FuzzParse(f *testing.F) {
	f.Add(goodConfig)
	f.Add(strings.Replace(goodConfig, "vcpu = 2", `vcpu = "2"`, 1))
	f.Add(strings.Replace(goodConfig, `publish = ["8080:8080"]`, `publish = [8080, {a = 1}]`, 1))
	f.Add("[[services.x]]\ncommand = 1\n[health]\nx = []\n")
	f.Fuzz(func(t *testing.T, data string) {
		_, err := Parse(ConfigFile, []byte(data))
		if err == nil {
			return
		}
		var pe *Error
		if !errors.As(err, &pe) {
			t.Fatalf("error %T is not a *project.Error: %v", err, err)
		}
		msg := strings.ReplaceAll(err.Error(), ConfigFile+":", "")
		for _, goName := range []string{"toml: ", "struct field", "Section", "of type"} {
			if strings.Contains(msg, goName) {
				t.Fatalf("error %q speaks Go (%q)", err, goName)
			}
		}
	})
}

// FuzzParseEnv: an env file either fails with an error or round-trips through Save unchanged.
func FuzzParseEnv(f *testing.F) {
	for _, seed := range []string{"system = [\"curl\", \"jq=1.6-2.1\"]\npython = [\"requests==2.32.3\"]\n", "base = \"python-3.11\"\nkernel = \"linux-image-amd64\"\n", "base = \"debian-12\"\n", "system = [\"BAD NAME\"]\n", "[x]\n"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseEnv(EnvFile, data, "python-3.11")
		if err != nil {
			return
		}
		dir := t.TempDir()
		writeConfig(t, dir, "python-3.11")
		if err := e.Save(dir); err != nil {
			t.Fatal(err)
		}
		got, err := LoadEnv(dir)
		if err != nil {
			t.Fatalf("saved env does not load: %v\n%q", err, data)
		}
		if !slices.Equal(got.System, e.System) || !slices.Equal(got.Python, e.Python) || got.Kernel != e.Kernel || got.Base != e.Base {
			t.Fatalf("round trip: %+v, saved %+v", got, e)
		}
	})
}

func TestCacheSection(t *testing.T) {
	src := "[project]\nname = \"w\"\nlanguage = \"shell\"\nentry = \"src/main.sh\"\n[env]\nbase = \"debian-12\"\n[cache]\nremote = \"reg.example/team/cache\"\n"
	cfg, err := Parse("ukernel.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cache.Remote != "reg.example/team/cache" {
		t.Fatalf("got %+v", cfg.Cache)
	}
	// Writers are set per user, never by the repository.
	if _, err := Parse("ukernel.toml", []byte(src+"push = true\n")); err == nil || !strings.Contains(err.Error(), "cache.push") {
		t.Fatalf("[cache] push in ukernel.toml: want an unknown-key error, got %v", err)
	}
	// The cache's address is not part of the image: the build key's JSON leaves it out.
	b, _ := json.Marshal(cfg)
	if strings.Contains(string(b), "reg.example") {
		t.Fatalf("config JSON holds the cache: %s", b)
	}
}
