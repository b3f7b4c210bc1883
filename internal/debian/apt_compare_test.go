package debian

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/testenv"
)

// aptClosure runs apt's own resolver on exactly the indices the archive was opened from (written
// into a private lists directory), with an installed state holding only usr-is-merged, which
// the image layout stands in for.
func aptClosure(t *testing.T, a *Archive, names ...string) map[string]string {
	t.Helper()
	testenv.RequireTools(t, "apt-get") // the reference tool this test compares with
	dir := t.TempDir()
	lists := filepath.Join(dir, "lists")
	must(t, os.MkdirAll(filepath.Join(lists, "partial"), 0o755))
	var sources strings.Builder
	c := testCache(t)
	for _, s := range a.Suites {
		fmt.Fprintf(&sources, "deb [trusted=yes] %s %s main\n", s.Source.URI, s.Source.Suite)
		prefix := aptURIToFileName(s.Source.URI + "/dists/" + s.Source.Suite + "/")
		must(t, os.WriteFile(filepath.Join(lists, prefix+"InRelease"), s.Release.Raw, 0o644))
		p, err := c.Path(s.IndexSHA256)
		must(t, err)
		data, err := readMaybeCompressed(p, filepath.Ext(s.IndexPath))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(lists, prefix+"main_binary-amd64_Packages"), data, 0o644))
	}
	must(t, os.WriteFile(filepath.Join(dir, "sources.list"), []byte(sources.String()), 0o644))
	merged := NewResolver(a.Packages).Candidate("usr-is-merged")
	status := fmt.Sprintf("Package: usr-is-merged\nStatus: install ok installed\nPriority: optional\nArchitecture: all\nVersion: %s\nDescription: stands in for the merged-/usr image layout\n", merged.Version)
	must(t, os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append(aptArgs(dir), names...)
	out, err := exec.CommandContext(ctx, "apt-get", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("apt-get %v: %v\n%s", args, err, out)
	}
	got := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "Inst" {
			got[f[1]] = strings.TrimPrefix(f[2], "(")
		}
	}
	return got
}

func aptArgs(dir string) []string {
	return []string{"install", "-s", "--no-install-recommends", "-q",
		"-o", "Dir::State::status=" + filepath.Join(dir, "status"),
		"-o", "Dir::State::extended_states=" + filepath.Join(dir, "extended_states"),
		"-o", "Dir::State::Lists=" + filepath.Join(dir, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(dir, "cache"),
		"-o", "Dir::Etc::SourceList=" + filepath.Join(dir, "sources.list"),
		"-o", "Dir::Etc::SourceParts=" + filepath.Join(dir, "nonexistent"),
		"-o", "Dir::Etc::Preferences=" + filepath.Join(dir, "nonexistent"),
		"-o", "Dir::Etc::PreferencesParts=" + filepath.Join(dir, "nonexistent"),
		"-o", "APT::Architectures=amd64",
		"-o", "Debug::NoLocking=1",
	}
}

// aptURIToFileName is apt's URItoFileName for plain http(s) URIs.
func aptURIToFileName(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
	}
	return strings.ReplaceAll(u, "/", "_")
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestClosureEqualsApt(t *testing.T) {
	a := openBookworm(t)
	for _, req := range [][]string{{"python3.11"}, {"libssl3"}, {"postgresql-15"}, {"python3-requests"}} {
		t.Run(strings.Join(req, "+"), func(t *testing.T) {
			want := aptClosure(t, a, req...)
			var reqs []Request
			for _, n := range req {
				reqs = append(reqs, Request{Name: n})
			}
			closure, err := NewResolver(a.Packages).Resolve(reqs)
			must(t, err)
			got := map[string]string{}
			for _, p := range closure {
				got[p.Name] = p.Version
			}
			var diff []string
			for n, v := range want {
				if got[n] != v {
					diff = append(diff, fmt.Sprintf("apt: %s %s, ours: %q", n, v, got[n]))
				}
			}
			for n, v := range got {
				if _, ok := want[n]; !ok {
					diff = append(diff, fmt.Sprintf("ours only: %s %s", n, v))
				}
			}
			sort.Strings(diff)
			if len(diff) > 0 {
				t.Errorf("closure of %v differs from apt's (%d vs %d packages):\n%s", req, len(got), len(want), strings.Join(diff, "\n"))
			}
		})
	}
}
