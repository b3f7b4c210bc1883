package template

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// A store write that runs out of space at each of its steps in turn (the image copy, revision.json,
// the input key, current: a tmpfs left with 0, 1, 2... pages more than the image) fails with
// ENOSPC and leaves the previous revision current and every stored image whole; once space is
// freed the same add gives the revision a clean store gives, and nothing is left behind.
func TestDiskFullAtEachStep(t *testing.T) {
	img1, img2 := testImage(t, "api", 1), testImage(t, "api", 2)
	fi, err := os.Stat(img2)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	imgPages := (fi.Size() + page - 1) / page
	// The steps in the order an add writes them, each the one that fails with a page less.
	steps := []string{ImageFile, RevisionFile, "k2", CurrentFile}
	failed := 0
	for extra := int64(-1); ; extra++ { // -1: the image does not fit
		if extra > 8 {
			t.Fatalf("an add still fails with %d pages free beyond its image", extra-1)
		}
		mnt := t.TempDir()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.FormatInt(4*fi.Size()+(1<<20), 10), "tmpfs", mnt).CombinedOutput(); err != nil {
			t.Skipf("needs a tmpfs to fill (mount as root): %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
		s := At(filepath.Join(mnt, "templates"))
		create(t, s, "api")
		r1 := add(t, s, "api", img1, "k1")
		ballast := filepath.Join(mnt, "ballast")
		var st syscall.Statfs_t
		if err := syscall.Statfs(mnt, &st); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(ballast, make([]byte, int64(st.Bavail)*st.Bsize-(imgPages+extra)*page), 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := s.AddImage("api", img2, Revision{InputKey: "k2"})
		if err == nil {
			err = s.SetCurrent("api", r.ID)
		}
		if err == nil {
			if failed != len(steps) {
				t.Fatalf("%d steps ran out of space, want %d (%s)", failed, len(steps), strings.Join(steps, ", "))
			}
			t.Logf("%d steps ran out of space; with %d pages free beyond the image, the add succeeds", failed, extra)
			return
		}
		if failed == len(steps) || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "/"+steps[failed]+":") {
			t.Fatalf("%d pages free beyond the image: %v, want ENOSPC naming the next step's file", extra, err)
		}
		failed++
		if cur, err := s.Current("api"); err != nil || cur != r1.ID {
			t.Fatalf("%d pages beyond: current %s, %v; want the previous %s", extra, ShortID(cur), err, r1.Short())
		}
		revs, err := s.Revisions("api")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range revs {
			if err := s.Verify("api", r.ID); err != nil {
				t.Fatal(err)
			}
		}
		os.Remove(ballast)
		r2 := add(t, s, "api", img2, "k2")
		if want := fileSHA(t, img2); r2.ID != want {
			t.Fatalf("the rerun's revision %s, the image's digest %s", r2.Short(), ShortID(want))
		}
		if err := s.Verify("api", r2.ID); err != nil {
			t.Fatal(err)
		}
		for _, dir := range []string{filepath.Join(s.TemplateDir("api"), RevisionsDir), filepath.Join(s.Dir(), trashDir), filepath.Join(s.Dir(), keysDir), s.TemplateDir("api")} {
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".") {
					t.Errorf("%d pages beyond: left behind: %s", extra, filepath.Join(dir, e.Name()))
				}
			}
		}
	}
}

func fileSHA(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
