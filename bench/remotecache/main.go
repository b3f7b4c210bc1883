// Command remotecache measures `ukernel pack` of a python worker on a fresh checkout two ways,
// side by side in ABBA order: a cold build (no build/ and no image, the packages already in the
// user's cache: the most a build can be spared without a remote cache) and a hit in the shared
// build cache (Debian's docker-registry on 127.0.0.1, and an empty XDG_CACHE_HOME: nothing
// local at all), checking that both give the same image.
//
//	go build -o /tmp/ukernel ./cmd/ukernel
//	go run ./bench/remotecache -bin /tmp/ukernel [-n 2]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ukernel-dev/ukernel/internal/testenv"
)

type sample struct{ wall, cpu time.Duration }

func main() {
	bin := flag.String("bin", "", "ukernel binary")
	n := flag.Int("n", 2, "ABBA rounds (each runs both twice)")
	flag.Parse()
	if *bin == "" {
		log.Fatal("-bin is required")
	}
	work, err := os.MkdirTemp("", "bench-remotecache-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(work)
	host, stop := startRegistry(work)
	defer stop()
	repo := host + "/bench/cache"
	insecure := fmt.Sprintf("[registry.%q]\ninsecure = true\n", host)
	writer := config(work, "writer", fmt.Sprintf("[cache]\nremote = %q\npush = true\n", repo)+insecure)
	reader := config(work, "reader", fmt.Sprintf("[cache]\nremote = %q\n", repo)+insecure)
	builder := append(config(work, "builder", ""), "UKERNEL_CACHE_REMOTE=off")

	src := filepath.Join(work, "src", "bench-worker")
	must(os.MkdirAll(src, 0o755))
	mustRun(*bin, src, writer, "init", "--name", "bench-worker", "--lang", "python", "--template", "worker")
	mustRun(*bin, src, writer, "pack")
	mustRun(*bin, src, writer, "cache", "push")

	var cold, hit []sample
	var coldSum, hitSum string
	round := 0
	measure := func(isHit bool) {
		round++
		dir := checkout(work, src, round)
		env := builder
		if isHit {
			empty := filepath.Join(work, fmt.Sprintf("cache-%d", round))
			env = append(slices.Clone(reader), "XDG_CACHE_HOME="+empty)
		}
		s, out := timed(*bin, dir, env, "--json", "pack")
		var r struct {
			SHA256 string
			Remote *struct{ Outcome string }
		}
		must(json.Unmarshal([]byte(out), &r))
		if isHit {
			if r.Remote == nil || r.Remote.Outcome != "hit" {
				log.Fatalf("round %d: expected a cache hit: %s", round, out)
			}
			hit, hitSum = append(hit, s), r.SHA256
		} else {
			cold, coldSum = append(cold, s), r.SHA256
		}
	}
	for i := 0; i < *n; i++ {
		for _, isHit := range []bool{false, true, true, false} {
			measure(isHit)
		}
	}
	if coldSum != hitSum {
		log.Fatalf("the hit gave sha256 %s, the build %s", hitSum, coldSum)
	}
	fmt.Printf("pack of a python worker, fresh checkout, %d runs each (ABBA), image sha256 %s\n", len(cold), coldSum[:12])
	fmt.Printf("  cold build (warm package cache): median %v wall, %v cpu   %s\n", med(cold, false), med(cold, true), show(cold))
	fmt.Printf("  remote cache hit (empty cache):  median %v wall, %v cpu   %s\n", med(hit, false), med(hit, true), show(hit))
	fmt.Printf("  hit / build: %.2fx faster (wall)\n", float64(med(cold, false))/float64(med(hit, false)))
}

// checkout copies what a clone has: ukernel.toml, the lock, src/.
func checkout(work, src string, round int) string {
	dir := filepath.Join(work, fmt.Sprintf("co-%d", round), "bench-worker")
	must(os.MkdirAll(dir, 0o755))
	for _, p := range []string{"ukernel.toml", "env", "src"} {
		if out, err := exec.Command("cp", "-a", filepath.Join(src, p), filepath.Join(dir, p)).CombinedOutput(); err != nil {
			log.Fatalf("cp: %v %s", err, out)
		}
	}
	return dir
}

func config(work, name, content string) []string {
	dir := filepath.Join(work, "config-"+name)
	must(os.MkdirAll(filepath.Join(dir, "ukernel"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "ukernel", "config.toml"), []byte(content), 0o644))
	return []string{"XDG_CONFIG_HOME=" + dir, "UKERNEL_CACHE_REMOTE=", "UKERNEL_CACHE_PUSH="}
}

func timed(bin, dir string, env []string, args ...string) (sample, string) {
	cmd := exec.Command(bin, append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	if err != nil {
		log.Fatalf("ukernel %v: %v\n%s", args, err, stderr.String())
	}
	return sample{wall: time.Since(start), cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}, string(out)
}

func mustRun(bin, dir string, env []string, args ...string) {
	timed(bin, dir, env, args...)
}

func med(s []sample, cpu bool) time.Duration {
	d := make([]time.Duration, len(s))
	for i, x := range s {
		d[i] = x.wall
		if cpu {
			d[i] = x.cpu
		}
	}
	slices.Sort(d)
	return (d[(len(d)-1)/2] + d[len(d)/2]) / 2
}

func show(s []sample) string {
	var parts []string
	for _, x := range s {
		parts = append(parts, x.wall.Round(100*time.Millisecond).String())
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func startRegistry(work string) (string, func()) {
	host, stop, err := testenv.StartRegistry(filepath.Join(work, "registry"))
	if err != nil {
		log.Fatal(err)
	}
	return host, stop
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
