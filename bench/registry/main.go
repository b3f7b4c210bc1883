// Command registry measures ukernel push and pull against a local registry (Debian's
// docker-registry on 127.0.0.1, plain HTTP) beside `skopeo copy` of the same bytes, in ABBA
// order: a push from a cold cache (the layer compressed then sent), a push with the layer
// already compressed (the same bytes skopeo sends), a pull into an empty cache (decompressed
// and checked) beside skopeo copying the artifact to an OCI layout, a no-op re-push, and the
// peak RSS of each ukernel command.
//
//	go build -o /tmp/ukernel ./cmd/ukernel
//	go run ./bench/registry -bin /tmp/ukernel [-image dist/x.img] [-n 5]
//
// Without -image it packs a python worker project (`ukernel init --template worker`) with the
// user's cache.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ukernel-dev/ukernel/internal/testenv"
)

type sample struct {
	wall time.Duration
	cpu  time.Duration // user + system: steadier than wall time on a shared machine
	rss  int64         // KiB
}

func main() {
	bin := flag.String("bin", "", "ukernel binary")
	img := flag.String("image", "", "image to push (default: pack a python worker)")
	n := flag.Int("n", 5, "rounds")
	flag.Parse()
	if *bin == "" {
		log.Fatal("-bin is required")
	}
	work, err := os.MkdirTemp("", "bench-registry-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(work)
	if *img == "" {
		*img = packWorker(*bin, work)
	}
	fi, err := os.Stat(*img)
	if err != nil {
		log.Fatal(err)
	}
	// The warm cache: the layer compressed once, reused by every warm push.
	warm := userEnv(work, "warm")
	seedHost, stopSeed := startRegistry(work, "seed")
	must(run(*bin, warm, "push", seedHost+"/warm/seed:v1", "--image", *img, "--insecure"))
	stopSeed()

	// skopeo's source: an OCI layout holding the same manifest and blobs ukernel pushes.
	layout := filepath.Join(work, "layout")
	must(run(*bin, userEnv(work, "layout"), "push", "oci-layout:"+layout+":v1", "--image", *img))

	// Every push goes to a registry of its own, started for it: none has a blob yet, and
	// skopeo's blob cache cannot mount one from an earlier push.
	var coldPush, warmPush, skopeoPush, ukPull, skopeoPull, noop []sample
	for i := range *n {
		ukFirst := i%2 == 0
		for _, ukTurn := range []bool{ukFirst, !ukFirst} {
			if ukTurn {
				host, stop := startRegistry(work, fmt.Sprintf("uk-cold%d", i))
				coldPush = append(coldPush, must(run(*bin, userEnv(work, fmt.Sprintf("cold%d", i)), "push", host+"/w:v1", "--image", *img, "--insecure")))
				stop()
				host, stop = startRegistry(work, fmt.Sprintf("uk%d", i))
				warmPush = append(warmPush, must(run(*bin, warm, "push", host+"/w:v1", "--image", *img, "--insecure")))
				ukPull = append(ukPull, must(run(*bin, userEnv(work, fmt.Sprintf("pull%d", i)), "pull", host+"/w:v1", "--insecure")))
				noop = append(noop, must(run(*bin, warm, "push", host+"/w:v1", "--image", *img, "--insecure")))
				stop()
			} else {
				host, stop := startRegistry(work, fmt.Sprintf("skopeo%d", i))
				skopeoPush = append(skopeoPush, must(run("skopeo", nil, "copy", "--dest-tls-verify=false", "oci:"+layout+":v1", "docker://"+host+"/w:v1")))
				skopeoPull = append(skopeoPull, must(run("skopeo", nil, "copy", "--src-tls-verify=false", "docker://"+host+"/w:v1", fmt.Sprintf("oci:%s/skopeo-pull%d:v1", work, i))))
				stop()
			}
		}
	}
	fmt.Printf("image %s: %.1f MB; %d rounds, ABBA; median (min)\n\n", filepath.Base(*img), float64(fi.Size())/1e6, *n)
	fmt.Printf("| figure | ukernel wall | skopeo wall | ratio | ukernel CPU | skopeo CPU | ukernel peak RSS |\n|---|---:|---:|---:|---:|---:|---:|\n")
	row := func(name string, u, s []sample) {
		if s == nil {
			fmt.Printf("| %s | %s | | | %.3f s | | %s |\n", name, show(u), medCPU(u).Seconds(), rss(u))
			return
		}
		fmt.Printf("| %s | %s | %s | %.2fx | %.3f s | %.3f s | %s |\n", name, show(u), show(s), med(u).Seconds()/med(s).Seconds(), medCPU(u).Seconds(), medCPU(s).Seconds(), rss(u))
	}
	row("push, cold cache (compress + send)", coldPush, skopeoPush)
	row("push, layer cached (send)", warmPush, skopeoPush)
	row("pull into an empty cache (vs skopeo to an OCI layout)", ukPull, skopeoPull)
	row("no-op re-push", noop, nil)
}

func userEnv(work, name string) []string {
	d := filepath.Join(work, "user-"+name)
	return []string{"XDG_CACHE_HOME=" + filepath.Join(d, "cache"), "XDG_CONFIG_HOME=" + filepath.Join(d, "config")}
}

func run(bin string, env []string, args ...string) (sample, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	s := sample{wall: time.Since(start)}
	if err != nil {
		return s, fmt.Errorf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		s.rss = ru.Maxrss
		s.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return s, nil
}

func must(s sample, err error) sample {
	if err != nil {
		log.Fatal(err)
	}
	return s
}

func med(s []sample) time.Duration {
	d := make([]time.Duration, len(s))
	for i, x := range s {
		d[i] = x.wall
	}
	slices.Sort(d)
	return d[len(d)/2]
}

func medCPU(s []sample) time.Duration {
	d := make([]time.Duration, len(s))
	for i, x := range s {
		d[i] = x.cpu
	}
	slices.Sort(d)
	return d[len(d)/2]
}

func show(s []sample) string {
	m := slices.MinFunc(s, func(a, b sample) int { return int(a.wall - b.wall) })
	return fmt.Sprintf("%.3f s (%.3f)", med(s).Seconds(), m.wall.Seconds())
}

func rss(s []sample) string {
	m := slices.MaxFunc(s, func(a, b sample) int { return int(a.rss - b.rss) })
	return fmt.Sprintf("%.1f MB", float64(m.rss)/1024)
}

func packWorker(bin, work string) string {
	dir := filepath.Join(work, "bench-worker")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Fatal(err)
	}
	for _, args := range [][]string{{"init", "--name", "bench-worker", "--lang", "python", "--template", "worker"}, {"pack"}} {
		cmd := exec.Command(bin, append([]string{"-C", dir}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			log.Fatalf("ukernel %v: %v\n%s", args, err, out)
		}
	}
	return filepath.Join(dir, "dist", "bench-worker.img")
}

func startRegistry(work, name string) (string, func()) {
	host, stop, err := testenv.StartRegistry(filepath.Join(work, "registry-"+name))
	if err != nil {
		log.Fatal(err)
	}
	return host, stop
}
