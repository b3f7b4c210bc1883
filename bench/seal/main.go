// Command seal compares two ukernel binaries (A, B: before and after a change to how the caches
// are checked) on the figures a cache check can slow down: a no-op rebuild (`ukernel pack` of a
// packed python worker) and a cold start (`ukernel run` of a packed minimal image, process start
// to exit). Each binary gets its own cache, seeded with hard links to the user cache's downloads
// so nothing is fetched, and its own projects; the timings alternate in ABBA order.
//
//	go run ./bench/seal -a /tmp/ukernel-before -b /tmp/ukernel-after [-n 10]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/ukernel-dev/ukernel/internal/cache"
)

type variant struct {
	name, bin, cache string
	worker, minimal  string
	noop, run        []time.Duration
}

func main() {
	a := flag.String("a", "", "ukernel binary A (before)")
	b := flag.String("b", "", "ukernel binary B (after)")
	n := flag.Int("n", 10, "timings per variant and figure")
	flag.Parse()
	if *a == "" || *b == "" {
		log.Fatal("-a and -b are required")
	}
	userCache, err := cache.DefaultDir()
	if err != nil {
		log.Fatal(err)
	}
	work, err := os.MkdirTemp("", "bench-seal-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(work)
	vs := []*variant{{name: "A", bin: *a}, {name: "B", bin: *b}}
	for _, v := range vs {
		v.cache = filepath.Join(work, "cache-"+v.name)
		for _, f := range []cache.Folder{cache.Blobs, cache.State} {
			// Each variant runs with XDG_CACHE_HOME=v.cache: its cache is v.cache/ukernel.
			if err := linkTree(f.In(userCache), f.In(filepath.Join(v.cache, "ukernel"))); err != nil {
				log.Fatal(err)
			}
		}
		v.worker = project(v, work, "worker", "python", "worker")
		v.minimal = project(v, work, "minimal", "python", "minimal")
		for _, dir := range []string{v.worker, v.minimal} {
			if out, err := v.uk(dir, 15*time.Minute, false, "pack"); err != nil {
				log.Fatalf("%s pack: %v\n%s", v.name, err, out)
			}
		}
		v.timeRun() // the first run prepares the boot cache
	}
	for i := range *n {
		order := vs
		if i%2 == 1 {
			order = []*variant{vs[1], vs[0]}
		}
		for _, v := range order {
			v.timeNoop()
		}
		for _, v := range order {
			v.timeRun()
		}
	}
	for _, v := range vs {
		log.Printf("%s no-op %v", v.name, v.noop)
		log.Printf("%s run %v", v.name, v.run[1:])
	}
	fmt.Printf("| figure (median of %d, ABBA) | A | B |\n|---|---|---|\n", *n)
	fmt.Printf("| no-op rebuild (`ukernel pack`, python worker) | %s | %s |\n", median(vs[0].noop), median(vs[1].noop))
	fmt.Printf("| `ukernel run` of the minimal image, start to exit | %s | %s |\n", median(vs[0].run[1:]), median(vs[1].run[1:]))
}

// uk runs ukernel in project dir and returns its stdout (and stderr unless stdoutOnly), with a
// deadline: at it ukernel gets SIGINT (a run stops its guest), then SIGKILL 20 s later.
func (v *variant) uk(dir string, timeout time.Duration, stdoutOnly bool, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, v.bin, append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+v.cache)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	if stdoutOnly {
		return cmd.Output()
	}
	return cmd.CombinedOutput()
}

func project(v *variant, work, name, lang, template string) string {
	dir := filepath.Join(work, v.name+"-"+name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		log.Fatal(err)
	}
	if out, err := v.uk(dir, time.Minute, false, "init", "--name", "bench-"+name, "--lang", lang, "--template", template); err != nil {
		log.Fatalf("init: %v\n%s", err, out)
	}
	return dir
}

func (v *variant) timeNoop() {
	start := time.Now()
	out, err := v.uk(v.worker, time.Minute, true, "--json", "pack")
	d := time.Since(start)
	var r struct{ Cached bool }
	if err != nil || json.Unmarshal(out, &r) != nil || !r.Cached {
		log.Fatalf("%s: the no-op pack was not a cache hit: %v %s", v.name, err, out)
	}
	v.noop = append(v.noop, d)
}

func (v *variant) timeRun() {
	start := time.Now()
	// A boot takes seconds: a minute means the run hung.
	if out, err := v.uk(v.minimal, time.Minute, false, "run", "--accel", "tcg"); err != nil {
		log.Fatalf("%s run: %v\n%s", v.name, err, out)
	}
	v.run = append(v.run, time.Since(start))
}

// linkTree hard-links every file under src into dst.
func linkTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		return os.Link(p, filepath.Join(dst, rel))
	})
}

func median(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("%.3f s", s[len(s)/2].Seconds())
}
