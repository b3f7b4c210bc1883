package trust

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/sign"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// add, list, remove through the commands, on a configuration directory of the test's own.
func TestAddListRemove(t *testing.T) {
	cfg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfg)
	dir := t.TempDir()
	k, _ := sign.Generate()
	if err := os.WriteFile(filepath.Join(dir, "release.pub"), k.Public().Marshal(), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		ios, _, out, _ := iostreams.Test()
		cmd := NewCmdTrust(&cmdutil.Factory{IO: ios, Dir: dir, JSON: true}, nil)
		cmd.SetArgs(args)
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		err := cmd.Execute()
		return out.String(), err
	}
	out, err := run("add", "release.pub")
	var added Trusted
	if err != nil || json.Unmarshal([]byte(out), &added) != nil || added.Name != "release" || added.KeyID != k.ID.String() {
		t.Fatalf("add: %q %v", out, err)
	}
	if _, err := run("add", "release.pub"); err != nil {
		t.Fatalf("adding the same key again: %v", err)
	}
	other, _ := sign.Generate()
	os.WriteFile(filepath.Join(dir, "other.pub"), other.Public().Marshal(), 0o644)
	if _, err := run("add", "other.pub", "--name", "release"); err == nil || !strings.Contains(err.Error(), "another key") {
		t.Fatalf("another key under a taken name: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "bad.pub"), []byte("not a key\n"), 0o644)
	if _, err := run("add", "bad.pub"); err == nil || !strings.Contains(err.Error(), "bad.pub") {
		t.Fatalf("a file that is no key: %v", err)
	}
	out, err = run("list")
	var list []Trusted
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 {
		t.Fatalf("list: %q %v", out, err)
	}
	if _, err := run("remove", "release"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("remove", "release"); err == nil || !strings.Contains(err.Error(), "no trusted key") {
		t.Fatalf("removing twice: %v", err)
	}
}

// TestConcurrentAddsUnderOneName: adds of different keys under one name at once leave one of
// them trusted, and only that one's add says so; the others are refused. Before, each said
// it was trusted while the last rename won.
func TestConcurrentAddsUnderOneName(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	dir := t.TempDir()
	errs := make([]error, 8)
	outs := make([]string, 8)
	for i := range errs {
		k, _ := sign.Generate()
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("k%d.pub", i)), k.Public().Marshal(), 0o644)
	}
	var wg sync.WaitGroup
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ios, _, out, _ := iostreams.Test()
			errs[i] = addRun(&Options{IO: ios, JSON: true, Dir: func() (string, error) { return dir, nil }, Arg: fmt.Sprintf("k%d.pub", i), Name: "release"})
			outs[i] = out.String()
		}()
	}
	wg.Wait()
	var added []Trusted
	for i, err := range errs {
		if err != nil {
			if !strings.Contains(err.Error(), "another key") {
				t.Errorf("add %d: %v, want a refusal naming another key", i, err)
			}
			continue
		}
		var tr Trusted
		if err := json.Unmarshal([]byte(outs[i]), &tr); err != nil {
			t.Fatalf("add %d: %q %v", i, outs[i], err)
		}
		added = append(added, tr)
	}
	if len(added) != 1 {
		t.Fatalf("%d adds under one name each said their key is trusted: %+v", len(added), added)
	}
	b, _ := os.ReadFile(added[0].Path)
	if k, err := sign.ParsePublicKey(b); err != nil || k.ID.String() != added[0].KeyID {
		t.Errorf("the trusted file is key %v (%v), the add reported %s", k.ID, err, added[0].KeyID)
	}
}
