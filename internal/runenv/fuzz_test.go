package runenv

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	"github.com/ukernel-dev/ukernel/internal/project"
)

// FuzzParseEnv reads any env file and -e values (NUL separates flags: argv cannot hold one).
// What it accepts is a valid process environment; written back with EnvFile (as deploy keeps
// a revision's environment on the host) it reads back the same, and EnvFile refuses only the
// values an env file cannot carry.
func FuzzParseEnv(f *testing.F) {
	f.Add([]byte("# comment\n\nA=1\r\nB=from file\nC=x=y\n"), "B=flag\x00EMPTY=")
	f.Add([]byte("GOOD=1\nnot a pair\n"), "")
	f.Add([]byte("PATH\n"), "X=a\nB=b")
	f.Add([]byte(""), "#A=b")
	f.Add([]byte("T=trailing \n"), "V=x \x00W=\r")
	f.Fuzz(func(t *testing.T, file []byte, flags string) {
		dir := t.TempDir()
		p := filepath.Join(dir, "env")
		if err := os.WriteFile(p, file, 0o600); err != nil {
			t.Fatal(err)
		}
		env, err := ParseEnv(strings.Split(flags, "\x00"), []string{p})
		if err != nil {
			return
		}
		carriable := true
		for k, v := range env {
			if project.ValidateEnvName(k) != nil || strings.ContainsRune(v, 0) {
				t.Fatalf("accepted %q=%q", k, v)
			}
			if strings.Contains(v, "\n") || strings.TrimRightFunc(v, unicode.IsSpace) != v {
				carriable = false
			}
		}
		b, err := EnvFile(env)
		if err != nil {
			if carriable {
				t.Fatalf("EnvFile(%q): %v", env, err)
			}
			return
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		back, err := ParseEnv(nil, []string{p})
		if err != nil || !maps.Equal(back, env) {
			t.Fatalf("EnvFile(%q) = %q reads back as %q, %v", env, b, back, err)
		}
	})
}
