// Command snapshot measures restoring a template's snapshot against booting it cold: for the
// python and flask presets (HTTP 200 on /healthz) and the postgres preset (`select 1`), it times
// `ukernel run --template NAME -d` from the command's start until the workload answers, cold
// (--cold) and restored, in ABBA order, and prints the medians, their ratio, the time until
// `run -d` returned, the time until the restored guest's first output line after the restore
// reached the host (trace's restore.first-output), and the load average around the runs.
//
//	go build -o /tmp/ukernel ./cmd/ukernel
//	go run ./bench/snapshot -bin /tmp/ukernel -n 11
//
// The templates live in a temporary store (UKERNEL_TEMPLATES); the environments come from the
// user's cache.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
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
	"flask":    {name: "bsnap-flask", template: "flask", lang: "python", guestPort: 8080, ready: httpReady},
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

// psqlReady asks postgres `select 1` over its wire protocol (trust authentication, as the
// preset has) rather than by starting psql: a psql process per attempt costs 40 ms of CPU
// here, and 0.2-0.3 s on a loaded host, which would be the poll's real cadence.
func psqlReady(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	params := "user\x00postgres\x00database\x00postgres\x00\x00"
	startup := binary.BigEndian.AppendUint32(nil, uint32(8+len(params)))
	startup = binary.BigEndian.AppendUint32(startup, 3<<16) // protocol 3.0
	if _, err := c.Write(append(startup, params...)); err != nil {
		return false
	}
	r := bufio.NewReader(c)
	if !pgUntilReady(r, func(typ byte, body []byte) bool { return typ != 'R' || binary.BigEndian.Uint32(body) == 0 }) {
		return false
	}
	q := "select 1\x00"
	if _, err := c.Write(append(binary.BigEndian.AppendUint32([]byte{'Q'}, uint32(4+len(q))), q...)); err != nil {
		return false
	}
	row := false
	ok := pgUntilReady(r, func(typ byte, body []byte) bool {
		if typ == 'D' { // one column, "1"
			row = len(body) == 7 && binary.BigEndian.Uint16(body) == 1 && binary.BigEndian.Uint32(body[2:]) == 1 && body[6] == '1'
		}
		return true
	})
	return ok && row
}

// pgUntilReady reads postgres messages until ReadyForQuery; false on an error message, a
// message each refuses, or a read error.
func pgUntilReady(r *bufio.Reader, each func(typ byte, body []byte) bool) bool {
	for {
		var head [5]byte
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return false
		}
		n := binary.BigEndian.Uint32(head[1:])
		if n < 4 || n > 1<<20 {
			return false
		}
		body := make([]byte, n-4)
		if _, err := io.ReadFull(r, body); err != nil {
			return false
		}
		switch {
		case head[0] == 'E' || !each(head[0], body):
			return false
		case head[0] == 'Z':
			return true
		}
	}
}

var (
	bin                   string
	env                   []string
	timeout, readyTimeout time.Duration
)

func main() {
	flag.StringVar(&bin, "bin", "", "ukernel binary")
	n := flag.Int("n", 11, "runs per variant (ABBA)")
	which := flag.String("presets", "python,flask,postgres", "presets to measure")
	flag.DurationVar(&timeout, "timeout", 3*time.Minute, "deadline of one run to ready")
	flag.DurationVar(&readyTimeout, "ready-timeout", 10*time.Minute, "deadline of the snapshot boot to ready (postgres initialises its data then)")
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
	fmt.Println("| preset | cold | restored | speed-up | run -d returned (restored) | first output (restored) | load average |\n|---|---:|---:|---:|---:|---:|---:|")
	for _, name := range strings.Split(*which, ",") {
		p, ok := presets[name]
		if !ok {
			log.Fatalf("preset %q: want python, flask or postgres", name)
		}
		setup(work, p)
		load0 := loadavg()
		var cold, restored, returned, output []time.Duration
		for i := range *n {
			first := i%2 == 0
			for _, c := range []bool{first, !first} {
				r := once(p, c, i)
				fmt.Fprintf(os.Stderr, "%s %d cold=%v: ready %.3f s, returned %.3f s, first output %.3f s, load %s\n",
					name, i, c, r.ready.Seconds(), r.returned.Seconds(), r.output.Seconds(), loadavg())
				if c {
					cold = append(cold, r.ready)
				} else {
					restored, returned = append(restored, r.ready), append(returned, r.returned)
					if r.output > 0 {
						output = append(output, r.output)
					}
				}
			}
		}
		fmt.Printf("| %s | %s | %s | %.1fx | %s | %s | %s-%s |\n", name, show(cold), show(restored), med(cold).Seconds()/med(restored).Seconds(),
			show(returned), show(output), load0, loadavg())
	}
}

// setup creates the preset's project and its template, and takes its snapshot.
func setup(work string, p preset) {
	dir := filepath.Join(work, p.name)
	must("init", "-C", dir, "init", "--name", p.name, "--lang", p.lang, "--template", p.template)
	must("template create", "template", "create", p.name, "--from", dir)
	must("template build --snapshot", "template", "build", p.name, "--snapshot", "--ready-timeout", readyTimeout.String())
}

type result struct {
	ready, returned time.Duration
	output          time.Duration // restored: from the command's start to the first output line after the restore; 0 if none
}

// once runs the template cold or restored until it answers, then stops and removes it.
func once(p preset, cold bool, i int) (r result) {
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
	r.returned = time.Since(start)
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
	r.ready = time.Since(start)
	if !cold {
		r.output = firstOutput(p, start)
	}
	return r
}

// firstOutput is when, from start, the host received the latest restored run's first output
// line after its restore (trace's restore.first-output span); 0 when it printed none.
func firstOutput(p preset, start time.Time) time.Duration {
	out, err := command("trace", "--template", p.name, "--json").Output()
	if err != nil {
		log.Fatalf("ukernel trace --template %s: %v", p.name, err)
	}
	type span struct {
		Name     string `json:"name"`
		End      int64  `json:"end_unix_ns"`
		Children []span `json:"children"`
	}
	var t struct{ Root span }
	if err := json.Unmarshal(out, &t); err != nil {
		log.Fatalf("ukernel trace --json: %v", err)
	}
	var find func(s span) int64
	find = func(s span) int64 {
		if s.Name == "restore.first-output" {
			return s.End
		}
		for _, c := range s.Children {
			if e := find(c); e != 0 {
				return e
			}
		}
		return 0
	}
	if end := find(t.Root); end != 0 {
		return time.Duration(end - start.UnixNano())
	}
	return 0
}

// loadavg is the host's 1-minute load average.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
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
	if len(d) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f s (%.3f)", med(d).Seconds(), slices.Min(d).Seconds())
}
