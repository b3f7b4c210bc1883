package key

import (
	"encoding/json"
	"os"
	"strings"
	"sync"
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

// TestConcurrentGenerateKeepsOnePair: generates of one name at once (two terminals, two CI
// jobs) give one key: one succeeds, the others are refused, and the files on disk are that
// key's pair. Before, each was told it had made the key while the last rename won, and the
// private and public files could be of different keys.
func TestConcurrentGenerateKeepsOnePair(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	type result struct {
		out string
		err error
	}
	res := make([]result, 8)
	var wg sync.WaitGroup
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ios, _, out, _ := iostreams.Test()
			err := generateRun(&Options{IO: ios, JSON: true, Name: "rel"})
			res[i] = result{out.String(), err}
		}()
	}
	wg.Wait()
	var made []Key
	for _, r := range res {
		if r.err != nil {
			if !strings.Contains(r.err.Error(), "already exists") {
				t.Errorf("a refused generate says %v, want that the key exists", r.err)
			}
			continue
		}
		var k Key
		if err := json.Unmarshal([]byte(r.out), &k); err != nil {
			t.Fatalf("generate: %q %v", r.out, err)
		}
		made = append(made, k)
	}
	if len(made) != 1 {
		t.Fatalf("%d generates of one name each reported a new key: %+v", len(made), made)
	}
	priv, _ := os.ReadFile(made[0].Private)
	pub, _ := os.ReadFile(made[0].Public)
	sk, err := sign.ParsePrivateKey(priv)
	pk, err2 := sign.ParsePublicKey(pub)
	if err != nil || err2 != nil || sk.ID != pk.ID || sk.ID.String() != made[0].KeyID {
		t.Fatalf("on disk: private %v (%v), public %v (%v); reported %s", sk.ID, err, pk.ID, err2, made[0].KeyID)
	}
}
