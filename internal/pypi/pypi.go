// Package pypi locks Python requirements for the guest: pip's own resolver, asked for wheels of
// the guest's CPython version on manylinux x86-64 (never the host's platform), and records every
// wheel by file name and SHA-256.
package pypi

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/ukernel-dev/ukernel/internal/workdir"
)

// Wheel is one locked wheel.
type Wheel struct {
	Name     string `json:"name"` // normalised project name
	Version  string `json:"version"`
	Filename string `json:"filename"`
	SHA256   string `json:"sha256"`
	// Size in bytes; locks written before it was recorded lack it.
	Size int64 `json:"size,omitempty"`
}

// Target is the guest's Python.
type Target struct {
	PythonVersion string // "3.11"
}

// GlibcMinor is the newest manylinux glibc minor the guests' Debian (12: glibc 2.36) runs.
const GlibcMinor = 36

// pipArgs are the platform flags that select wheels the guest can run.
func (t Target) pipArgs() []string {
	nodot := strings.ReplaceAll(t.PythonVersion, ".", "")
	args := []string{"--only-binary=:all:", "--python-version", t.PythonVersion,
		"--implementation", "cp", "--abi", "cp" + nodot, "--abi", "abi3", "--abi", "none"}
	for minor := GlibcMinor; minor >= 17; minor-- {
		args = append(args, "--platform", fmt.Sprintf("manylinux_2_%d_x86_64", minor))
	}
	return append(args, "--platform", "manylinux2014_x86_64", "--platform", "manylinux2010_x86_64", "--platform", "manylinux1_x86_64")
}

// Python is the interpreter whose pip runs; the host's version does not matter.
var Python = "python3"

// Download resolves reqs with pip and downloads the wheels into dir; it returns them sorted.
func Download(ctx context.Context, reqs []string, t Target, dir string, progress io.Writer) ([]Wheel, error) {
	if t.PythonVersion == "" {
		return nil, fmt.Errorf("python packages need a python base (ukernel.toml [env] base = \"python-3.11\")")
	}
	args := append([]string{"-m", "pip", "download", "--disable-pip-version-check", "--no-input", "-d", dir}, t.pipArgs()...)
	args = append(args, reqs...)
	cmd := exec.CommandContext(ctx, Python, args...)
	workdir.DieWithParent(cmd) // it writes into dir, which a killed ukernel's successor removes
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if progress != nil {
		cmd.Stdout = progress
	}
	if err := cmd.Run(); err != nil {
		return nil, explain(ctx, reqs, t, stderr.String(), err)
	}
	return listWheels(dir)
}

// Fetch downloads one locked wheel again (pip finds it in the configured index by version) and
// returns its path after checking the hash. The locked hash goes to pip too: among the files of
// that version (a newer pip may rank them differently, a wheel may have been uploaded since) pip
// then takes only the locked one.
func Fetch(ctx context.Context, w Wheel, t Target, dir string) (string, error) {
	req, err := os.CreateTemp("", "ukernel-wheel-*.txt")
	if err != nil {
		return "", err
	}
	defer os.Remove(req.Name())
	// Hash options are accepted only in a requirements file.
	fmt.Fprintf(req, "%s==%s --hash=sha256:%s\n", w.Name, w.Version, w.SHA256)
	if err := req.Close(); err != nil {
		return "", err
	}
	args := append([]string{"-m", "pip", "download", "--disable-pip-version-check", "--no-input", "--no-deps", "--require-hashes", "-d", dir}, t.pipArgs()...)
	args = append(args, "-r", req.Name())
	cmd := exec.CommandContext(ctx, Python, args...)
	workdir.DieWithParent(cmd) // it writes into dir, which a killed ukernel's successor removes
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("pip download %s==%s: %v\n%s", w.Name, w.Version, err, lastLines(string(out), 5))
	}
	p := filepath.Join(dir, w.Filename)
	sum, err := fileSHA256(p)
	if err != nil {
		return "", fmt.Errorf("locked wheel %s not downloaded by pip: %w", w.Filename, err)
	}
	if sum != w.SHA256 {
		return "", fmt.Errorf("wheel %s: sha256 %s, locked %s", w.Filename, sum, w.SHA256)
	}
	return p, nil
}

func explain(ctx context.Context, reqs []string, t Target, stderr string, err error) error {
	m := regexp.MustCompile(`No matching distribution found for (\S+)`).FindStringSubmatch(stderr)
	if m == nil {
		return fmt.Errorf("pip download %s: %v\n%s", strings.Join(reqs, " "), err, lastLines(stderr, 8))
	}
	name, spec := splitRequirement(m[1])
	// The index's full list tells "unknown" and "no such version" from "no wheel for the guest".
	all, ok := IndexVersions(ctx, name)
	if !ok {
		return fmt.Errorf("python package %s not found in the package index", name)
	}
	v, exact := strings.CutPrefix(spec, "==")
	if exact && !slices.ContainsFunc(all, func(a string) bool { return CompareVersions(a, v) == 0 }) {
		return &NoVersionError{Name: name, Spec: spec, Nearest: Nearest(all, v, 2)}
	}
	// pip lists the versions it could have taken: those with a wheel for the target.
	wheels := triedVersions(stderr)
	if len(wheels) == 0 {
		return fmt.Errorf("python package %s has no wheel for CPython %s on manylinux x86-64 (only a source distribution, or wheels for other platforms); ukernel installs wheels only, it does not build sdists", name, t.PythonVersion)
	}
	if exact {
		return fmt.Errorf("python package %s %s has no wheel for CPython %s on manylinux x86-64 (only a source distribution, or wheels for other platforms); ukernel installs wheels only, it does not build sdists; the nearest versions with one: %s", name, v, t.PythonVersion, strings.Join(Nearest(wheels, v, 2), ", "))
	}
	return &NoVersionError{Name: name, Spec: spec, Nearest: wheels[:min(len(wheels), 3)], Target: t.PythonVersion}
}

// triedVersions reads the versions pip considered from its "(from versions: ...)", newest first.
func triedVersions(stderr string) []string {
	m := regexp.MustCompile(`\(from versions: ([^)]*)\)`).FindStringSubmatch(stderr)
	if m == nil {
		return nil
	}
	return versionList(m[1])
}

// versionList parses pip's comma-separated versions ("none" is none), newest first.
func versionList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" && v != "none" {
			out = append(out, v)
		}
	}
	slices.SortStableFunc(out, func(a, b string) int { return CompareVersions(b, a) })
	return out
}

// NoVersionError is a requirement that no version in the index meets.
type NoVersionError struct {
	Name, Spec string   // requests, ==99
	Nearest    []string // the existing versions closest to the one asked for, newest first
	Target     string   // set when only the versions with a wheel for this CPython count
}

func (e *NoVersionError) Error() string {
	near := strings.Join(e.Nearest, ", ")
	if v, ok := strings.CutPrefix(e.Spec, "=="); ok && e.Target == "" {
		return fmt.Sprintf("python package %s has no version %s in the package index; the nearest versions: %s", e.Name, v, near)
	}
	what := "no version"
	if e.Target != "" {
		what = "no version with a wheel for CPython " + e.Target + " on manylinux x86-64"
	}
	return fmt.Sprintf("python package %s has %s that meets %s; the newest: %s", e.Name, what, e.Spec, near)
}

// splitRequirement splits "requests[socks]>=2,<3" into its name and version specifier.
func splitRequirement(req string) (name, spec string) {
	i := strings.IndexAny(req, "=<>!~[ ;")
	if i < 0 {
		return req, ""
	}
	name, spec = req[:i], req[i:]
	if spec[0] == '[' {
		if j := strings.IndexByte(spec, ']'); j >= 0 {
			spec = spec[j+1:]
		}
	}
	return name, strings.TrimSpace(spec)
}

// IndexVersions lists every version of a project in the configured package index, newest
// first, as pip sees them (its index and credentials), whatever their files or Requires-Python.
// ok is false when the index does not have the project, or cannot be asked.
func IndexVersions(ctx context.Context, name string) (versions []string, ok bool) {
	out, err := exec.CommandContext(ctx, Python, "-m", "pip", "index", "versions", "--disable-pip-version-check", "--pre", "--ignore-requires-python", name).Output()
	if err != nil {
		return nil, false
	}
	for _, line := range strings.Split(string(out), "\n") {
		if rest, found := strings.CutPrefix(line, "Available versions:"); found {
			versions = versionList(rest)
		}
	}
	return versions, len(versions) > 0
}

// Nearest returns up to n versions on each side of v from versions (newest first), newest first.
func Nearest(versions []string, v string, n int) []string {
	i := sort.Search(len(versions), func(i int) bool { return CompareVersions(versions[i], v) < 0 })
	return slices.Clone(versions[max(0, i-n):min(len(versions), i+n)])
}

// CompareVersions orders PEP 440 versions by their release numbers (1.2 == 1.2.0), a
// pre-release (1.0rc1, 1.0.dev1) before its release and a post-release after it. It is enough to
// find the neighbours of a version; pip decides what satisfies a requirement.
func CompareVersions(a, b string) int {
	ra, sa := splitRelease(a)
	rb, sb := splitRelease(b)
	for i := range max(len(ra), len(rb)) {
		var x, y int
		if i < len(ra) {
			x = ra[i]
		}
		if i < len(rb) {
			y = rb[i]
		}
		if x != y {
			return cmp.Compare(x, y)
		}
	}
	return cmp.Compare(suffixRank(sa), suffixRank(sb))
}

func splitRelease(v string) ([]int, string) {
	v = strings.TrimPrefix(strings.ToLower(v), "v")
	if _, rest, ok := strings.Cut(v, "!"); ok {
		v = rest
	}
	var nums []int
	for v != "" {
		j := 0
		for j < len(v) && v[j] >= '0' && v[j] <= '9' {
			j++
		}
		if j == 0 {
			break
		}
		n, _ := strconv.Atoi(v[:j])
		nums = append(nums, n)
		v = v[j:]
		if !strings.HasPrefix(v, ".") || len(v) < 2 || v[1] < '0' || v[1] > '9' {
			break
		}
		v = v[1:]
	}
	return nums, strings.TrimLeft(v, ".-_")
}

// suffixRank: dev < a < b < rc < release < post.
func suffixRank(s string) int {
	switch {
	case s == "":
		return 4
	case strings.HasPrefix(s, "post") || strings.HasPrefix(s, "r"):
		if strings.HasPrefix(s, "rc") {
			return 3
		}
		return 5
	case strings.HasPrefix(s, "dev"):
		return 0
	case strings.HasPrefix(s, "a"):
		return 1
	case strings.HasPrefix(s, "b"):
		return 2
	case strings.HasPrefix(s, "c") || strings.HasPrefix(s, "pre"):
		return 3
	}
	return 4
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func listWheels(dir string) ([]Wheel, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Wheel
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".whl") {
			return nil, fmt.Errorf("pip downloaded %s, which is not a wheel", e.Name())
		}
		w, err := ParseWheelName(e.Name())
		if err != nil {
			return nil, err
		}
		if w.SHA256, err = fileSHA256(filepath.Join(dir, e.Name())); err != nil {
			return nil, err
		}
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		w.Size = info.Size()
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

var normRe = regexp.MustCompile(`[-_.]+`)

// Normalize is PEP 503 name normalisation.
func Normalize(name string) string { return strings.ToLower(normRe.ReplaceAllString(name, "-")) }

// ParseWheelName reads name and version from a wheel file name (PEP 427).
func ParseWheelName(file string) (Wheel, error) {
	parts := strings.Split(strings.TrimSuffix(file, ".whl"), "-")
	if len(parts) < 5 {
		return Wheel{}, fmt.Errorf("%q is not a wheel file name", file)
	}
	return Wheel{Name: Normalize(parts[0]), Version: parts[1], Filename: file}, nil
}

var (
	normalName = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	versionRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.!+_-]*$`) // PEP 440's characters
)

// Check refuses a wheel record (read from a lock) that is not what Download records: a
// normalised name, a version of PEP 440's characters, a wheel file name without a directory
// that names them, a lowercase hex SHA-256. Fetch writes the name and version into a pip
// requirements file, where white space would add options of the lock's choosing.
func (w Wheel) Check() error {
	if !normalName.MatchString(w.Name) {
		return fmt.Errorf("wheel name %q is not a normalised project name", w.Name)
	}
	if !versionRe.MatchString(w.Version) {
		return fmt.Errorf("wheel %s: version %q is not a PEP 440 version", w.Name, w.Version)
	}
	if f, err := ParseWheelName(w.Filename); err != nil || strings.ContainsAny(w.Filename, "/\\") || !strings.HasSuffix(w.Filename, ".whl") ||
		f.Name != w.Name || f.Version != w.Version {
		return fmt.Errorf("wheel %s %s: file name %q does not name it", w.Name, w.Version, w.Filename)
	}
	if len(w.SHA256) != 64 || strings.Trim(w.SHA256, "0123456789abcdef") != "" {
		return fmt.Errorf("wheel %s: %q is not a lowercase hex SHA-256", w.Filename, w.SHA256)
	}
	return nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
