package scaffold

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestKeywordPlan(t *testing.T) {
	tests := []struct {
		prompt, preset string
		want           Plan
	}{
		{"hello world", "", Plan{Preset: "minimal", Features: []Feature{}}},
		{"Python API worker with FastAPI", "", Plan{Preset: "python", Features: []Feature{"python", "worker"}}},
		{"Background worker that polls an API every minute", "", Plan{Preset: "worker", Features: []Feature{"http", "worker"}}},
		{"a small web server", "", Plan{Preset: "http", Features: []Feature{"http"}}},
		{"PostgreSQL database for my app", "", Plan{Preset: "postgres", Features: []Feature{"postgres"}}},
		{"Python API with PostgreSQL backing store", "", Plan{Preset: "python", Features: []Feature{"python", "postgres"}}},
		{"python http api with postgres", "", Plan{Preset: "python", Features: []Feature{"python", "postgres"}}},
		{"nightly cron job", "", Plan{Preset: "worker", Features: []Feature{"worker"}}},
		{"a Flask app with postgres", "", Plan{Preset: "flask", Features: []Feature{"python", "postgres"}}},
		{"Django site", "", Plan{Preset: "python", Features: []Feature{"python"}}},
		{"python web app", "postgres", Plan{Preset: "postgres", Features: []Feature{"python", "postgres"}}},
		{"queue consumer", "http", Plan{Preset: "http", Features: []Feature{"http", "worker"}}},
	}
	for _, tt := range tests {
		got := KeywordPlan(tt.prompt, tt.preset)
		tt.want.Port, tt.want.HealthPath, tt.want.IntervalS = DefaultPort, DefaultHealthPath, DefaultIntervalS
		if d := cmp.Diff(tt.want, got); d != "" {
			t.Errorf("KeywordPlan(%q, %q) (-want +got):\n%s", tt.prompt, tt.preset, d)
		}
	}
}

func TestPlanValidate(t *testing.T) {
	ok := func() Plan { p := DefaultPlan("http"); return p }
	tests := []struct {
		name    string
		lang    string
		edit    func(*Plan)
		wantErr string // "" = valid
	}{
		{"default", "python", func(p *Plan) {}, ""},
		{"entry default per lang", "go", func(p *Plan) {}, ""},
		{"nested entry", "python", func(p *Plan) { p.Entrypoint = "app/server.py" }, ""},
		{"port 0", "python", func(p *Plan) { p.Port = 0 }, "http_port 0 is out of range"},
		{"port 65536", "python", func(p *Plan) { p.Port = 65536 }, "http_port 65536 is out of range"},
		{"health quote", "python", func(p *Plan) { p.HealthPath = `/he"alth` }, "health_path"},
		{"health single quote", "python", func(p *Plan) { p.HealthPath = `/it's` }, "health_path"},
		{"health space", "python", func(p *Plan) { p.HealthPath = "/a b" }, "health_path"},
		{"health relative", "python", func(p *Plan) { p.HealthPath = "healthz" }, "health_path"},
		{"health query", "python", func(p *Plan) { p.HealthPath = "/h?x=1" }, "health_path"},
		{"health dotdot", "python", func(p *Plan) { p.HealthPath = "/a/../b" }, "'..' segments"},
		{"health bad escape", "python", func(p *Plan) { p.HealthPath = "/a%zz" }, "health_path"},
		{"health escape shell", "shell", func(p *Plan) { p.HealthPath = "/a%20b" }, "percent escapes"},
		{"entry traversal", "python", func(p *Plan) { p.Entrypoint = "../../etc/passwd" }, "must not contain '..'"},
		{"entry absolute", "python", func(p *Plan) { p.Entrypoint = "/etc/passwd" }, "not an absolute path"},
		{"entry inner dotdot", "python", func(p *Plan) { p.Entrypoint = "a/../../x.py" }, "must not contain '..'"},
		{"entry wrong ext", "python", func(p *Plan) { p.Entrypoint = "main.sh" }, "must end in .py"},
		{"entry unclean", "python", func(p *Plan) { p.Entrypoint = "a//b.py" }, "clean path"},
		{"entry shell chars", "python", func(p *Plan) { p.Entrypoint = "$(id).py" }, "may only use"},
		{"go entry in subdir", "go", func(p *Plan) { p.Entrypoint = "cmd/main.go" }, "directly in src/"},
		{"entry collides", "shell", func(p *Plan) { p.Entrypoint = "www/x.sh" }, "collides"},
		{"unknown feature", "python", func(p *Plan) { p.Features = []Feature{"redis"} }, `features: "redis"`},
		{"unknown preset", "python", func(p *Plan) { p.Preset = "rails" }, "primary_preset"},
		{"port clash with db", "python", func(p *Plan) { p.Features = []Feature{"postgres"}; p.Port = 5432 }, "taken by the postgres"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ok()
			tt.edit(&p)
			err := p.Validate(tt.lang)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if p.Entrypoint == "" || !strings.HasSuffix(p.Entrypoint, extension(tt.lang)) {
					t.Errorf("entrypoint %q not defaulted for %s", p.Entrypoint, tt.lang)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate error = %v; want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestPlanValidateClampsInterval(t *testing.T) {
	for in, want := range map[int]int{-5: 1, 0: 1, 1: 1, 3600: 3600, 99999: 3600} {
		p := DefaultPlan("worker")
		p.IntervalS = in
		if err := p.Validate("python"); err != nil {
			t.Fatal(err)
		}
		if p.IntervalS != want {
			t.Errorf("interval %d clamped to %d; want %d", in, p.IntervalS, want)
		}
	}
}

func TestResolveLang(t *testing.T) {
	tests := []struct{ preset, lang, want, err string }{
		{"minimal", "", "python", ""},
		{"http", "go", "go", ""},
		{"postgres", "", "shell", ""},
		{"postgres", "shell", "shell", ""},
		{"postgres", "python", "python", ""},
		{"postgres", "go", "go", ""},
		{"python", "node", "", "--lang python"},
		{"worker", "rust", "", "unknown language"},
	}
	for _, tt := range tests {
		got, err := ResolveLang(tt.preset, tt.lang)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ResolveLang(%q, %q) error = %v; want %q", tt.preset, tt.lang, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ResolveLang(%q, %q) = %q, %v; want %q", tt.preset, tt.lang, got, err, tt.want)
		}
	}
}

func TestPromptLang(t *testing.T) {
	for _, tc := range []struct{ prompt, lang, other string }{
		{"a rust api", "", "Rust"},
		{"java worker", "", "Java"},
		{"A C# web service on .NET", "", "C#"},
		{"an HTTP server in C++.", "", "C++"},
		{"a Rails app", "", "Ruby"},
		{"python api with postgres", "python", ""},
		{"a python worker that calls a rust library", "python", ""},
		{"a go http server", "go", ""},
		{"an API written in Go.", "go", ""},
		{"Golang worker", "go", ""},
		{"a node.js api", "node", ""},
		{"express server in JavaScript", "node", ""},
		{"a bash script that polls", "shell", ""},
		{"an api ready to go live", "", ""},
		{"a web app that lets jobs go through a queue", "", ""},
		{"trusty worker that polls a queue", "", ""},
		{"say hello", "", ""},
	} {
		lang, other := PromptLang(tc.prompt)
		if lang != tc.lang || other != tc.other {
			t.Errorf("PromptLang(%q) = %q, %q; want %q, %q", tc.prompt, lang, other, tc.lang, tc.other)
		}
	}
}
