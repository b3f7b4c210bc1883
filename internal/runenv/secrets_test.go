package runenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSecrets(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(file, []byte("from-file\n"), 0o600)
	t.Setenv("API_TOKEN", "from-env")
	got, err := ParseSecrets([]string{"db=@" + file, "API_TOKEN"})
	if err != nil {
		t.Fatal(err)
	}
	if string(got["db"]) != "from-file\n" || string(got["API_TOKEN"]) != "from-env" {
		t.Errorf("secrets %q", got)
	}
	for _, c := range []struct{ flag, want string }{
		{"db=hunter2", "not on the command line"},
		{"NOT_SET_ANYWHERE_42", "is not set here"},
		{"bad/name=@" + file, "invalid secret name"},
		{"db=@" + file + ".missing", "no such file"},
	} {
		_, err := ParseSecrets([]string{c.flag})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.flag, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error quotes the value: %v", err)
		}
	}
	if _, err := ParseSecrets([]string{"API_TOKEN", "API_TOKEN"}); err == nil {
		t.Error("a secret given twice was accepted")
	}
}
