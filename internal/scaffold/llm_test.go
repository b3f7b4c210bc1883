package scaffold

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLLMConfigFromEnv(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		provider string // "" = keyword planner
		base     string
		model    string
		err      string
	}{
		{"nothing set", nil, "", "", "", ""},
		{"auto with key", map[string]string{EnvAPIKey: "k"}, "openai", DefaultOpenAIBaseURL, DefaultOpenAIModel, ""},
		{"auto with base", map[string]string{EnvBaseURL: "http://127.0.0.1:1"}, "local", "http://127.0.0.1:1", DefaultLocalModel, ""},
		{"auto key wins", map[string]string{EnvAPIKey: "k", EnvBaseURL: "http://h", EnvModel: "m"}, "openai", "http://h", "m", ""},
		{"heuristic", map[string]string{EnvProvider: "heuristic", EnvAPIKey: "k"}, "", "", "", ""},
		{"openai without key", map[string]string{EnvProvider: "openai"}, "", "", "", "requires OPENAI_API_KEY"},
		{"local without base", map[string]string{EnvProvider: "LOCAL"}, "", "", "", "requires UKERNEL_LLM_BASE_URL"},
		{"unknown provider", map[string]string{EnvProvider: "anthropic"}, "", "", "", "not supported"},
		{"bad timeout", map[string]string{EnvTimeout: "soon"}, "", "", "", "UKERNEL_LLM_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := LLMConfigFromEnv(func(k string) string { return tt.env[k] })
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v; want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.provider == "" {
				if c != nil {
					t.Fatalf("config = %+v; want the keyword planner", c)
				}
				return
			}
			if c.Provider != tt.provider || c.BaseURL != tt.base || c.Model != tt.model || c.Timeout != DefaultLLMTimeout {
				t.Fatalf("config = %+v; want %s %s %s", c, tt.provider, tt.base, tt.model)
			}
		})
	}
}

// responsesServer answers POST /v1/responses like the Responses API with body, after
// checking the request carries the strict JSON schema.
func responsesServer(t *testing.T, status int, body string, delay time.Duration) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/responses" {
			http.Error(w, `{"error":{"message":"not found"}}`, http.StatusNotFound)
			return
		}
		var req struct {
			Model string `json:"model"`
			Text  struct {
				Format struct {
					Type   string         `json:"type"`
					Strict bool           `json:"strict"`
					Schema map[string]any `json:"schema"`
				} `json:"format"`
			} `json:"text"`
		}
		data, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(data, &req); err != nil || req.Text.Format.Type != "json_schema" || !req.Text.Format.Strict || req.Model == "" {
			t.Errorf("request is not a strict json_schema Responses request: %s", data)
		}
		if got := r.Header.Get("Authorization"); got != "Bearer sk-test" {
			t.Errorf("Authorization = %q", got)
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// answer wraps a plan in the output[].content[] shape, or output_text when flat.
func answer(plan string, flat bool) string {
	if flat {
		b, _ := json.Marshal(map[string]any{"output_text": plan})
		return string(b)
	}
	b, _ := json.Marshal(map[string]any{"output": []any{
		map[string]any{"type": "reasoning", "content": []any{}},
		map[string]any{"type": "message", "content": []any{map[string]any{"type": "output_text", "text": plan}}},
	}})
	return string(b)
}

const goodPlan = `{"schema_version":1,"summary":"Python API","primary_preset":"python","features":["python","http","postgres"],"http_port":8000,"health_path":"/ready","worker_interval_secs":null,"entrypoint":"service.py","notes":["keep postgres local"]}`

func ask(t *testing.T, url string, timeout time.Duration) (*LLMPlan, error) {
	t.Helper()
	c := &LLMConfig{Provider: "local", BaseURL: url + "/", Model: "test-model", APIKey: "sk-test", Timeout: timeout}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Ask(ctx, "demo", "", "", "python api with postgres")
}

func TestAskGoodPlanBothShapes(t *testing.T) {
	for _, flat := range []bool{false, true} {
		srv := responsesServer(t, 200, answer(goodPlan, flat), 0)
		lp, err := ask(t, srv.URL, 5*time.Second)
		if err != nil {
			t.Fatalf("flat=%v: %v", flat, err)
		}
		p, err := lp.ToPlan("")
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Validate("python"); err != nil {
			t.Fatal(err)
		}
		want := Plan{Preset: "python", Features: []Feature{"python", "postgres"}, Port: 8000, HealthPath: "/ready", IntervalS: DefaultIntervalS, Entrypoint: "service.py"}
		if d := cmp.Diff(want, p); d != "" {
			t.Errorf("flat=%v plan (-want +got):\n%s", flat, d)
		}
		if lp.Summary != "Python API" || len(lp.Notes) != 1 {
			t.Errorf("summary/notes = %q %q", lp.Summary, lp.Notes)
		}
	}
}

func TestAskFailures(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		delay  time.Duration
		err    string
	}{
		{"refused", 401, `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}`, 0, "refused the request with HTTP 401: Incorrect API key provided"},
		{"server error text", 503, `overloaded`, 0, `HTTP 503: "overloaded"`},
		{"timeout", 200, answer(goodPlan, true), 3 * time.Second, "no answer from"},
		{"malformed body", 200, `{"output": [`, 0, "not a Responses API JSON object"},
		{"malformed plan", 200, answer(`{"schema_version":1,`, true), 0, "LLM plan is not the expected JSON object"},
		{"unknown plan key", 200, answer(`{"schema_version":1,"shell":"rm -rf /"}`, true), 0, `unknown field "shell"`},
		{"no output text", 200, `{"output":[{"content":[{"type":"other"}]}]}`, 0, "has no output_text"},
		{"refusal", 200, `{"output":[{"content":[{"type":"refusal","refusal":"I cannot"}]}]}`, 0, "refused to plan: I cannot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := responsesServer(t, tt.status, tt.body, tt.delay)
			_, err := ask(t, srv.URL, 300*time.Millisecond)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error = %v; want %q", err, tt.err)
			}
		})
	}
}

func TestToPlanRejectsUnsafePlans(t *testing.T) {
	base := `{"schema_version":1,"summary":"s","primary_preset":"http","features":["http"],"http_port":8080,"health_path":"/healthz","worker_interval_secs":5,"entrypoint":null,"notes":[]}`
	tests := []struct {
		name, from, to, err string
	}{
		{"entry traversal", `"entrypoint":null`, `"entrypoint":"../../etc/passwd"`, "must not contain '..'"},
		{"entry absolute", `"entrypoint":null`, `"entrypoint":"/etc/passwd"`, "not an absolute path"},
		{"entry empty", `"entrypoint":null`, `"entrypoint":""`, "entrypoint is empty"},
		{"port 0", `"http_port":8080`, `"http_port":0`, "http_port 0 is out of range"},
		{"port negative", `"http_port":8080`, `"http_port":-1`, "http_port -1 is out of range"},
		{"health quote", `"health_path":"/healthz"`, `"health_path":"/health\"z"`, "health_path"},
		{"health no slash", `"health_path":"/healthz"`, `"health_path":"healthz"`, "must start with '/'"},
		{"feature", `"features":["http"]`, `"features":["http","redis"]`, `features: "redis"`},
		{"preset", `"primary_preset":"http"`, `"primary_preset":"rails"`, "primary_preset"},
		{"schema version", `"schema_version":1`, `"schema_version":2`, "schema_version 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lp, err := ParseResponse([]byte(answer(strings.Replace(base, tt.from, tt.to, 1), true)))
			if err != nil {
				t.Fatal(err)
			}
			p, err := lp.ToPlan("")
			if err == nil {
				err = p.Validate("python")
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error = %v; want %q", err, tt.err)
			}
		})
	}
	// The interval is clamped, not refused; an explicit preset wins over the model's.
	lp, err := ParseResponse([]byte(answer(strings.Replace(base, `"worker_interval_secs":5`, `"worker_interval_secs":86400`, 1), true)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := lp.ToPlan("worker")
	if err != nil {
		t.Fatal(err)
	}
	if p.IntervalS != 3600 || p.Preset != "worker" {
		t.Errorf("plan = %+v; want interval 3600 and preset worker", p)
	}
}
