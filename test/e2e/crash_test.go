package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/crashpoint"
)

// The two workloads the crash tests switch between: a killed build or pack of B followed by a
// rerun of A is the case where a stale stamp would pass B's outputs for A's.
const (
	crashSrcA = "echo crash-test A\n"
	crashSrcB = "echo crash-test B, a different bundle\n"
)

// leftoverName matches what a write step works in before it publishes: atomic writes'
// .<name>.tmp-*, a build's staging tree and its .old outputs, a pack's work directory and partial
// image, a kernel unpack and a replaced tree, the init's build directory.
var leftoverName = regexp.MustCompile(`^\..*\.tmp[-0-9]|^\.build-(tmp-)?[0-9]|\.old$|^\..*\.work-|^\.(unpack|old)-[0-9]`)

// leftovers lists what a killed command may have left under root, and whatever is in the
// cache's tmp directory.
func leftovers(t *testing.T, roots ...string) []string {
	t.Helper()
	var out []string
	for _, root := range roots {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if p != root && (leftoverName.MatchString(d.Name()) || filepath.Base(filepath.Dir(p)) == "tmp" && strings.HasSuffix(filepath.Dir(filepath.Dir(p)), "ukernel")) {
				out = append(out, p)
				if d.IsDir() {
					return filepath.SkipDir
				}
			}
			return nil
		})
	}
	return out
}

func fileSum(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// crashOutputs are the digests of a project's published outputs.
type crashOutputs struct{ Lock, Bundle, Image string }

func crashSums(t *testing.T, dir string) crashOutputs {
	return crashOutputs{
		Lock:   fileSum(t, filepath.Join(dir, "env", "ukernel.lock")),
		Bundle: fileSum(t, filepath.Join(dir, "build", "bundle.tgz")),
		Image:  fileSum(t, filepath.Join(dir, "dist", "crash.img")),
	}
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
}

// crashFix is what the crash and disk-full tests share, made once: their own cache (cold at
// first) and a project packed clean with source B, then A.
type crashFix struct {
	cacheHome, ref string
	want           map[string]crashOutputs // by source
}

var (
	crashOnce sync.Once
	crashFx   *crashFix
	crashErr  string
	crashDir  string // removed by TestMain
)

func crashFixture(t *testing.T) *crashFix {
	t.Helper()
	crashOnce.Do(func() {
		var err error
		if crashDir, err = os.MkdirTemp("", "ukernel-e2e-crash-"); err != nil {
			crashErr = err.Error()
			return
		}
		fx := &crashFix{cacheHome: filepath.Join(crashDir, "cache"), ref: filepath.Join(crashDir, "crash")}
		env := []string{"XDG_CACHE_HOME=" + fx.cacheHome}
		step := func(args ...string) bool {
			r := ukEnv(t, fx.ref, 10*time.Minute, env, args...)
			if r.code != 0 {
				crashErr = fmt.Sprintf("ukernel %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
			}
			return r.code == 0
		}
		os.MkdirAll(fx.ref, 0o755)
		if !step("init", "--name", "crash", "--lang", "shell", "--template", "minimal") {
			return
		}
		writeFile(t, filepath.Join(fx.ref, "src", "main.sh"), crashSrcB)
		if !step("env", "lock") || !step("pack") {
			return
		}
		refB := crashSums(t, fx.ref)
		writeFile(t, filepath.Join(fx.ref, "src", "main.sh"), crashSrcA)
		if !step("pack") {
			return
		}
		refA := crashSums(t, fx.ref)
		if refA.Bundle == refB.Bundle || refA.Image == refB.Image {
			crashErr = "A and B give the same outputs: the rows could not tell them apart"
			return
		}
		if left := leftovers(t, fx.ref, filepath.Join(fx.cacheHome, "ukernel")); len(left) > 0 {
			crashErr = fmt.Sprintf("left behind by clean commands: %q", left)
			return
		}
		fx.want = map[string]crashOutputs{crashSrcA: refA, crashSrcB: refB}
		crashFx = fx
	})
	if crashFx == nil {
		t.Fatalf("crash test fixture: %s", crashErr)
	}
	return crashFx
}

// TestCrashAtEachWriteStep kills a real ukernel with SIGKILL at each write step of env lock,
// build, pack and the cache (crashpoint.Env names the step: the binary kills itself there, no
// timing involved). After each kill the next commands give the byte-identical lock, bundle and
// image of a clean build, and nothing the killed one worked in is left in the project or the
// cache. One cache (its own, cold at first) serves every row; no VM is booted.
func TestCrashAtEachWriteStep(t *testing.T) {
	skipShort(t)
	fx := crashFixture(t)
	ref, want := fx.ref, fx.want
	env := []string{"XDG_CACHE_HOME=" + fx.cacheHome}
	cacheDir := filepath.Join(fx.cacheHome, "ukernel")
	run := func(dir string, extra []string, args ...string) result {
		return ukEnv(t, dir, 10*time.Minute, append(append([]string{}, env...), extra...), args...)
	}
	must := func(dir string, args ...string) {
		t.Helper()
		if r := run(dir, nil, args...); r.code != 0 {
			t.Fatalf("ukernel %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
	src := func(dir, content string) {
		writeFile(t, filepath.Join(dir, "src", "main.sh"), content)
	}

	removeAll := func(paths ...string) {
		for _, p := range paths {
			if err := os.RemoveAll(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	removeGlob := func(pattern string) {
		m, _ := filepath.Glob(pattern)
		removeAll(m...)
	}
	// smallDebs removes the cached .deb files under 1 MiB, which the next build fetches again.
	smallDebs := func() {
		filepath.WalkDir(cache.Blobs.In(cacheDir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			fi, _ := d.Info()
			b := make([]byte, 8)
			if f, err := os.Open(p); err == nil {
				io.ReadFull(f, b)
				f.Close()
			}
			if fi != nil && fi.Size() < 1<<20 && string(b) == "!<arch>\n" {
				os.Remove(p)
			}
			return nil
		})
	}

	rows := []struct {
		name, step string
		setup      func(dir string) // before the killed command
		killed     []string         // the command killed at step, with src killedSrc
		killedSrc  string
		rerunSrc   string // the source of the reruns: env lock, then pack
	}{
		{"lock", "atomic:ukernel.lock", func(d string) { removeAll(filepath.Join(d, "env", "ukernel.lock")) },
			[]string{"env", "lock"}, crashSrcA, crashSrcA},
		{"build staged, same source again", "build-staged", nil, []string{"build"}, crashSrcB, crashSrcB},
		{"build staged, source reverted", "build-staged", nil, []string{"build"}, crashSrcB, crashSrcA},
		{"build mid-swap (bundle in), source reverted", "build-swap:bundle.tgz", nil, []string{"build"}, crashSrcB, crashSrcA},
		{"build mid-swap (adapter in), source reverted", "build-swap:adapter", nil, []string{"build"}, crashSrcB, crashSrcA},
		{"build swapped, stamp not written, source reverted", "atomic:.build-stamp.json", nil, []string{"build"}, crashSrcB, crashSrcA},
		{"build swapped, stamp not written", "atomic:.build-stamp.json", nil, []string{"build"}, crashSrcB, crashSrcB},
		{"pack image written, not renamed", "pack-image", nil, []string{"pack"}, crashSrcB, crashSrcB},
		{"pack image written, not renamed, source reverted", "pack-image", nil, []string{"pack"}, crashSrcB, crashSrcA},
		{"pack stamp not written", "atomic:.pack-crash.img.json", nil, []string{"pack"}, crashSrcB, crashSrcB},
		{"cache: index state", "cache-state", func(d string) {
			removeAll(cache.State.In(cacheDir), filepath.Join(d, "env", "ukernel.lock"))
		}, []string{"env", "lock"}, crashSrcA, crashSrcA},
		{"cache: downloaded package", "cache-blob", func(d string) {
			smallDebs()
			removeAll(filepath.Join(d, "build"))
		}, []string{"build"}, crashSrcA, crashSrcA},
		{"cache: unpacked kernel tree", "cache-kernel-tree", func(d string) {
			removeGlob(cache.Kernels.In(cacheDir, "*"))
		}, []string{"pack"}, crashSrcB, crashSrcB},
		{"cache: guest init binary", "cache-init", func(d string) {
			removeGlob(cache.Inits.In(cacheDir, "*"))
		}, []string{"pack"}, crashSrcB, crashSrcB},
		{"cache: guest init's seal", "atomic:ukernel-init.seal", func(d string) {
			removeGlob(cache.Inits.In(cacheDir, "*"))
		}, []string{"pack"}, crashSrcB, crashSrcB},
	}
	for i, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "crash")
			copyTree(t, ref, dir)
			if row.setup != nil {
				row.setup(dir)
			}
			src(dir, row.killedSrc)
			r := run(dir, []string{crashpoint.Env + "=" + row.step}, row.killed...)
			if r.code != -1 {
				t.Fatalf("row %d: ukernel %s did not die at %s (exit %d)\n%s%s", i, strings.Join(row.killed, " "), row.step, r.code, r.stdout, r.stderr)
			}
			if strings.Contains(r.stderr, "goroutine") {
				t.Fatalf("panic:\n%s", r.stderr)
			}
			src(dir, row.rerunSrc)
			must(dir, "env", "lock")
			must(dir, "pack")
			if got, w := crashSums(t, dir), want[row.rerunSrc]; got != w {
				t.Errorf("after a kill at %s the rerun gives %+v, a clean build %+v", row.step, got, w)
			}
			if left := leftovers(t, dir, cacheDir); len(left) > 0 {
				t.Errorf("left behind after the rerun: %q", left)
			}
		})
	}
}
