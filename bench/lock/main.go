// Command lock benchmarks `ukernel env lock` against apt's own resolver on the same request:
// the python-3.11 base plus five system packages. It prints a table of wall-clock times.
//
//	go run ./bench/lock [-runs N]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ulikunitz/xz"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/debian"
	"github.com/ukernel-dev/ukernel/internal/lock"
	"github.com/ukernel-dev/ukernel/internal/project"
)

var system = []string{"libssl3", "postgresql-15", "python3-requests", "sqlite3", "curl"}

func main() {
	runs := flag.Int("runs", 5, "warm runs to take the median of")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if err := run(ctx, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, runs int) error {
	work, err := os.MkdirTemp("", "ukernel-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	dir := filepath.Join(work, "project")
	if err := os.MkdirAll(filepath.Join(dir, "env"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, project.ConfigFile), []byte("[project]\nname = \"bench\"\nlanguage = \"python\"\nentry = \"src/main.py\"\n[env]\nbase = \"python-3.11\"\n"), 0o644); err != nil {
		return err
	}
	env := &project.Env{Base: "python-3.11", System: system}
	if err := env.Save(dir); err != nil {
		return err
	}
	c, err := cache.OpenDir(filepath.Join(work, "cache"))
	if err != nil {
		return err
	}
	timeIt := func(o lock.Options) (time.Duration, *lock.Lock, error) {
		o.Dir, o.Cache, o.Upgrade = dir, c, true
		start := time.Now()
		l, _, err := lock.Resolve(ctx, o)
		return time.Since(start), l, err
	}
	cold, l, err := timeIt(lock.Options{})
	if err != nil {
		return err
	}
	var online, offline []time.Duration
	for range runs {
		d, _, err := timeIt(lock.Options{})
		if err != nil {
			return err
		}
		online = append(online, d)
		if d, _, err = timeIt(lock.Options{Offline: true}); err != nil {
			return err
		}
		offline = append(offline, d)
	}
	aptCold, aptWarm, aptN, err := aptTimes(ctx, work, c, runs, dir)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "request\tpython-3.11 base + %s\n", strings.Join(system, " "))
	fmt.Fprintf(w, "closure\tukernel %d packages + kernel, apt %d packages (usr-is-merged given)\n\n", len(l.Packages), aptN)
	fmt.Fprintln(w, "what\ttime")
	fmt.Fprintf(w, "ukernel cold lock (empty cache: fetch + verify + parse indices)\t%s\n", ms(cold))
	fmt.Fprintf(w, "ukernel warm lock (InRelease re-fetched, indices cached), median of %d\t%s\n", runs, ms(median(online)))
	fmt.Fprintf(w, "ukernel warm lock --offline, median of %d\t%s\n", runs, ms(median(offline)))
	fmt.Fprintf(w, "apt-get install -s, no pkgcache.bin (builds it)\t%s\n", ms(aptCold))
	fmt.Fprintf(w, "apt-get install -s, warm pkgcache.bin, median of %d\t%s\n", runs, ms(median(aptWarm)))
	return w.Flush()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000) }

func median(ds []time.Duration) time.Duration {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

// aptTimes runs apt's resolver on exactly the indices ukernel used, in a private apt state.
func aptTimes(ctx context.Context, work string, c *cache.Cache, runs int, dir string) (time.Duration, []time.Duration, int, error) {
	arch, err := lock.OpenArchive(ctx, lock.Options{Dir: dir, Cache: c, Offline: true}, "bookworm")
	if err != nil {
		return 0, nil, 0, err
	}
	apt := filepath.Join(work, "apt")
	lists := filepath.Join(apt, "lists")
	if err := os.MkdirAll(filepath.Join(lists, "partial"), 0o755); err != nil {
		return 0, nil, 0, err
	}
	var sources strings.Builder
	for _, s := range arch.Suites {
		fmt.Fprintf(&sources, "deb [trusted=yes] %s %s main\n", s.Source.URI, s.Source.Suite)
		u := s.Source.URI + "/dists/" + s.Source.Suite + "/"
		if i := strings.Index(u, "://"); i >= 0 {
			u = u[i+3:]
		}
		prefix := strings.ReplaceAll(u, "/", "_")
		if err := os.WriteFile(filepath.Join(lists, prefix+"InRelease"), s.Release.Raw, 0o644); err != nil {
			return 0, nil, 0, err
		}
		raw, err := c.ReadBlob(s.IndexSHA256)
		if err != nil {
			return 0, nil, 0, err
		}
		xr, err := xz.NewReader(bytes.NewReader(raw))
		if err != nil {
			return 0, nil, 0, err
		}
		data, err := io.ReadAll(xr)
		if err != nil {
			return 0, nil, 0, err
		}
		if err := os.WriteFile(filepath.Join(lists, prefix+"main_binary-amd64_Packages"), data, 0o644); err != nil {
			return 0, nil, 0, err
		}
	}
	merged := debian.NewResolver(arch.Packages).Candidate("usr-is-merged")
	status := fmt.Sprintf("Package: usr-is-merged\nStatus: install ok installed\nPriority: optional\nArchitecture: all\nVersion: %s\nDescription: x\n", merged.Version)
	if err := os.WriteFile(filepath.Join(apt, "status"), []byte(status), 0o644); err != nil {
		return 0, nil, 0, err
	}
	if err := os.WriteFile(filepath.Join(apt, "sources.list"), []byte(sources.String()), 0o644); err != nil {
		return 0, nil, 0, err
	}
	args := []string{"install", "-s", "--no-install-recommends", "-q",
		"-o", "Dir::State::status=" + filepath.Join(apt, "status"),
		"-o", "Dir::State::extended_states=" + filepath.Join(apt, "extended_states"),
		"-o", "Dir::State::Lists=" + lists,
		"-o", "Dir::Cache=" + filepath.Join(apt, "cache"),
		"-o", "Dir::Etc::SourceList=" + filepath.Join(apt, "sources.list"),
		"-o", "Dir::Etc::SourceParts=" + filepath.Join(apt, "none"),
		"-o", "APT::Architectures=amd64", "-o", "Debug::NoLocking=1",
		"python3.11"}
	args = append(args, system...)
	once := func() (time.Duration, int, error) {
		start := time.Now()
		out, err := exec.CommandContext(ctx, "apt-get", args...).CombinedOutput()
		if err != nil {
			return 0, 0, fmt.Errorf("apt-get: %v\n%s", err, out)
		}
		return time.Since(start), strings.Count(string(out), "\nInst "), nil
	}
	cold, n, err := once()
	if err != nil {
		return 0, nil, 0, err
	}
	var warm []time.Duration
	for range runs {
		d, _, err := once()
		if err != nil {
			return 0, nil, 0, err
		}
		warm = append(warm, d)
	}
	return cold, warm, n, nil
}
