package scaffold

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Environment variables that configure the LLM planner.
const (
	EnvProvider = "UKERNEL_LLM_PROVIDER" // auto (default), openai, local, heuristic
	EnvAPIKey   = "OPENAI_API_KEY"
	EnvBaseURL  = "UKERNEL_LLM_BASE_URL"
	EnvModel    = "UKERNEL_LLM_MODEL"
	EnvTimeout  = "UKERNEL_LLM_TIMEOUT" // a Go duration, default 60s
)

// Defaults of the LLM planner.
const (
	DefaultOpenAIBaseURL = "https://api.openai.com"
	DefaultOpenAIModel   = "gpt-5.2"
	DefaultLocalModel    = "qwen2.5-coder-7b-instruct"
	DefaultLLMTimeout    = 60 * time.Second
	maxResponseBytes     = 1 << 20
)

// LLMConfig selects an OpenAI-compatible Responses API endpoint.
type LLMConfig struct {
	Provider string // openai or local
	BaseURL  string
	Model    string
	APIKey   string
	Timeout  time.Duration
}

// LLMConfigFromEnv reads the planner settings; nil means the keyword planner. "auto" picks
// openai when OPENAI_API_KEY is set, else local when UKERNEL_LLM_BASE_URL is set, else none.
func LLMConfigFromEnv(getenv func(string) string) (*LLMConfig, error) {
	timeout := DefaultLLMTimeout
	if s := getenv(EnvTimeout); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%s=%q is not a positive duration like 60s", EnvTimeout, s)
		}
		timeout = d
	}
	key, base, model := getenv(EnvAPIKey), getenv(EnvBaseURL), getenv(EnvModel)
	openai := func() *LLMConfig {
		c := &LLMConfig{Provider: "openai", BaseURL: base, Model: model, APIKey: key, Timeout: timeout}
		if c.BaseURL == "" {
			c.BaseURL = DefaultOpenAIBaseURL
		}
		if c.Model == "" {
			c.Model = DefaultOpenAIModel
		}
		return c
	}
	local := func() *LLMConfig {
		c := &LLMConfig{Provider: "local", BaseURL: base, Model: model, APIKey: key, Timeout: timeout}
		if c.Model == "" {
			c.Model = DefaultLocalModel
		}
		return c
	}
	switch p := strings.ToLower(getenv(EnvProvider)); p {
	case "", "auto":
		if key != "" {
			return openai(), nil
		}
		if base != "" {
			return local(), nil
		}
		return nil, nil
	case "openai":
		if key == "" {
			return nil, fmt.Errorf("%s=openai requires %s to be set", EnvProvider, EnvAPIKey)
		}
		return openai(), nil
	case "local":
		if base == "" {
			return nil, fmt.Errorf("%s=local requires %s (e.g. http://127.0.0.1:8000)", EnvProvider, EnvBaseURL)
		}
		return local(), nil
	case "heuristic":
		return nil, nil
	default:
		return nil, fmt.Errorf("%s=%q is not supported; expected auto, openai, local or heuristic", EnvProvider, p)
	}
}

// LLMPlan is the plan as the model answered it, before validation.
type LLMPlan struct {
	SchemaVersion int      `json:"schema_version"`
	Summary       string   `json:"summary"`
	PrimaryPreset string   `json:"primary_preset"`
	Features      []string `json:"features"`
	HTTPPort      *int     `json:"http_port"`
	HealthPath    *string  `json:"health_path"`
	IntervalS     *int     `json:"worker_interval_secs"`
	Entrypoint    *string  `json:"entrypoint"`
	Notes         []string `json:"notes"`
}

// planSchema constrains the model's answer (strict structured output).
var planSchema = map[string]any{
	"type":                 "object",
	"additionalProperties": false,
	"properties": map[string]any{
		"schema_version":       map[string]any{"type": "integer", "enum": []int{1}},
		"summary":              map[string]any{"type": "string"},
		"primary_preset":       map[string]any{"type": "string", "enum": Presets},
		"features":             map[string]any{"type": "array", "items": map[string]any{"type": "string", "enum": Features}},
		"http_port":            map[string]any{"anyOf": []any{map[string]any{"type": "integer", "minimum": 1, "maximum": 65535}, map[string]any{"type": "null"}}},
		"health_path":          map[string]any{"anyOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "null"}}},
		"worker_interval_secs": map[string]any{"anyOf": []any{map[string]any{"type": "integer", "minimum": 1, "maximum": 3600}, map[string]any{"type": "null"}}},
		"entrypoint":           map[string]any{"anyOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "null"}}},
		"notes":                map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
	},
	"required": []string{"schema_version", "summary", "primary_preset", "features", "http_port", "health_path", "worker_interval_secs", "entrypoint", "notes"},
}

const systemPrompt = "You generate safe microVM project plans for ukernel. Output only schema-compliant JSON. " +
	"Keep plans constrained to the supported presets and features. Never emit secrets, host paths, " +
	"shell substitutions, or package names."

// BuildRequest is the Responses API request body for a prompt.
func BuildRequest(model, name, preset, lang, prompt string) map[string]any {
	hint := func(s string) string {
		if s == "" {
			return "none"
		}
		return s
	}
	user := fmt.Sprintf("Project name: %s\nExplicit preset: %s\nLanguage: %s\nPrompt: %s\n\n"+
		"Choose primary_preset from %s. Features may include %s. Use safe defaults: http_port %d "+
		"unless the workload clearly implies another port; health_path starts with '/'; "+
		"worker_interval_secs 1-3600; entrypoint is a file name relative to src/ like main.py. "+
		"Prefer python over plain http when the prompt is Python-specific, flask when it names Flask. Prefer app presets over "+
		"backing services.", name, hint(preset), hint(lang), prompt,
		strings.Join(Presets, "/"), strings.Join(Features, "/"), DefaultPort)
	msg := func(role, text string) map[string]any {
		return map[string]any{"role": role, "content": []any{map[string]any{"type": "input_text", "text": text}}}
	}
	return map[string]any{
		"model": model,
		"input": []any{msg("system", systemPrompt), msg("user", user)},
		"text": map[string]any{"format": map[string]any{
			"type": "json_schema", "name": "ukernel_project_plan", "strict": true, "schema": planSchema,
		}},
	}
}

// Ask sends the prompt to the Responses API and decodes the model's plan. The answer is
// untrusted: ToPlan and Plan.Validate check it.
func (c *LLMConfig) Ask(ctx context.Context, name, preset, lang, prompt string) (*LLMPlan, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	body, err := json.Marshal(BuildRequest(c.Model, name, preset, lang, prompt))
	if err != nil {
		return nil, err
	}
	endpoint := strings.TrimRight(c.BaseURL, "/") + "/v1/responses"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%s planner: bad base URL %q: %v", c.Provider, c.BaseURL, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
	}
	slog.Debug("asking the LLM planner", "provider", c.Provider, "endpoint", endpoint, "model", c.Model)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%s planner: no answer from %s within %s (set %s to wait longer)", c.Provider, endpoint, c.Timeout, EnvTimeout)
		}
		return nil, fmt.Errorf("%s planner: request to %s failed: %v", c.Provider, endpoint, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%s planner: answer from %s not complete within %s", c.Provider, endpoint, c.Timeout)
		}
		return nil, fmt.Errorf("%s planner: reading the answer from %s: %v", c.Provider, endpoint, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s planner: %s refused the request with HTTP %d: %s", c.Provider, endpoint, resp.StatusCode, apiErrorMessage(data))
	}
	return ParseResponse(data)
}

// apiErrorMessage extracts {"error":{"message":...}} or a short excerpt of the body.
func apiErrorMessage(data []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
		return e.Error.Message
	}
	s := strings.TrimSpace(string(data))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// ParseResponse reads the plan from a Responses API answer: either the top-level output_text
// or the first output[].content[] part of type output_text.
func ParseResponse(data []byte) (*LLMPlan, error) {
	var r struct {
		OutputText *string `json:"output_text"`
		Output     []struct {
			Content []struct {
				Type    string `json:"type"`
				Text    string `json:"text"`
				Refusal string `json:"refusal"`
			} `json:"content"`
		} `json:"output"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("LLM answer is not a Responses API JSON object: %v", err)
	}
	text := ""
	if r.OutputText != nil {
		text = *r.OutputText
	} else {
	search:
		for _, item := range r.Output {
			for _, part := range item.Content {
				if part.Type == "refusal" {
					return nil, fmt.Errorf("the model refused to plan: %s", part.Refusal)
				}
				if part.Type == "output_text" {
					text = part.Text
					break search
				}
			}
		}
		if text == "" {
			return nil, errors.New("LLM answer has no output_text (neither top-level nor in output[].content[])")
		}
	}
	dec := json.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	var p LLMPlan
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("LLM plan is not the expected JSON object: %v", err)
	}
	if dec.More() {
		return nil, errors.New("LLM plan has trailing data after the JSON object")
	}
	return &p, nil
}

// ToPlan checks the model's answer field by field and turns it into a Plan; an explicit preset
// from the command line wins over the model's choice. Plan.Validate completes the checks.
func (lp *LLMPlan) ToPlan(preset string) (Plan, error) {
	if lp.SchemaVersion != 1 {
		return Plan{}, fmt.Errorf("schema_version %d is not supported; expected 1", lp.SchemaVersion)
	}
	if !IsPreset(lp.PrimaryPreset) {
		return Plan{}, fmt.Errorf("primary_preset %q is not a preset; expected one of %s", lp.PrimaryPreset, strings.Join(Presets, ", "))
	}
	p := Plan{Preset: lp.PrimaryPreset, Features: lp.Features}
	if preset != "" {
		p.Preset = preset
	}
	if p.Features == nil {
		p.Features = []Feature{}
	}
	p.Port = DefaultPort
	if lp.HTTPPort != nil {
		if *lp.HTTPPort < 1 || *lp.HTTPPort > 65535 {
			return Plan{}, fmt.Errorf("http_port %d is out of range; expected 1-65535", *lp.HTTPPort)
		}
		p.Port = *lp.HTTPPort
	}
	p.HealthPath = DefaultHealthPath
	if lp.HealthPath != nil {
		if err := ValidateHealthPath(*lp.HealthPath); err != nil {
			return Plan{}, err
		}
		p.HealthPath = *lp.HealthPath
	}
	p.IntervalS = DefaultIntervalS
	if lp.IntervalS != nil {
		p.IntervalS = min(max(*lp.IntervalS, 1), 3600)
	}
	if lp.Entrypoint != nil {
		if *lp.Entrypoint == "" {
			return Plan{}, errors.New("entrypoint is empty; expected a file name inside src/ or null")
		}
		p.Entrypoint = *lp.Entrypoint
	}
	return p, nil
}
