package key

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/sign"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

func TestGenerate(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	run := func(args ...string) (string, error) {
		ios, _, out, _ := iostreams.Test()
		cmd := NewCmdKey(&cmdutil.Factory{IO: ios, Dir: ".", JSON: true}, nil)
		cmd.SetArgs(args)
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		err := cmd.Execute()
		return out.String(), err
	}
	out, err := run("generate", "release")
	var k Key
	if err != nil || json.Unmarshal([]byte(out), &k) != nil {
		t.Fatalf("generate: %q %v", out, err)
	}
	fi, err := os.Stat(k.Private)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode: %v %v", fi, err)
	}
	priv, _ := os.ReadFile(k.Private)
	pub, _ := os.ReadFile(k.Public)
	sk, err := sign.ParsePrivateKey(priv)
	pk, err2 := sign.ParsePublicKey(pub)
	if err != nil || err2 != nil || sk.ID != pk.ID || sk.ID.String() != k.KeyID {
		t.Fatalf("the key pair does not match: %v %v", err, err2)
	}
	if _, err := run("generate", "release"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("overwriting a key: %v", err)
	}
	if after, _ := os.ReadFile(k.Private); string(after) != string(priv) {
		t.Fatal("the existing key was changed")
	}
	if _, err := run("generate", "../evil"); err == nil {
		t.Fatal("a key name with a path was accepted")
	}
	out, err = run("list")
	var keys []Key
	if err != nil || json.Unmarshal([]byte(out), &keys) != nil || len(keys) != 1 || keys[0].Private == "" {
		t.Fatalf("list: %q %v", out, err)
	}
}
