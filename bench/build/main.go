// Command build measures build and pack for the python worker preset: a full pack from a warm
// package cache, a no-op rebuild, the image's size split by part and the init binary's size.
//
//	go run ./bench/build [-n 5]
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
	"time"
)

type packOut struct {
	Image  string         `json:"image"`
	Size   int64          `json:"size"`
	Cached bool           `json:"cached"`
	Sizes  map[string]int `json:"sizes"`
}

func main() {
	n := flag.Int("n", 5, "no-op rebuilds to time")
	flag.Parse()
	work, err := os.MkdirTemp("", "bench-build-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "ukernel")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/ukernel").CombinedOutput(); err != nil {
		log.Fatalf("go build ./cmd/ukernel (run from the repository root): %v\n%s", err, out)
	}
	project := func(name string) string {
		dir := filepath.Join(work, name)
		os.MkdirAll(dir, 0o755)
		run(bin, "-C", dir, "init", "--name", "bench-worker", "--lang", "python", "--template", "worker")
		return dir
	}
	// Warm the package cache (and the guest init build) with a first project.
	warm := project("warm")
	pack(bin, warm)

	cold := project("full")
	start := time.Now()
	full := pack(bin, cold)
	fullTime := time.Since(start)
	if full.Cached {
		log.Fatal("the full pack was a cache hit")
	}
	var noop []time.Duration
	for i := 0; i < *n; i++ {
		start := time.Now()
		r := pack(bin, cold)
		noop = append(noop, time.Since(start))
		if !r.Cached {
			log.Fatal("a no-op rebuild was not a cache hit")
		}
	}
	slices.Sort(noop)

	mb := func(b int) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }
	fmt.Println("| what | figure | target |")
	fmt.Println("|---|---|---|")
	fmt.Printf("| full pack, warm package cache | %.2f s | |\n", fullTime.Seconds())
	fmt.Printf("| no-op rebuild (`ukernel pack`, median of %d) | %.3f s | <= 0.5 s |\n", *n, noop[len(noop)/2].Seconds())
	fmt.Printf("| image (`dist/bench-worker.img`) | %s | <= 40 MB |\n", mb(int(full.Size)))
	for _, part := range []string{"kernel", "initramfs", "init", "modules", "boot_partition", "root_fs", "root_partition"} {
		fmt.Printf("| &nbsp; %s | %s | |\n", part, mb(full.Sizes[part]))
	}
	fmt.Printf("| init binary (ukernel-init, static) | %s | <= 5 MB |\n", mb(full.Sizes["init"]))
}

func run(bin string, args ...string) []byte {
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		log.Fatalf("ukernel %v: %v\n%s", args, err, msg)
	}
	return out
}

func pack(bin, dir string) packOut {
	var r packOut
	if err := json.Unmarshal(run(bin, "-C", dir, "--json", "pack"), &r); err != nil {
		log.Fatal(err)
	}
	return r
}
