// Package scaffold makes new ukernel projects: the presets (minimal, worker, http, python,
// flask, postgres) rendered for each language, the plan that parameterises them (port, health path,
// entry file, features), the keyword planner and the LLM planner that turn a prompt into a plan,
// and the all-or-nothing writing of the files.
package scaffold

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/ukernel-dev/ukernel/internal/project"
)

// Presets, in the order they are listed to users.
var Presets = []string{"minimal", "http", "postgres", "worker", "python", "flask"}

// Feature is a capability a plan asks for.
type Feature = string

// The fixed set of features a plan may name.
const (
	FeaturePython   Feature = "python"
	FeatureHTTP     Feature = "http"
	FeaturePostgres Feature = "postgres"
	FeatureWorker   Feature = "worker"
)

// Features lists the allowed features.
var Features = []Feature{FeaturePython, FeatureHTTP, FeaturePostgres, FeatureWorker}

// Defaults of a plan.
const (
	DefaultPort       = 8080
	DefaultHealthPath = "/healthz"
	DefaultIntervalS  = 10
	PostgresPort      = 5432
)

// Plan parameterises a preset. Keyword, LLM and plain `init --template` all end in one.
type Plan struct {
	Preset     string    `json:"primary_preset"`
	Features   []Feature `json:"features"`
	Port       int       `json:"http_port,omitempty"`
	HealthPath string    `json:"health_path,omitempty"`
	IntervalS  int       `json:"worker_interval_secs,omitempty"`
	// Entrypoint is the entry file relative to src/ ("main.py").
	Entrypoint string `json:"entrypoint"`
}

// IsPreset reports whether p names a preset.
func IsPreset(p string) bool { return slices.Contains(Presets, p) }

// ResolveLang picks the language for a preset: python and flask need python; postgres alone is
// a shell entry, and with another language an app in it beside PostgreSQL (see Plan.Validate);
// lang "" means the default (python). A mismatch is an error for the user to fix.
func ResolveLang(preset, lang string) (string, error) {
	if lang != "" && !slices.Contains(project.Languages(), lang) {
		return "", fmt.Errorf("unknown language %q; expected one of %s", lang, strings.Join(project.Languages(), ", "))
	}
	switch preset {
	case "python", "flask":
		if lang != "" && lang != "python" {
			return "", fmt.Errorf("the %s preset is a Python program: use --lang python (or another preset for --lang %s)", preset, lang)
		}
		return "python", nil
	case "postgres":
		if lang == "" {
			return "shell", nil
		}
		return lang, nil
	}
	if lang == "" {
		return "python", nil
	}
	return lang, nil
}

// Words of a prompt that name a language: the ones ukernel builds, and others it must not
// quietly turn into a Python project.
var (
	promptLangs = map[string]string{"python": "python", "golang": "go", "node": "node", "nodejs": "node",
		"node.js": "node", "javascript": "node", "shell": "shell", "bash": "shell"}
	otherLangs = map[string]string{"rust": "Rust", "java": "Java", "kotlin": "Kotlin", "scala": "Scala",
		"ruby": "Ruby", "rails": "Ruby", "php": "PHP", "laravel": "PHP", "c#": "C#", "csharp": "C#",
		".net": ".NET", "dotnet": ".NET", "elixir": "Elixir", "erlang": "Erlang", "haskell": "Haskell",
		"swift": "Swift", "c++": "C++", "cpp": "C++", "perl": "Perl", "clojure": "Clojure",
		"typescript": "TypeScript", "deno": "Deno", "zig": "Zig", "lua": "Lua", "dart": "Dart",
		"ocaml": "OCaml", "julia": "Julia"}
	// "go" is also an English word: it names the language only beside words like these.
	goNeighbours = []string{"in", "using", "api", "app", "service", "server", "worker", "program", "http", "web", "cli", "binary", "microservice"}
)

// PromptLang finds the language a prompt names: lang, one ukernel builds (the first named),
// or else other, the name of one it does not build ("a rust api": Rust). Both are empty when
// the prompt names none.
func PromptLang(prompt string) (lang, other string) {
	words := strings.FieldsFunc(strings.ToLower(prompt), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("+#.", r))
	})
	for i, w := range words {
		if w != ".net" && w != "node.js" {
			w = strings.Trim(w, ".")
		}
		if l, ok := promptLangs[w]; ok {
			return l, ""
		}
		if w == "go" && (i > 0 && slices.Contains(goNeighbours, words[i-1]) || i+1 < len(words) && slices.Contains(goNeighbours, strings.Trim(words[i+1], "."))) {
			return "go", ""
		}
		if o, ok := otherLangs[w]; ok && other == "" {
			other = o
		}
	}
	return "", other
}

// featureOf is the feature a preset implies; minimal implies none.
func featureOf(preset string) Feature {
	switch preset {
	case "flask":
		return FeaturePython
	case "python", "http", "postgres", "worker":
		return preset
	}
	return ""
}

// DefaultPlan is the plan of `init --template PRESET` without a prompt.
func DefaultPlan(preset string) Plan {
	p := Plan{Preset: preset, Features: []Feature{}}
	if f := featureOf(preset); f != "" {
		p.Features = append(p.Features, f)
	}
	p.fillDefaults()
	return p
}

func (p *Plan) fillDefaults() {
	if p.Port == 0 {
		p.Port = DefaultPort
	}
	if p.HealthPath == "" {
		p.HealthPath = DefaultHealthPath
	}
	if p.IntervalS == 0 {
		p.IntervalS = DefaultIntervalS
	}
}

// keyword groups of the keyword planner, checked in this order for the primary preset.
var keywords = []struct {
	feature Feature
	words   []string
}{
	{FeaturePython, []string{"python", "fastapi", "flask", "django"}},
	{FeatureWorker, []string{"worker", "queue", "cron", "job", "poll"}},
	{FeatureHTTP, []string{"http", "web", "api", "server"}},
	{FeaturePostgres, []string{"postgres", "postgresql", "database"}},
}

// KeywordPlan is the built-in planner: keywords in the prompt choose the features and, unless
// preset is given, the primary preset (python, flask when the prompt names it, then worker,
// then http, then postgres, else minimal). Python subsumes plain http.
func KeywordPlan(prompt, preset string) Plan {
	lower := strings.ToLower(prompt)
	var found []Feature
	for _, k := range keywords {
		for _, w := range k.words {
			if strings.Contains(lower, w) {
				found = append(found, k.feature)
				break
			}
		}
	}
	if preset == "" {
		preset = "minimal"
		if len(found) > 0 {
			preset = found[0]
		}
		if preset == FeaturePython && strings.Contains(lower, "flask") {
			preset = "flask"
		}
	}
	p := Plan{Preset: preset, Features: orderFeatures(found, preset)}
	p.fillDefaults()
	return p
}

// orderFeatures dedups features, adds the preset's own, drops http when python serves HTTP
// already, and returns them in the fixed order of Features.
func orderFeatures(in []Feature, preset string) []Feature {
	set := map[Feature]bool{}
	for _, f := range in {
		set[f] = true
	}
	if f := featureOf(preset); f != "" {
		set[f] = true
	}
	if set[FeaturePython] {
		delete(set, FeatureHTTP)
	}
	out := []Feature{}
	for _, f := range Features {
		if set[f] {
			out = append(out, f)
		}
	}
	return out
}

// Has reports whether the plan asks for a feature.
func (p *Plan) Has(f Feature) bool { return slices.Contains(p.Features, f) }

var (
	// URL path characters (RFC 3986 pchar and '/'), without quotes: the path lands in
	// programs and TOML.
	healthPathRe = regexp.MustCompile(`^/[A-Za-z0-9._~!$&()*+,;=:@%/-]*$`)
	entryRe      = regexp.MustCompile(`^[A-Za-z0-9._/-]+$`)
)

// extension is the extension of lang's entry files.
func extension(lang string) string {
	l, _ := project.LookupLanguage(lang)
	return l.Ext
}

// ValidateHealthPath checks a health path: starts with '/', URL path characters only, no dot
// segments, valid percent escapes.
func ValidateHealthPath(p string) error {
	if !healthPathRe.MatchString(p) {
		return fmt.Errorf("health_path %q is not a URL path: it must start with '/' and use only letters, digits and -._~!$&()*+,;=:@%%/ (no quotes, spaces or '?')", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("health_path %q must not contain '.' or '..' segments", p)
		}
	}
	if _, err := url.ParseRequestURI(p); err != nil {
		return fmt.Errorf("health_path %q: %v", p, err)
	}
	return nil
}

// ValidateEntrypoint checks an entry file name relative to src/ for a language.
func ValidateEntrypoint(e, lang string) error {
	if e == "" {
		return fmt.Errorf("entrypoint is empty; expected a file name inside src/ like main%s", extension(lang))
	}
	if strings.HasPrefix(e, "/") {
		return fmt.Errorf("entrypoint %q must be relative to src/, not an absolute path", e)
	}
	for _, part := range strings.Split(e, "/") {
		if part == ".." {
			return fmt.Errorf("entrypoint %q must not contain '..': it has to stay inside src/", e)
		}
	}
	if !entryRe.MatchString(e) {
		return fmt.Errorf("entrypoint %q may only use letters, digits, '.', '_', '-' and '/'", e)
	}
	if err := project.ValidateEntry(project.SrcDir + "/" + e); err != nil {
		return fmt.Errorf("entrypoint: %v", err)
	}
	clean := path.Clean(e)
	if clean != e || strings.HasPrefix(path.Base(e), ".") {
		return fmt.Errorf("entrypoint %q must be a clean path to a visible file (e.g. main%s)", e, extension(lang))
	}
	if ext := extension(lang); path.Ext(e) != ext {
		return fmt.Errorf("entrypoint %q must end in %s for a %s project", e, ext, lang)
	}
	if lang == "go" && strings.Contains(e, "/") {
		return fmt.Errorf("entrypoint %q: a Go entry is a file of package main directly in src/", e)
	}
	if lang == "go" && strings.HasSuffix(e, "_test.go") {
		return fmt.Errorf("entrypoint %q: a _test.go file is not built", e)
	}
	reserved := map[string]bool{"go.mod": true, "postgres.sh": true, "www": true}
	if reserved[strings.Split(e, "/")[0]] {
		return fmt.Errorf("entrypoint %q collides with a generated file", e)
	}
	return nil
}

// Validate checks a plan for a language, fills defaults, clamps the interval to 1-3600 s and
// puts the features in canonical order. Every error names the plan field at fault.
func (p *Plan) Validate(lang string) error {
	if !IsPreset(p.Preset) {
		return fmt.Errorf("primary_preset %q is not a preset; expected one of %s", p.Preset, strings.Join(Presets, ", "))
	}
	if p.Preset == "postgres" && lang != "shell" {
		// PostgreSQL for an app in another language: the app's preset, with the database as
		// a service beside it (as a prompt "python api with postgres" plans it).
		p.Preset = "http"
		if lang == "python" {
			p.Preset = "python"
		}
		p.Features = append(p.Features, FeaturePostgres)
	}
	for _, f := range p.Features {
		if !slices.Contains(Features, f) {
			return fmt.Errorf("features: %q is not a feature; expected some of %s", f, strings.Join(Features, ", "))
		}
	}
	p.Features = orderFeatures(p.Features, p.Preset)
	if p.Port < 1 || p.Port > 65535 {
		return fmt.Errorf("http_port %d is out of range; expected 1-65535", p.Port)
	}
	if p.Port == PostgresPort && (p.Has(FeaturePostgres)) && p.Preset != "postgres" {
		return fmt.Errorf("http_port %d is taken by the postgres feature; choose another port", p.Port)
	}
	if err := ValidateHealthPath(p.HealthPath); err != nil {
		return err
	}
	p.IntervalS = min(max(p.IntervalS, 1), 3600)
	if p.Entrypoint == "" {
		p.Entrypoint = "main" + extension(lang)
	}
	if err := ValidateEntrypoint(p.Entrypoint, lang); err != nil {
		return err
	}
	if lang == "shell" && p.Preset == "http" {
		if strings.ContainsAny(p.HealthPath, "%") {
			return fmt.Errorf("health_path %q: the shell http preset serves files with busybox httpd; percent escapes are not supported", p.HealthPath)
		}
	}
	return nil
}
