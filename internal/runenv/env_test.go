package runenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseEnv(t *testing.T) {
	file := filepath.Join(t.TempDir(), "env")
	os.WriteFile(file, []byte("# comment\n\nA=1\nB=from file\nC=x=y\n"), 0o600)
	t.Setenv("UKTEST_HOST", "host value")
	env, err := ParseEnv([]string{"B=flag", "UKTEST_HOST", "EMPTY="}, []string{file})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"A": "1", "B": "flag", "C": "x=y", "UKTEST_HOST": "host value", "EMPTY": ""}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}
	os.WriteFile(file, []byte("GOOD=1\nnot a pair secretvalue\n"), 0o600)
	_, err = ParseEnv(nil, []string{file})
	if err == nil || !strings.Contains(err.Error(), file+":2") || strings.Contains(err.Error(), "secretvalue") {
		t.Errorf("bad env file: %v (want file:line, without the value)", err)
	}
	if _, err := ParseEnv([]string{"UKTEST_UNSET_VAR"}, nil); err == nil {
		t.Error("-e of an unset variable accepted")
	}
}
