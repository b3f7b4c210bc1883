// Package pypi locks Python requirements for the guest: pip's own resolver, asked for wheels of
// the guest's CPython version on manylinux x86-64 (never the host's platform), and records every
// wheel by file name and SHA-256.
package pypi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Wheel is one locked wheel.
type Wheel struct {
	Name     string `json:"name"` // normalised project name
	Version  string `json:"version"`
	Filename string `json:"filename"`
	SHA256   string `json:"sha256"`
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
		return nil, fmt.Errorf("python packages need a python base (env/ukernel.env base = \"python-3.11\")")
	}
	args := append([]string{"-m", "pip", "download", "--disable-pip-version-check", "--no-input", "-d", dir}, t.pipArgs()...)
	args = append(args, reqs...)
	cmd := exec.CommandContext(ctx, Python, args...)
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
	out, err := exec.CommandContext(ctx, Python, args...).CombinedOutput()
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
	if m := regexp.MustCompile(`No matching distribution found for (\S+)`).FindStringSubmatch(stderr); m != nil {
		name := regexp.MustCompile(`[=<>!~\[ ].*`).ReplaceAllString(m[1], "")
		// Whether the index has the project at all tells "unknown" from "no wheel".
		out, ierr := exec.CommandContext(ctx, Python, "-m", "pip", "index", "versions", "--disable-pip-version-check", name).CombinedOutput()
		if ierr == nil && strings.Contains(string(out), "Available versions") {
			return fmt.Errorf("python package %s has no wheel for CPython %s on manylinux x86-64 (only a source distribution, or wheels for other platforms); ukernel installs wheels only, it does not build sdists", m[1], t.PythonVersion)
		}
		return fmt.Errorf("python package %s not found in the package index", m[1])
	}
	return fmt.Errorf("pip download %s: %v\n%s", strings.Join(reqs, " "), err, lastLines(stderr, 8))
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
