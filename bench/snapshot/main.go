// Command snapshot measures restoring a template's snapshot against booting it cold: for the
// python preset (HTTP 200 on /healthz) and the postgres preset (psql `select 1`), it times
// `ukernel run --template NAME -d` from the command's start until the workload answers, cold
// (--cold) and restored, in ABBA order, and prints the medians, their ratio and the time until
// `run -d` returned.
//
//	go build -o /tmp/ukernel ./cmd/ukernel
//	go run ./bench/snapshot -bin /tmp/ukernel -n 11
//
// The templates live in a temporary store (UKERNEL_TEMPLATES); the environments come from the
// user's cache.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

type preset struct {
	name, template, lang string
	guestPort            int
	ready                func(port int) bool
}

var presets = map[string]preset{
	"python":   {name: "bsnap-py", template: "python", lang: "python", guestPort: 8080, ready: httpReady},
	"postgres": {name: "bsnap-pg", template: "postgres", lang: "shell", guestPort: 5432, ready: psqlReady},
}

func httpReady(port int) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func psqlReady(port int) bool {
	out, err := exec.Command("psql", "-h", "127.0.0.1", "-p", fmt.Sprint(port), "-U", "postgres", "-tAc", "select 1").Output()
	return err == nil && strings.TrimSpace(string(out)) == "1"
}

var (
	bin     string
	env     []string
	timeout time.Duration
)

func main() {
	flag.StringVar(&bin, "bin", "", "ukernel binary")
	n := flag.Int("n", 11, "runs per variant (ABBA)")
	which := flag.String("presets", "python,postgres", "presets to measure")
	flag.DurationVar(&timeout, "timeout", 3*time.Minute, "deadline of one run to ready")
	flag.Parse()
	if bin == "" {
		log.Fatal("-bin is required")
	}
	work, err := os.MkdirTemp("", "bench-snapshot-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(work)
	env = append(os.Environ(), "UKERNEL_TEMPLATES="+filepath.Join(work, "templates"))
	fmt.Printf("%d runs per variant, ABBA; median (min) from `ukernel run --template NAME -d` to ready\n\n", *n)
	fmt.Println("| preset | cold | restored | speed-up | run -d returned (restored) |\n|---|---:|---:|---:|---:|")
	for _, name := range strings.Split(*which, ",") {
		p, ok := presets[name]
		if !ok {
			log.Fatalf("preset %q: want python or postgres", name)
		}
		setup(work, p)
		var cold, restored, returned []time.Duration
		for i := range *n {
			first := i%2 == 0
			for _, c := range []bool{first, !first} {
				ready, ret := once(p, c, i)
				if c {
					cold = append(cold, ready)
				} else {
					restored, returned = append(restored, ready), append(returned, ret)
				}
			}
		}
		fmt.Printf("| %s | %s | %s | %.1fx | %s |\n", name, show(cold), show(restored), med(cold).Seconds()/med(restored).Seconds(), show(returned))
	}
}

// setup creates the preset's project and its template, and takes its snapshot.
func setup(work string, p preset) {
	dir := filepath.Join(work, p.name)
	must("init", "-C", dir, "init", "--name", p.name, "--lang", p.lang, "--template", p.template)
	must("template create", "template", "create", p.name, "--from", dir)
	must("template build --snapshot", "template", "build", p.name, "--snapshot")
}

// once runs the template cold or restored until it answers, then stops and removes it.
func once(p preset, cold bool, i int) (ready, returned time.Duration) {
	port := freePort()
	guest := fmt.Sprintf("%s-%d-%v", p.name, i, cold)
	args := []string{"run", "--template", p.name, "--name", guest, "-d", "--publish", fmt.Sprintf("%d:%d", port, p.guestPort)}
	if cold {
		args = append(args, "--cold")
	} else {
		args = append(args, "--restore")
	}
	start := time.Now()
	out, err := command(args...).CombinedOutput()
	returned = time.Since(start)
	if err != nil {
		log.Fatalf("ukernel %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	defer func() {
		must("stop", "stop", guest)
		must("rm", "rm", guest)
	}()
	for !p.ready(port) {
		if time.Since(start) > timeout {
			log.Fatalf("%s did not answer within %s", guest, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start), returned
}

func command(args ...string) *exec.Cmd {
	c := exec.Command(bin, args...)
	c.Env = env
	return c
}

func must(what string, args ...string) {
	if out, err := command(args...).CombinedOutput(); err != nil {
		log.Fatalf("ukernel %s: %v\n%s", what, err, out)
	}
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func med(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func show(d []time.Duration) string {
	return fmt.Sprintf("%.3f s (%.3f)", med(d).Seconds(), slices.Min(d).Seconds())
}
