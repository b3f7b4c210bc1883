// Command template measures templates on a shell project with two roles: the time of a no-op
// `template build` (inputs unchanged) and the disk the store uses for N variants that differ
// only in run settings, against N separate copies of their images.
//
//	go run ./bench/template [-n 11] [-variants 8]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	n := flag.Int("n", 11, "no-op builds to time")
	variants := flag.Int("variants", 8, "variants to build (half per role)")
	flag.Parse()
	work, err := os.MkdirTemp("", "bench-template-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "ukernel")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/ukernel").CombinedOutput(); err != nil {
		log.Fatalf("go build ./cmd/ukernel (run from the repository root): %v\n%s", err, out)
	}
	store := filepath.Join(work, "templates")
	os.Setenv("UKERNEL_TEMPLATES", store)
	dir := filepath.Join(work, "shop")
	os.MkdirAll(dir, 0o755)
	run(bin, "-C", dir, "init", "--name", "shop", "--lang", "shell", "--template", "minimal")
	appendFile(filepath.Join(dir, "ukernel.toml"), "\n[roles.api]\nentry = \"src/api.sh\"\n\n[roles.worker]\nentry = \"src/worker.sh\"\n")
	write(filepath.Join(dir, "src/api.sh"), "echo api\n")
	write(filepath.Join(dir, "src/worker.sh"), "echo worker\n")
	var vf strings.Builder
	vf.WriteString("name = \"shop\"\n")
	for i := 0; i < *variants; i++ {
		role := []string{"api", "worker"}[i%2]
		fmt.Fprintf(&vf, "\n[[variants]]\nname = \"shop-%d\"\nrole = %q\nmemory_mb = %d\n", i, role, 256+64*i)
	}
	write(filepath.Join(dir, "variants.toml"), vf.String())

	start := time.Now()
	out := run(bin, "-C", dir, "--json", "template", "build", "--config", "variants.toml")
	first := time.Since(start)
	var res []struct {
		Outcome  string `json:"outcome"`
		Revision struct {
			ID    string `json:"id"`
			Sizes struct {
				Total int64 `json:"total"`
			} `json:"sizes"`
		} `json:"revision"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		log.Fatalf("template build --json: %v\n%s", err, out)
	}
	built, ids := 0, map[string]bool{}
	var copies int64
	for _, r := range res {
		if r.Outcome == "built" {
			built++
		}
		ids[r.Revision.ID] = true
		copies += r.Revision.Sizes.Total
	}

	var noop []time.Duration
	for i := 0; i < *n; i++ {
		start := time.Now()
		out := run(bin, "-C", dir, "--json", "template", "build", "shop-0")
		noop = append(noop, time.Since(start))
		if !strings.Contains(string(out), `"up-to-date"`) {
			log.Fatalf("no-op build %d was not up to date:\n%s", i, out)
		}
	}
	slices.Sort(noop)
	onDisk, apparent := usage(store)
	fmt.Printf("variants: %d templates, %d distinct revisions, %d images built, first build %.1f s\n", len(res), len(ids), built, first.Seconds())
	fmt.Printf("no-op template build (n=%d): median %.3f s, min %.3f s, max %.3f s\n", *n, noop[len(noop)/2].Seconds(), noop[0].Seconds(), noop[len(noop)-1].Seconds())
	fmt.Printf("store on disk: %.1f MiB allocated (%.1f MiB apparent, each inode once); %d separate images would take %.1f MiB apparent\n",
		mib(onDisk), mib(apparent), len(res), mib(copies))
}

// usage sums the allocated and apparent sizes of the files under dir, counting a hard-linked
// file once.
func usage(dir string) (allocated, apparent int64) {
	seen := map[uint64]bool{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		if seen[st.Ino] {
			return nil
		}
		seen[st.Ino] = true
		allocated += st.Blocks * 512
		apparent += fi.Size()
		return nil
	})
	return allocated, apparent
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func run(bin string, args ...string) []byte {
	cmd := exec.Command(bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		log.Fatalf("ukernel %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func write(p, s string) {
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		log.Fatal(err)
	}
}

func appendFile(p, s string) {
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		log.Fatal(err)
	}
}
