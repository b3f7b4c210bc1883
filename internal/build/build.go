// Package build turns a locked environment and a project's source into the parts of an image:
// the workload bundle (build/bundle.tgz), the adapter runtime (build/adapter/<runtime>/) and the
// staged root filesystem (build/rootfs/) that pack turns into the image's root partition.
// Everything it writes is deterministic and it redoes nothing whose inputs did not change.
package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/crashpoint"
	"github.com/ukernel-dev/ukernel/internal/debian"
	"github.com/ukernel-dev/ukernel/internal/gotool"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/version"
	"github.com/ukernel-dev/ukernel/internal/workdir"
)

// Deb is a locked Debian package with its verified local file.
type Deb struct {
	Name         string
	Version      string
	Architecture string
	Path         string
	SHA256       string
}

// Wheel is a locked Python wheel with its verified local file.
type Wheel struct {
	Name   string
	Path   string
	SHA256 string
}

// Input is everything a build reads.
type Input struct {
	Dir        string // project directory
	Config     *project.Config
	Base       project.Base
	LockDigest string
	Debs       []Deb   // the root filesystem's closure (the kernel is not part of it)
	Wheels     []Wheel // Python packages for the guest
	// Tools, when set, is the static busybox package put under abi.ExecToolsDir in a
	// development image (or a release image whose project sets [debug] shell = true).
	Tools   *Deb
	Release bool
	Target  string // adapter override; "" uses the config's
	// SourceDateEpoch fixes every timestamp; 0 derives it from the lock (see Epoch).
	SourceDateEpoch int64
	Logger          *slog.Logger
}

// Result locates the build outputs.
type Result struct {
	Bundle     string // build/bundle.tgz
	AdapterDir string // build/adapter/<runtime>
	RootDir    string // build/rootfs
	Runtime    string // adapter runtime name, e.g. python-3.11
	Users      []abi.User
	Digest     string // hash of all inputs; pack keys its cache on it
	Cached     bool   // nothing changed since the last build
	Epoch      int64
}

// stamp records the inputs of the last successful build.
type stamp struct {
	Digest  string     `json:"digest"`
	Runtime string     `json:"runtime"`
	Users   []abi.User `json:"users"`
}

const stampFile = ".build-stamp.json"

// workPrefix names a build's staging tree, beside build/ in the project directory.
const workPrefix = ".build-tmp-"

// Epoch is the fixed timestamp of every file in a build: SOURCE_DATE_EPOCH when set, else a
// value derived from the lock digest so that it is the same on every machine.
func Epoch(lockDigest string) int64 {
	// 2020-01-01 plus up to ~3 years from the digest: stable, plausible, not zero (some tools
	// treat 0 as "unset").
	var n int64
	for _, c := range []byte(lockDigest) {
		n = (n*31 + int64(c)) % (3 * 365 * 24 * 3600)
	}
	return 1577836800 + n
}

// Run builds the project. Outputs are replaced only when the whole build succeeded.
func Run(ctx context.Context, in Input) (*Result, error) {
	log := in.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	adapter := in.Config.Build.Adapter
	if in.Target != "" {
		adapter = in.Target
	}
	if lang, ok := project.LookupLanguage(adapter); !ok || lang.BaseAdapter != in.Base.Adapter {
		return nil, fmt.Errorf("adapter %q does not fit base %q (its runtime is %s); set [env] base or --target accordingly", adapter, in.Base.Name, in.Base.Adapter)
	}
	if in.Config.Project.Entry != "" {
		if err := project.ValidateEntry(in.Config.Project.Entry); err != nil {
			return nil, in.Config.Errorf("project.entry", "%v", err)
		}
		if _, err := os.Stat(filepath.Join(in.Dir, in.Config.Project.Entry)); err != nil {
			return nil, in.Config.Errorf("project.entry", "%s does not exist; create it, or set entry to the program to run", in.Config.Project.Entry)
		}
		for _, part := range strings.Split(in.Config.Project.Entry, "/") {
			if hostByproduct(part) {
				return nil, in.Config.Errorf("project.entry", "%s is a Python bytecode cache, which the build leaves out of the image; name the .py source", in.Config.Project.Entry)
			}
		}
	}
	epoch := in.SourceDateEpoch
	if epoch == 0 {
		epoch = Epoch(in.LockDigest)
	}
	srcDir := filepath.Join(in.Dir, project.SrcDir)
	srcDigest, err := treeDigest(srcDir)
	if err != nil {
		return nil, fmt.Errorf("reading the workload source: %w", err)
	}
	cfgBytes, _ := json.Marshal(in.Config)
	h := sha256.New()
	fmt.Fprintf(h, "ukernel %s %s\nadapter %s\nrelease %v\nepoch %d\nlock %s\nsrc %s\nconfig %s\n",
		version.Version, version.BinaryDigest(), adapter, in.Release, epoch, in.LockDigest, srcDigest, cfgBytes)
	for _, d := range in.Debs {
		fmt.Fprintf(h, "deb %s %s\n", d.Name, d.SHA256)
	}
	for _, w := range in.Wheels {
		fmt.Fprintf(h, "wheel %s %s\n", w.Name, w.SHA256)
	}
	tools := in.Tools
	if in.Release && !in.Config.Debug.Shell {
		tools = nil
	}
	if tools != nil {
		fmt.Fprintf(h, "tools %s %s\n", tools.Name, tools.SHA256)
	}
	if adapter == "go" {
		if _, err := exec.LookPath("go"); err != nil {
			return nil, errors.New("go toolchain not found on PATH: the go adapter builds the workload with it")
		}
		// The toolchain that builds the workload, as go build will pick it in the entry's module.
		gv, err := gotool.Version(ctx, goWorkloadDir(in), gotool.Env(os.Environ()))
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(h, "go %s\n", gv)
	}
	digest := hex.EncodeToString(h.Sum(nil))

	buildDir := filepath.Join(in.Dir, project.BuildDir)
	res := &Result{
		Bundle:     filepath.Join(buildDir, "bundle.tgz"),
		AdapterDir: filepath.Join(buildDir, "adapter", in.Base.Runtime),
		RootDir:    filepath.Join(buildDir, "rootfs"),
		Runtime:    in.Base.Runtime,
		Digest:     digest,
		Epoch:      epoch,
	}
	// The staging tree of a build that was killed is removed by the next one (workdir), also
	// when that one has nothing to build.
	if _, err := workdir.Sweep(in.Dir, workPrefix); err != nil {
		log.Warn("could not remove a killed build's staging tree", "err", err)
	}
	if st, err := readStamp(buildDir); err == nil && st.Digest == digest && exists(res.Bundle) && exists(res.AdapterDir) && exists(res.RootDir) {
		res.Cached, res.Users, res.Runtime = true, st.Users, st.Runtime
		return res, nil
	}

	// Build into a fresh directory beside build/ and swap it in at the end, so an interrupted
	// or failed build leaves the previous outputs untouched.
	if err := os.MkdirAll(in.Dir, 0o755); err != nil {
		return nil, err
	}
	work, err := workdir.Mkdir(in.Dir, workPrefix)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	log.Debug("building bundle", "src", srcDir)
	bundleEntries, err := bundle(ctx, in, adapter, srcDir, work)
	if err != nil {
		return nil, err
	}
	if err := writeBundle(filepath.Join(work, "bundle.tgz"), bundleEntries, epoch); err != nil {
		return nil, err
	}

	adapterDir := filepath.Join(work, "adapter", in.Base.Runtime)
	log.Debug("assembling adapter runtime", "packages", len(in.Debs))
	pkgNames, err := assembleDebs(ctx, in.Debs, adapterDir, filepath.Join(work, "unpack"))
	if err != nil {
		return nil, err
	}
	trim(adapterDir, in.Release)

	rootDir := filepath.Join(work, "rootfs")
	if err := copyTree(adapterDir, rootDir); err != nil {
		return nil, err
	}
	if err := extractTarGz(filepath.Join(work, "bundle.tgz"), rootDir); err != nil {
		return nil, err
	}
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "mnt", "data", "app", "etc", "root", "var/tmp"} {
		p, err := inRoot(rootDir, d, true)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, err
		}
	}
	extra := []abi.User{AppUser}
	users, err := emulate(rootDir, pkgNames, extra)
	if err != nil {
		return nil, err
	}
	if in.Base.PythonVersion != "" && adapter == "python" {
		n, err := byteCompile(ctx, rootDir, in.Base.PythonVersion, in.Config.EntryInGuest())
		if err != nil {
			return nil, err
		}
		log.Debug("byte-compiled python modules", "count", n)
	}
	if tools != nil {
		if err := installTools(ctx, *tools, rootDir, filepath.Join(work, "tools")); err != nil {
			return nil, err
		}
	}
	if err := normalize(rootDir); err != nil {
		return nil, err
	}

	// Swap the new outputs in. The stamp goes first: killed mid-swap, a build/ holding some new
	// and some old outputs must not pass for the old build when its sources come back.
	crashpoint.At("build-staged")
	if err := os.MkdirAll(buildDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Remove(filepath.Join(buildDir, stampFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, p := range []struct{ from, to string }{
		{filepath.Join(work, "bundle.tgz"), res.Bundle},
		{filepath.Join(work, "adapter"), filepath.Join(buildDir, "adapter")},
		{rootDir, res.RootDir},
	} {
		old := p.to + ".old"
		os.RemoveAll(old)
		if exists(p.to) {
			if err := atomicfile.Rename(p.to, old); err != nil {
				return nil, err
			}
		}
		if err := atomicfile.Rename(p.from, p.to); err != nil {
			return nil, err
		}
		os.RemoveAll(old)
		crashpoint.At("build-swap:" + filepath.Base(p.to))
	}
	res.Users = users
	st, _ := json.MarshalIndent(stamp{Digest: digest, Runtime: res.Runtime, Users: users}, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(buildDir, stampFile), append(st, '\n'), 0o644); err != nil {
		return nil, err
	}
	return res, nil
}

func readStamp(buildDir string) (*stamp, error) {
	data, err := os.ReadFile(filepath.Join(buildDir, stampFile))
	if err != nil {
		return nil, err
	}
	var st stamp
	return &st, json.Unmarshal(data, &st)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// goWorkloadDir is where the go adapter builds the workload: the entry's package.
func goWorkloadDir(in Input) string {
	return filepath.Join(in.Dir, path.Dir(in.Config.Project.Entry))
}

// bundle collects the workload: src/ as /app, the locked wheels installed for the guest's
// Python, and for the go adapter the statically built binary.
func bundle(ctx context.Context, in Input, adapter, srcDir, work string) ([]tarEntry, error) {
	var entries []tarEntry
	switch adapter {
	case "go":
		bin := filepath.Join(work, "gobin")
		name := in.Config.Project.Name
		args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", bin, "."}
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = goWorkloadDir(in)
		// Pinned settings, not the host's (GOAMD64, GOFLAGS=-tags...): the cache key has only
		// the toolchain, and the image must not depend on who built it.
		cmd.Env = gotool.Env(os.Environ())
		workdir.DieWithParent(cmd)
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build of the workload in %s: %v\n%s", cmd.Dir, err, out)
		}
		entries = append(entries, tarEntry{Name: "app", Mode: 0o755, Type: '5'},
			tarEntry{Name: "app/" + name, Mode: 0o755, Type: '0', Source: bin})
	default:
		src, err := dirEntries(srcDir, "app")
		if err != nil {
			return nil, err
		}
		entries = append(entries, tarEntry{Name: "app", Mode: 0o755, Type: '5'})
		entries = append(entries, src...)
	}
	if len(in.Wheels) > 0 {
		if in.Base.PythonVersion == "" {
			return nil, fmt.Errorf("python packages are locked but base %q has no Python", in.Base.Name)
		}
		site := WheelSite(in.Base.PythonVersion)
		for _, w := range in.Wheels {
			we, err := wheelEntries(w.Path, site, "usr/local/bin", "usr/local", "/usr/bin/python"+in.Base.PythonVersion)
			if err != nil {
				return nil, err
			}
			entries = append(entries, we...)
		}
	}
	return dedupe(entries)
}

// dedupe drops repeated directory entries and rejects two different files at one path.
func dedupe(entries []tarEntry) ([]tarEntry, error) {
	seen := map[string]tarEntry{}
	var out []tarEntry
	for _, e := range entries {
		if prev, ok := seen[e.Name]; ok {
			if prev.Type == '5' && e.Type == '5' {
				continue
			}
			// pip would let whichever it installed last win; an image must not depend on that.
			return nil, fmt.Errorf("two packages install %s (for a file in usr/local/bin: two wheels declare that command); keep one of them", e.Name)
		}
		seen[e.Name] = e
		out = append(out, e)
	}
	return out, nil
}

func writeBundle(dst string, entries []tarEntry, epoch int64) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	if err := writeTarGz(f, entries, time.Unix(epoch, 0)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// usrMerged maps a top-level directory of a package to where merged-/usr keeps it.
var usrMerged = map[string]string{"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64", "lib32": "usr/lib32", "libx32": "usr/libx32"}

// assembleDebs unpacks every package into root with the merged-/usr layout (which stands in for
// usrmerge/usr-is-merged) and returns the package names.
func assembleDebs(ctx context.Context, debs []Deb, root, scratch string) ([]string, error) {
	if err := os.MkdirAll(filepath.Join(root, "usr"), 0o755); err != nil {
		return nil, err
	}
	for top, target := range usrMerged {
		if err := os.MkdirAll(filepath.Join(root, target), 0o755); err != nil {
			return nil, err
		}
		if err := os.Symlink(target, filepath.Join(root, top)); err != nil {
			return nil, err
		}
	}
	var names []string
	for _, d := range debs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		tmp := filepath.Join(scratch, d.Name)
		u, err := debian.ExtractDeb(ctx, d.Path, tmp)
		if err != nil {
			return nil, fmt.Errorf("unpack %s %s: %w", d.Name, d.Version, err)
		}
		if err := u.Matches(d.Name, d.Version, d.Architecture); err != nil {
			return nil, fmt.Errorf("locked package %s %s (%s): %w", d.Name, d.Version, d.Path, err)
		}
		if err := mergeInto(tmp, root); err != nil {
			return nil, fmt.Errorf("install %s %s: %w", d.Name, d.Version, err)
		}
		os.RemoveAll(tmp)
		names = append(names, d.Name)
	}
	sort.Strings(names)
	return names, nil
}

// mergeInto moves the tree at src into dst, mapping top-level directories to merged-/usr.
// Links that earlier packages left in dst are followed as dpkg would follow them in the guest
// (a directory link stays and its target is filled), never out of dst: see inRoot.
func mergeInto(src, dst string) error {
	return walkSorted(src, func(orig string, fi fs.FileInfo) error {
		rel := orig
		top, rest, _ := strings.Cut(rel, "/")
		if m, ok := usrMerged[top]; ok {
			if rest == "" {
				return nil
			}
			rel = path.Join(m, rest)
		}
		target, err := inRoot(dst, rel, fi.IsDir())
		if err != nil {
			return err
		}
		if fi.IsDir() {
			if st, err := os.Lstat(target); err == nil && st.IsDir() {
				return nil
			}
			return os.MkdirAll(target, fi.Mode().Perm()|0o700)
		}
		os.Remove(target)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return atomicfile.Move(filepath.Join(src, filepath.FromSlash(orig)), target)
	})
}

// trimmed are paths a runtime in a microVM never reads: documentation, manuals, translations,
// test suites and caches.
var trimmed = []string{
	"usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian",
	"usr/share/bug", "usr/share/doc-base", "usr/share/bash-completion", "usr/share/zsh",
	"usr/share/menu", "usr/share/pixmaps", "usr/share/applications", "var/cache", "var/lib/dpkg",
	// glibc's iconv charset modules: only iconv(3) users need them, and they are 8 MB.
	"usr/lib/x86_64-linux-gnu/gconv",
	// The package manager's own tools: maintainer scripts never run and the image has no
	// package database, so dpkg cannot work in the guest.
	"usr/bin/dpkg", "usr/bin/dpkg-deb", "usr/bin/dpkg-query", "usr/bin/dpkg-divert", "usr/bin/dpkg-split",
	"usr/bin/dpkg-trigger", "usr/bin/dpkg-statoverride", "usr/bin/dpkg-maintscript-helper",
	"usr/bin/dpkg-realpath", "usr/bin/update-alternatives", "usr/share/dpkg", "etc/dpkg", "etc/alternatives",
}

// trimmedPython are a Debian Python's parts a server never imports.
var trimmedPython = []string{"pydoc_data", "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3/tests", "unittest/test", "distutils/tests", "ctypes/test", "sqlite3/test", "tkinter/test", "config-3.11-x86_64-linux-gnu", "config-3.13-x86_64-linux-gnu"}

func trim(root string, release bool) {
	paths := append([]string(nil), trimmed...)
	if lib, err := inRoot(root, "usr/lib", true); err == nil {
		pys, _ := filepath.Glob(filepath.Join(lib, "python3.*"))
		for _, py := range pys {
			for _, p := range trimmedPython {
				paths = append(paths, path.Join("usr/lib", filepath.Base(py), p))
			}
		}
	}
	for _, p := range paths {
		// Resolved inside the tree: a package's link (usr/share -> /usr/share) must not make
		// this remove the host's files.
		if target, err := inRoot(root, p, false); err == nil {
			os.RemoveAll(target)
		}
	}
	// Bytecode caches were compiled for nothing here; the guest runs from source.
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == "__pycache__" {
			os.RemoveAll(p)
			return filepath.SkipDir
		}
		return nil
	})
}

// copyTree copies a tree, using hard links for files (same filesystem, read-only use).
func copyTree(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	return walkSorted(src, func(rel string, fi fs.FileInfo) error {
		s, d := filepath.Join(src, rel), filepath.Join(dst, rel)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(s)
			if err != nil {
				return err
			}
			return os.Symlink(t, d)
		case fi.IsDir():
			return os.MkdirAll(d, 0o755)
		default:
			if err := os.Link(s, d); err == nil {
				return nil
			}
			data, err := os.ReadFile(s)
			if err != nil {
				return err
			}
			return os.WriteFile(d, data, fi.Mode().Perm())
		}
	})
}

// normalize gives every file a mode that does not depend on the umask: directories 0755,
// executables 0755, other files 0644 (shadow 0640). Ownership is root's in the image.
func normalize(root string) error {
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}
	return walkSorted(root, func(rel string, fi fs.FileInfo) error {
		p := filepath.Join(root, rel)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			return nil
		case fi.IsDir():
			mode := fs.FileMode(0o755)
			if rel == "tmp" || rel == "var/tmp" {
				mode = 0o777 | fs.ModeSticky
			}
			return os.Chmod(p, mode)
		case rel == "etc/shadow":
			return os.Chmod(p, 0o640)
		case fi.Mode()&0o111 != 0:
			return os.Chmod(p, 0o755)
		default:
			return os.Chmod(p, 0o644)
		}
	})
}
