package initcmd_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/pkg/cmd/root"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"ukernel": func() { os.Exit(root.Main()) },
	})
}

// TestScripts drives the real ukernel binary through testdata/script/*.txtar. $LLM is the base
// URL of a local server speaking the Responses API; its first path element picks the answer.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(e *testscript.Env) error {
			srv := httptest.NewServer(responses())
			e.Defer(srv.Close)
			e.Setenv("LLM", srv.URL)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"status":       cmdStatus,
			"validproject": cmdValidProject,
		},
	})
}

// cmdStatus runs a program and checks its exit code: status CODE PROG ARGS...
func cmdStatus(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: status CODE PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[1], args[2:]...)
	cmd.Dir = ts.MkAbs(".")
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "WORK", "OPENAI_API_KEY", "UKERNEL_LLM_PROVIDER", "UKERNEL_LLM_BASE_URL", "UKERNEL_LLM_MODEL", "UKERNEL_LLM_TIMEOUT"} {
		if v := ts.Getenv(k); v != "" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	cmd.Stdout, cmd.Stderr = ts.Stdout(), ts.Stderr()
	err = cmd.Run()
	got := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("%s: %v", args[1], err)
	}
	if got != want {
		ts.Fatalf("%s exited %d; want %d", strings.Join(args[1:], " "), got, want)
	}
}

// cmdValidProject loads DIR's ukernel.toml and env/ukernel.env with the project package.
func cmdValidProject(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: validproject DIR")
	}
	dir := ts.MkAbs(args[0])
	_, err := project.Load(dir)
	if err == nil {
		_, err = project.LoadEnv(dir)
	}
	if neg {
		if err == nil {
			ts.Fatalf("%s is a valid project", dir)
		}
		return
	}
	ts.Check(err)
}

// plan is a model answer in the Responses API's plan schema; edit changes one field.
func plan(edit func(map[string]any)) string {
	p := map[string]any{
		"schema_version": 1, "summary": "Python API backed by PostgreSQL", "primary_preset": "python",
		"features": []string{"python", "http", "postgres"}, "http_port": 9000, "health_path": "/ready",
		"worker_interval_secs": nil, "entrypoint": "service.py", "notes": []string{"keep the database local"},
	}
	if edit != nil {
		edit(p)
	}
	b, _ := json.Marshal(p)
	return string(b)
}

func responses() http.Handler {
	message := func(text string) any {
		return map[string]any{"id": "resp_1", "object": "response", "output": []any{
			map[string]any{"type": "message", "role": "assistant", "content": []any{map[string]any{"type": "output_text", "text": text}}},
		}}
	}
	answers := map[string]any{
		"good":      message(plan(nil)),
		"goodflat":  map[string]any{"output_text": plan(nil)},
		"traversal": message(plan(func(p map[string]any) { p["entrypoint"] = "../../etc/passwd" })),
		"absolute":  message(plan(func(p map[string]any) { p["entrypoint"] = "/etc/passwd" })),
		"port0":     message(plan(func(p map[string]any) { p["http_port"] = 0 })),
		"quote":     message(plan(func(p map[string]any) { p["health_path"] = `/he"alth` })),
		"feature":   message(plan(func(p map[string]any) { p["features"] = []string{"python", "redis"} })),
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if r.Method != http.MethodPost || rest != "v1/responses" {
			http.Error(w, `{"error":{"message":"no such endpoint"}}`, http.StatusNotFound)
			return
		}
		var req struct {
			Text struct {
				Format struct {
					Type   string `json:"type"`
					Strict bool   `json:"strict"`
				} `json:"format"`
			} `json:"text"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Text.Format.Type != "json_schema" || !req.Text.Format.Strict {
			http.Error(w, `{"error":{"message":"expected a strict json_schema text format"}}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch name {
		case "refuse":
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}`)
		case "slow":
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
		case "malformed":
			fmt.Fprint(w, `{"output": [{"content": [`)
		default:
			a, ok := answers[name]
			if !ok {
				http.Error(w, `{"error":{"message":"unknown test answer"}}`, http.StatusNotFound)
				return
			}
			json.NewEncoder(w).Encode(a)
		}
	})
}
