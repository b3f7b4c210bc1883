package scaffold

import (
	"path"
	"strings"
	"testing"
)

// FuzzLLMPlan: a model's answer (untrusted) becomes a plan only if every field is one the
// scaffold can write safely: a known preset and features, a port in range, a health path that
// passes its check, an entry file that stays inside src/ with the language's extension.
func FuzzLLMPlan(f *testing.F) {
	f.Add(goodPlan, "python")
	f.Add(`{"schema_version":1,"primary_preset":"http","features":[],"http_port":5432,"health_path":"/a/../b","entrypoint":"../x.sh"}`, "shell")
	f.Add(`{"schema_version":1,"primary_preset":"postgres","worker_interval_secs":-5,"entrypoint":"sub/main.go"}`, "go")
	f.Fuzz(func(t *testing.T, plan, lang string) {
		for _, data := range []string{answer(plan, true), answer(plan, false)} {
			lp, err := ParseResponse([]byte(data))
			if err != nil {
				continue
			}
			p, err := lp.ToPlan("")
			if err != nil {
				continue
			}
			if err := p.Validate(lang); err != nil {
				continue
			}
			if !IsPreset(p.Preset) || p.Port < 1 || p.Port > 65535 || p.IntervalS < 1 || p.IntervalS > 3600 {
				t.Fatalf("accepted plan %+v", p)
			}
			if ValidateHealthPath(p.HealthPath) != nil || !strings.HasPrefix(p.HealthPath, "/") {
				t.Fatalf("accepted health path %q", p.HealthPath)
			}
			e := p.Entrypoint
			if path.IsAbs(e) || path.Clean(e) != e || e == ".." || strings.HasPrefix(e, "../") || ValidateEntrypoint(e, lang) != nil {
				t.Fatalf("accepted entry %q", e)
			}
		}
	})
}
