package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/cache"
)

// mountTmpfs mounts a tmpfs of size bytes on a new directory, or skips the test when it cannot.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.FormatInt(size, 10), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("needs a tmpfs to fill (mount as root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fill writes a ballast file on the filesystem of dir so that free bytes remain (rounded down
// to pages), and returns a function that removes it.
func fill(t *testing.T, dir string, free int64) func() {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	avail := int64(st.Bavail) * st.Bsize
	ballast := filepath.Join(dir, "ballast")
	f, err := os.Create(ballast)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for left := avail - free; left > 0; {
		n := int64(len(chunk))
		if left < n {
			n = left
		}
		w, err := f.Write(chunk[:n])
		left -= int64(w)
		if err != nil {
			break // full: free is 0
		}
	}
	f.Close()
	return func() { os.Remove(ballast) }
}

// enospcMessage is a refusal naming the file it could not write.
var enospcMessage = regexp.MustCompile(`\S+/\S+: no space left on device`)

// TestDiskFullAtEachWriteStep runs env lock, build, pack and a cache write on a filesystem
// (tmpfs) filled so that each step in turn runs out of space: the command exits 1 naming what
// it could not write, without a panic, leaves no half-written artefact (the previous image is
// intact and verifies) and nothing it worked in; once space is freed the same command gives the
// byte-identical result of a clean build.
func TestDiskFullAtEachWriteStep(t *testing.T) {
	skipShort(t)
	fx := crashFixture(t)
	src := func(dir, content string) {
		writeFile(t, filepath.Join(dir, "src", "main.sh"), content)
	}
	buildSize := dirSize(t, filepath.Join(fx.ref, "build"))
	// built builds B before the disk fills, so that only the pack writes.
	built := func(dir string) {
		src(dir, crashSrcB)
		if r := ukEnv(t, dir, 10*time.Minute, []string{"XDG_CACHE_HOME=" + fx.cacheHome}, "build"); r.code != 0 {
			t.Fatalf("build: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	}
	rows := []struct {
		name  string
		free  int64 // bytes left on the project's filesystem
		cache bool  // the cache is on the tmpfs instead (kernel tree removed), the project not
		setup func(dir string)
		args  []string
		src   string
	}{
		{"env lock", 0, false, func(d string) { os.Remove(filepath.Join(d, "env", "ukernel.lock")) }, []string{"env", "lock"}, crashSrcA},
		{"build", 0, false, nil, []string{"pack"}, crashSrcB},
		{"build, half the staging tree", buildSize / 2, false, nil, []string{"pack"}, crashSrcB},
		{"pack: its work directory", 4 << 20, false, built, []string{"pack"}, crashSrcB},
		{"pack: the image", 40 << 20, false, built, []string{"pack"}, crashSrcB},
		{"cache: kernel unpack", 16 << 20, true, nil, []string{"pack"}, crashSrcB},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			mnt := mountTmpfs(t, 512<<20)
			dir := filepath.Join(mnt, "crash")
			cacheHome := fx.cacheHome
			fsDir := mnt
			if row.cache {
				dir = filepath.Join(t.TempDir(), "crash")
				cacheHome = filepath.Join(mnt, "cache")
				copyTree(t, fx.cacheHome, cacheHome)
				m, _ := filepath.Glob(cache.Kernels.In(filepath.Join(cacheHome, "ukernel"), "*"))
				for _, p := range m {
					os.RemoveAll(p)
				}
			}
			copyTree(t, fx.ref, dir)
			if row.cache {
				os.Remove(filepath.Join(dir, "dist", "crash.img")) // the pack needs the kernel tree
			}
			if row.setup != nil {
				row.setup(dir)
			}
			src(dir, row.src)
			env := []string{"XDG_CACHE_HOME=" + cacheHome}
			free := fill(t, fsDir, row.free)
			r := ukEnv(t, dir, 10*time.Minute, env, row.args...)
			if r.code != 1 || !enospcMessage.MatchString(r.stderr) || strings.Contains(r.stderr, "goroutine") {
				t.Fatalf("ukernel %s on a full disk: exit %d, want 1 and a message naming the file not written\n%s%s", strings.Join(row.args, " "), r.code, r.stdout, r.stderr)
			}
			t.Logf("refused: %s", strings.TrimSpace(enospcMessage.FindString(r.stderr)))
			if left := leftovers(t, dir, filepath.Join(cacheHome, "ukernel")); len(left) > 0 {
				t.Errorf("left behind by the failed command: %q", left)
			}
			img := filepath.Join(dir, "dist", "crash.img")
			if _, err := os.Stat(img); err == nil {
				if got := fileSum(t, img); got != fx.want[crashSrcA].Image {
					t.Errorf("the previous image changed: sha256 %s, was %s", got, fx.want[crashSrcA].Image)
				}
				if r := ukEnv(t, dir, time.Minute, env, "inspect", img); r.code != 0 {
					t.Errorf("the previous image does not verify:\n%s%s", r.stdout, r.stderr)
				}
			}
			free()
			for _, args := range [][]string{{"env", "lock"}, {"pack"}} {
				if r := ukEnv(t, dir, 10*time.Minute, env, args...); r.code != 0 {
					t.Fatalf("ukernel %s once space is freed: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
				}
			}
			if got, w := crashSums(t, dir), fx.want[row.src]; got != w {
				t.Errorf("once space is freed: %+v, a clean build %+v", got, w)
			}
			if left := leftovers(t, dir, filepath.Join(cacheHome, "ukernel")); len(left) > 0 {
				t.Errorf("left behind after the rerun: %q", left)
			}
		})
	}
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += (fi.Size() + 4095) &^ 4095
		}
		return nil
	})
	return n
}
