package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/workdir"
)

func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestWriteFile: the file is published with its mode and content, its directory made, and no
// temporary file is left.
func TestWriteFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	p := filepath.Join(dir, "x.json")
	if err := WriteFile(p, []byte("one"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stat %v %v, want mode 0600", fi, err)
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Errorf("content %q", b)
	}
	if names := entries(t, dir); len(names) != 1 {
		t.Errorf("directory holds %v, want only x.json", names)
	}
}

// TestWriteFailureKeepsOld: a fill that fails after writing part leaves the old file as it was
// and no temporary file.
func TestWriteFailureKeepsOld(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "stamp")
	if err := WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("disk full")
	err := Write(p, 0o644, func(f *os.File) error {
		f.Write([]byte("half of the new"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Write: %v, want the fill's error", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Errorf("content %q after a failed write, want the old", b)
	}
	if names := entries(t, dir); len(names) != 1 {
		t.Errorf("directory holds %v after a failed write", names)
	}
}

// TestSweepsDeadWriters: a temporary file of a write whose process is gone (pid 2^22+1 cannot
// run: above the kernel's pid_max limit) is removed by the next write; a live process's is kept.
func TestSweepsDeadWriters(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "ukernel.lock")
	dead := filepath.Join(dir, ".ukernel.lock.tmp-4194305.1-123")
	os.WriteFile(dead, []byte("partial"), 0o600)
	mine, err := workdir.Create(dir, tempPrefix(p)) // as a write in progress in this process
	if err != nil {
		t.Fatal(err)
	}
	mine.Close()
	if err := WriteFile(p, []byte("lock"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dead writer's temporary file is left: %v", err)
	}
	if _, err := os.Stat(mine.Name()); err != nil {
		t.Errorf("a live writer's temporary file was removed: %v", err)
	}
}

// TestSymlink: a link is replaced by one pointing elsewhere, in one step.
func TestSymlink(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "console.log")
	for _, target := range []string{"runs/1/console.log", "runs/2/console.log"} {
		if err := Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		if got, err := os.Readlink(p); err != nil || got != target {
			t.Errorf("link %q %v, want %q", got, err, target)
		}
	}
	if names := entries(t, dir); len(names) != 1 {
		t.Errorf("directory holds %v", names)
	}
}

// TestPlantedLinkNotWrittenThrough: a link at the path is replaced, its target untouched.
func TestPlantedLinkNotWrittenThrough(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("keep"), 0o644)
	p := filepath.Join(dir, "state.json")
	if err := os.Symlink(victim, p); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Errorf("written through the link: %q", b)
	}
	if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("path is %v %v, want a regular file", fi, err)
	}
}

// TestPublishAndRename: a file a tool wrote is published under its path, a tree moved whole; the
// old names are gone.
func TestPublishAndRename(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, ".bin.tmp")
	if err := os.WriteFile(tmp, []byte("built"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "sub", "bin")
	os.MkdirAll(filepath.Dir(out), 0o755)
	if err := Publish(tmp, out); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(out); err != nil || string(b) != "built" {
		t.Errorf("published %q, %v", b, err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the temporary name is left: %v", err)
	}
	tree := filepath.Join(dir, "tree")
	if err := Rename(filepath.Join(dir, "sub"), tree); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tree, "bin")); err != nil {
		t.Errorf("the tree did not move whole: %v", err)
	}
	if err := Rename(filepath.Join(dir, "missing"), tree); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("renaming nothing: %v, want ErrNotExist (callers test for it)", err)
	}
}

// TestWriteNewNeverReplaces: of 8 writers racing for one path exactly one publishes, and the
// file is that one's; the others are told the path exists; no temporary file is left.
func TestWriteNewNeverReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "release.key")
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = WriteNew(p, []byte(fmt.Sprintf("key %d", i)), 0o600)
		}()
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Errorf("writers %d and %d both published", won, i)
		case err == nil:
			won = i
		case !errors.Is(err, fs.ErrExist):
			t.Errorf("writer %d: %v, want one that says the file exists", i, err)
		}
	}
	if won < 0 {
		t.Fatal("no writer published")
	}
	if b, _ := os.ReadFile(p); string(b) != fmt.Sprintf("key %d", won) {
		t.Errorf("the file holds %q, the winner wrote key %d", b, won)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v %v, want 0600", fi, err)
	}
	if names := entries(t, dir); len(names) != 1 {
		t.Errorf("directory holds %v", names)
	}
}
