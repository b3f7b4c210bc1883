// Package pipeline runs the steps between a project and a bootable image — lock, build, pack —
// each on demand and cached, so `ukernel run` is one command on a fresh project and a no-op
// rebuild costs a few hashes.
package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/build"
	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/crashpoint"
	"github.com/ukernel-dev/ukernel/internal/debian"
	"github.com/ukernel-dev/ukernel/internal/gotool"
	"github.com/ukernel-dev/ukernel/internal/image"
	"github.com/ukernel-dev/ukernel/internal/initbin"
	"github.com/ukernel-dev/ukernel/internal/lock"
	"github.com/ukernel-dev/ukernel/internal/progress"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/remotecache"
	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/internal/trace"
	"github.com/ukernel-dev/ukernel/internal/userconfig"
	"github.com/ukernel-dev/ukernel/internal/version"
	"github.com/ukernel-dev/ukernel/internal/workdir"
)

// Options steer every step.
type Options struct {
	Dir     string
	Offline bool
	Locked  bool
	// Upgrade re-resolves the environment to the newest versions first (env upgrade).
	Upgrade bool
	Release bool
	// Role builds the project as [roles.NAME] of ukernel.toml runs it ("": its own settings).
	Role string
	// DataVolume packs what a data volume needs (ext4) even when [data] asks for none: a
	// template's run may attach one (data_mb) to the same image.
	DataVolume bool
	Target     string
	ImagePath  string           // pack output; default dist/<name>.img
	Readonly   bool             // pack a dm-verity hash tree for the root (pack --readonly)
	Progress   *progress.Writer // a status line per step that did something (nil: silent)
	Logger     *slog.Logger
	// Command names the command in the project lock Open takes ("ukernel pack").
	Command string
}

func (o *Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// Project is a loaded project with its environment locked.
type Project struct {
	Dir    string
	Config *project.Config
	Base   project.Base
	Lock   *lock.Lock
	Cache  *cache.Cache
	// LockChanged tells that Load wrote a new lock (for the trace's cache attributes).
	LockChanged bool
}

// Load reads the project and its lock, locking on demand when there is none.
func Load(ctx context.Context, o Options) (*Project, error) {
	cfg, err := project.Load(o.Dir)
	if err != nil {
		return nil, err
	}
	if cfg, err = cfg.WithRole(o.Role); err != nil {
		return nil, err
	}
	base, err := project.LookupBase(cfg.Env.Base)
	if err != nil {
		return nil, err
	}
	c, err := cache.Open()
	if err != nil {
		return nil, err
	}
	// Resolve keeps an up-to-date lock as it is without touching the network, so calling it
	// every time makes an edited env/ukernel.env take effect on the next build or run.
	step := o.Progress.Start("Locking")
	l, changed, err := lock.Resolve(ctx, lockOptions(o, c))
	if err != nil {
		step.Fail()
		return nil, err
	}
	if changed {
		step.Done("wrote " + project.LockFile)
	} else {
		step.Skip()
	}
	if l.Kernel == nil {
		return nil, fmt.Errorf("%s pins no kernel: run 'ukernel env lock'", project.LockFile)
	}
	return &Project{Dir: o.Dir, Config: cfg, Base: base, Lock: l, Cache: c, LockChanged: changed}, nil
}

func lockOptions(o Options, c *cache.Cache) lock.Options {
	lo := lock.Options{Dir: o.Dir, Offline: o.Offline, Locked: o.Locked, Upgrade: o.Upgrade, Reresolve: o.Upgrade, Logger: o.logger(), Cache: c}
	if o.Progress != nil {
		lo.Progress, lo.TTY = o.Progress, o.Progress.TTY()
	}
	return lo
}

// Build fetches the locked packages and builds the bundle and adapter runtime.
func Build(ctx context.Context, p *Project, o Options) (*build.Result, error) {
	step := o.Progress.Start("Building")
	r, err := buildStep(ctx, p, o)
	endStep(step, err, err == nil && r.Cached)
	return r, err
}

// endStep closes a step's status line: failed, skipped when it had nothing to do, or done.
func endStep(step *progress.Step, err error, cached bool) {
	switch {
	case err != nil:
		step.Fail()
	case cached:
		step.Skip()
	default:
		step.Done("")
	}
}

func buildStep(ctx context.Context, p *Project, o Options) (*build.Result, error) {
	epoch, err := sourceDateEpoch()
	if err != nil {
		return nil, err
	}
	fo := lockOptions(o, p.Cache)
	debPaths, err := lock.FetchDebs(ctx, p.Lock, p.Cache, fo)
	if err != nil {
		return nil, err
	}
	var debs []build.Deb
	for _, pkg := range p.Lock.Packages {
		debs = append(debs, build.Deb{Name: pkg.Name, Version: pkg.Version, Architecture: pkg.Architecture, Path: debPaths[pkg.Name], SHA256: pkg.SHA256})
	}
	var wheels []build.Wheel
	if len(p.Lock.Python) > 0 {
		wheelPaths, err := lock.FetchWheels(ctx, p.Lock, p.Cache, fo)
		if err != nil {
			return nil, err
		}
		for _, w := range p.Lock.Python {
			wheels = append(wheels, build.Wheel{Name: w.Name, Path: wheelPaths[w.Name], SHA256: w.SHA256})
		}
	}
	var tools *build.Deb
	if t := p.Lock.Tools; t != nil && (!o.Release || p.Config.Debug.Shell) {
		path, err := lock.FetchTools(ctx, p.Lock, p.Cache, fo)
		if err != nil {
			return nil, err
		}
		tools = &build.Deb{Name: t.Name, Version: t.Version, Architecture: t.Architecture, Path: path, SHA256: t.SHA256}
	}
	return build.Run(ctx, build.Input{
		Dir: p.Dir, Config: p.Config, Base: p.Base, LockDigest: p.Lock.Digest,
		Debs: debs, Wheels: wheels, Tools: tools, Release: o.Release, Target: o.Target,
		SourceDateEpoch: epoch, Logger: o.logger(),
	})
}

// sourceDateEpoch reads SOURCE_DATE_EPOCH (0 when unset: the build derives the time from the
// lock). A value that is not a plain number of seconds is an error: silently ignored, it would
// give an image other than the one asked for.
func sourceDateEpoch() (int64, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q: expected a positive number of seconds since 1970 (or unset it to take the time from the lock)", s)
	}
	return n, nil
}

// PackResult is a packed image.
type PackResult struct {
	Image    string
	SHA256   string
	Size     int64
	Cached   bool
	Build    *build.Result
	Sizes    image.Sizes
	Manifest json.RawMessage
	Spans    []trace.Span // build and pack, with their cache hits
	// InputKey is what the image is made from, known before building (InputKey).
	InputKey string
	// Remote is the shared build cache's lookup, when one is configured and was asked.
	Remote *remotecache.Result
}

type packStamp struct {
	Key    string      `json:"key"`
	Input  string      `json:"input,omitempty"` // the input key of the image
	SHA256 string      `json:"sha256"`
	Sizes  image.Sizes `json:"sizes"`
}

// Pack builds when needed and packs the image. With a shared build cache configured
// (remotecache.Resolve) it first looks the input key up there and pulls a verified hit instead
// of building.
func Pack(ctx context.Context, p *Project, o Options) (*PackResult, error) {
	buildStart := time.Now()
	inputKey, err := InputKey(ctx, p, o)
	if err != nil {
		return nil, err
	}
	r, lookup, err := fromRemote(ctx, p, o, inputKey, buildStart)
	if r != nil || err != nil {
		return r, err
	}
	br, err := Build(ctx, p, o)
	if err != nil {
		return nil, err
	}
	packStart := time.Now()
	step := o.Progress.Start("Packing")
	r, err = pack(ctx, p, o, br, inputKey, buildStart, packStart)
	endStep(step, err, err == nil && r.Cached)
	if r != nil {
		r.Remote = lookup
	}
	return r, err
}

// outPath is where the image is packed.
func outPath(p *Project, o Options) string {
	if o.ImagePath != "" {
		return o.ImagePath
	}
	return filepath.Join(p.Dir, project.DistDir, p.Config.Project.Name+".img")
}

func stampPath(p *Project, out string) string {
	return filepath.Join(p.Dir, project.BuildDir, ".pack-"+filepath.Base(out)+".json")
}

// Inputs are what the image is made from, known before anything is built: the lock, the
// project's source, the role and release, this ukernel, SOURCE_DATE_EPOCH and, for a Go
// workload, the toolchain. Templates key their revisions on them.
func Inputs(ctx context.Context, p *Project, o Options) (template.Inputs, error) {
	src, err := build.SourceDigest(p.Dir)
	if err != nil {
		return template.Inputs{}, err
	}
	in := template.Inputs{
		Lock: p.Lock.Digest, Source: src, Role: o.Role, Release: o.Release,
		Ukernel: version.Version + " " + version.BinaryDigest(), Epoch: os.Getenv("SOURCE_DATE_EPOCH"),
	}
	adapter := p.Config.Build.Adapter
	if o.Target != "" {
		adapter = o.Target
	}
	if adapter == "go" && p.Config.Project.Entry != "" {
		// The workload's binary is the toolchain's output: a new Go is a new image.
		entryDir := filepath.Join(p.Dir, filepath.Dir(p.Config.Project.Entry))
		if in.Go, err = gotool.Version(ctx, entryDir, gotool.Env(os.Environ())); err != nil {
			return template.Inputs{}, err
		}
	}
	return in, nil
}

// InputKey is the key of the image Pack makes with o: its Inputs and the packing options.
// The shared build cache tags images with it.
func InputKey(ctx context.Context, p *Project, o Options) (string, error) {
	in, err := Inputs(ctx, p, o)
	if err != nil {
		return "", err
	}
	return ImageKey(in, o), nil
}

// ImageKey is InputKey for inputs already known (a template revision records them).
func ImageKey(in template.Inputs, o Options) string {
	h := sha256.New()
	fmt.Fprintf(h, "ukernel-image-key 1\ninputs %s\nreadonly %v\ndata-volume %v\ntarget %s\n", in.Key(), o.Readonly, o.DataVolume, o.Target)
	return hex.EncodeToString(h.Sum(nil))
}

// fromRemote answers Pack from the shared build cache: the local image when it was made from
// the same inputs, else a verified pull; nil: build, after the lookup it returns, if any.
func fromRemote(ctx context.Context, p *Project, o Options, inputKey string, start time.Time) (*PackResult, *remotecache.Result, error) {
	user, err := userconfig.Load()
	if err != nil {
		return nil, nil, err
	}
	settings, err := remotecache.Resolve("", p.Config, user)
	if err != nil || settings.Remote == "" {
		return nil, nil, err
	}
	out := outPath(p, o)
	stamp := stampPath(p, out)
	if err := image.SweepKilled(out); err != nil {
		return nil, nil, err
	}
	// What this cache pulled before is kept without a build stamp: its input key says it is
	// current.
	if st, err := readPackStamp(stamp); err == nil && st.Input == inputKey {
		if fi, err := os.Stat(out); err == nil && fi.Size() > 0 {
			if sum, err := fileSHA256(out); err == nil && sum == st.SHA256 {
				return &PackResult{Image: out, SHA256: sum, Size: fi.Size(), Cached: true, Sizes: st.Sizes, InputKey: inputKey,
					Spans: []trace.Span{trace.NewSpan("pack", start, time.Now(), "cached", "true")}}, nil, nil
			}
		}
	}
	rc := remotecache.Open(settings, user, p.Cache, o.Progress, o.logger())
	res, sum, err := rc.Fetch(ctx, inputKey, out)
	if err != nil || sum == "" {
		return nil, &res, err
	}
	fi, err := os.Stat(out)
	if err != nil {
		return nil, nil, err
	}
	st, _ := json.Marshal(packStamp{Input: inputKey, SHA256: sum})
	if err := atomicfile.WriteFile(stamp, st, 0o644); err != nil {
		return nil, nil, err
	}
	return &PackResult{Image: out, SHA256: sum, Size: fi.Size(), InputKey: inputKey, Remote: &res,
		Spans: []trace.Span{trace.NewSpan("pull", start, time.Now(), "remote", "hit")}}, nil, nil
}

func pack(ctx context.Context, p *Project, o Options, br *build.Result, inputKey string, buildStart, packStart time.Time) (*PackResult, error) {
	spans := func(cached bool) []trace.Span {
		return []trace.Span{
			trace.NewSpan("build", buildStart, packStart, "cached", fmt.Sprint(br.Cached)),
			trace.NewSpan("pack", packStart, time.Now(), "cached", fmt.Sprint(cached)),
		}
	}
	out := outPath(p, o)
	ib, err := initbin.Build(ctx, p.Cache.Dir)
	if err != nil {
		return nil, err
	}
	key := sha256.New()
	fmt.Fprintf(key, "ukernel %s\nbuild %s\nkernel %s\ninit %s\n", version.BinaryDigest(), br.Digest, p.Lock.Kernel.SHA256, ib.SHA256)
	if o.Readonly {
		fmt.Fprintf(key, "readonly\n")
	}
	if o.DataVolume {
		fmt.Fprintf(key, "data-volume\n")
	}
	keyHex := hex.EncodeToString(key.Sum(nil))
	stampPath := stampPath(p, out)
	if err := image.SweepKilled(out); err != nil {
		return nil, err
	}
	if st, err := readPackStamp(stampPath); err == nil && st.Key == keyHex {
		if fi, err := os.Stat(out); err == nil && fi.Size() > 0 {
			if sum, err := fileSHA256(out); err == nil && sum == st.SHA256 {
				if st.Input != inputKey {
					// The same image from other inputs (an edit undone): record the ones it is now.
					st.Input = inputKey
					b, _ := json.Marshal(st)
					if err := atomicfile.WriteFile(stampPath, b, 0o644); err != nil {
						return nil, err
					}
				}
				return &PackResult{Image: out, SHA256: sum, Size: fi.Size(), Cached: true, Build: br, Sizes: st.Sizes, Spans: spans(true), InputKey: inputKey}, nil
			}
		}
	}
	// The stamp's key holds the kernel package's digest: only a pack reads the tree (and checks
	// it against its seal).
	kernel, err := kernelTree(ctx, p, o)
	if err != nil {
		return nil, err
	}
	m, err := build.Manifest(p.Config, p.Base, br, p.Lock.Digest, len(p.Lock.Packages))
	if err != nil {
		return nil, err
	}
	m.Lock.Closure = closure(p.Lock)
	m.Kernel.Package = p.Lock.Kernel.Name
	m.Kernel.Version = p.Lock.Kernel.Version
	m.Kernel.Release = kernel.Release
	m.Build.Go = ib.GoVersion
	m.Exec = (!o.Release && !o.Readonly) || p.Config.Debug.Shell
	bundleSum, bundleSize, err := fileDigest(br.Bundle)
	if err != nil {
		return nil, err
	}
	m.Artefacts = append(m.Artefacts, abiArtefact("bundle", "build/bundle.tgz", bundleSize, bundleSum))
	res, err := image.Pack(ctx, image.Input{
		Manifest: m, KernelPath: kernel.Vmlinuz, ModulesDir: kernel.ModulesDir,
		Modules: modules(p.Config, o.DataVolume), ModuleGroups: build.GuestModuleGroups, InitPath: ib.Path, RootDir: br.RootDir, Output: out,
		SourceDateEpoch: br.Epoch, Readonly: o.Readonly,
	})
	if err != nil {
		return nil, err
	}
	st, _ := json.Marshal(packStamp{Key: keyHex, Input: inputKey, SHA256: res.SHA256, Sizes: res.Sizes})
	if err := atomicfile.WriteFile(stampPath, st, 0o644); err != nil {
		return nil, err
	}
	return &PackResult{Image: res.Path, SHA256: res.SHA256, Size: res.Size, Build: br, Sizes: res.Sizes, Spans: spans(false), InputKey: inputKey}, nil
}

// Open takes the project lock of o.Dir for o.Command and loads the project: how every command
// that builds the project's image starts, so that two of them never write its env lock,
// build/ and dist/ at once. release frees the lock.
func Open(ctx context.Context, o Options) (p *Project, release func(), err error) {
	var waiting io.Writer
	if o.Progress != nil {
		waiting = o.Progress
	}
	if release, err = project.LockProject(ctx, o.Dir, o.Command, 0, waiting); err != nil {
		return nil, nil, err
	}
	if p, err = Load(ctx, o); err != nil {
		release()
		return nil, nil, err
	}
	return p, release, nil
}

// PackProject packs the project's image under its lock (Open, then Pack) and releases the lock.
func PackProject(ctx context.Context, o Options) (*Project, *PackResult, error) {
	p, release, err := Open(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	defer release()
	r, err := Pack(ctx, p, o)
	if err != nil {
		return nil, nil, err
	}
	return p, r, nil
}

// Image returns a packed image of the project in dir, doing whatever is out of date.
func Image(ctx context.Context, o Options) (string, error) {
	if o.Command == "" {
		o.Command = "ukernel, building the image"
	}
	lockStart := time.Now()
	p, release, err := Open(ctx, o)
	if err != nil {
		return "", err
	}
	defer release()
	start := time.Now()
	r, err := Pack(ctx, p, o)
	if err != nil {
		return "", err
	}
	recordSpans(p, o, append([]trace.Span{trace.NewSpan("lock", lockStart, start, "cached", fmt.Sprint(!p.LockChanged))}, r.Spans...))
	if r.Cached {
		o.logger().Debug("image up to date", "image", r.Image, "took", time.Since(start))
	} else {
		o.Progress.Printf("Image created: %s", rel(p.Dir, r.Image))
	}
	return r.Image, nil
}

// Kernel is the unpacked locked kernel.
type Kernel = debian.KernelTree

// kernelComplete marks a whole kernel tree: written last, holding the digest of the package it
// was unpacked from and the tree's seal, so a tree cut short (by an older ukernel racing with
// itself, or a crash) is never taken for a good one, nor one changed since (a flipped byte in a
// module would change the image).
const kernelComplete = ".ukernel-complete"

// unpackPrefix and asidePrefix name a kernel unpacked before its rename, and a tree being
// replaced, in the cache's kernels/ directory.
const unpackPrefix, asidePrefix = ".unpack-", ".old-"

type kernelMark struct {
	Package string          `json:"package"` // sha256 of the kernel .deb
	Tree    *cache.TreeSeal `json:"tree"`
}

// kernelTree unpacks the locked kernel package once into the cache, keyed by its digest. The
// tree is unpacked and checked in a private directory and published by a rename only when it is
// whole and usable, so a failed unpack leaves nothing behind and the next try fails the same way.
func kernelTree(ctx context.Context, p *Project, o Options) (*Kernel, error) {
	k := p.Lock.Kernel
	kernels := cache.Kernels.In(p.Cache.Dir)
	dir := filepath.Join(kernels, k.SHA256)
	kt, err := findKernel(dir, k.SHA256)
	if err == nil {
		cache.MarkUsed(dir)
		return kt, nil
	}
	if exists(dir) {
		o.logger().Warn("unpacking the kernel again", "reason", err)
	}
	deb, err := lock.FetchKernel(ctx, p.Lock, p.Cache, lockOptions(o, p.Cache))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(kernels, 0o755); err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	// A private directory per unpack: two packs on a cold cache never write into the same tree,
	// and the rename publishes only a whole one. Those of a killed ukernel go first.
	for _, prefix := range []string{unpackPrefix, asidePrefix} {
		if _, err := workdir.Sweep(kernels, prefix); err != nil {
			o.logger().Warn("could not remove a killed unpack", "err", err)
		}
	}
	tmp, err := workdir.Mkdir(kernels, unpackPrefix)
	if err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	defer os.RemoveAll(tmp) // no-op after the rename
	u, err := debian.ExtractDeb(ctx, deb, tmp)
	if err != nil {
		return nil, fmt.Errorf("unpack kernel %s %s: %w", k.Name, k.Version, err)
	}
	if err := u.Matches(k.Name, k.Version, k.Architecture); err != nil {
		return nil, fmt.Errorf("locked kernel %s %s: %w", k.Name, k.Version, err)
	}
	if _, err := debian.FindKernel(tmp); err != nil {
		return nil, fmt.Errorf("kernel %s %s: %w", k.Name, k.Version, err)
	}
	seal, err := cache.SealTree(tmp, kernelComplete)
	if err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	if err := writeKernelMark(tmp, kernelMark{Package: k.SHA256, Tree: seal}); err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	crashpoint.At("cache-kernel-tree")
	if err := atomicfile.Rename(tmp, dir); err != nil {
		// Another process published the same tree meanwhile: keep it, discard ours.
		if kt, err := findKernel(dir, k.SHA256); err == nil {
			return kt, nil
		}
		// A tree that is not usable (left incomplete, or published by an older ukernel that did
		// not check it): moved aside whole (a rename, so a process racing on the same
		// replacement never deletes a tree just published), then ours goes in; if another one
		// won meanwhile, that one is kept.
		if aside, err := workdir.Mkdir(kernels, asidePrefix); err == nil {
			if atomicfile.Rename(dir, filepath.Join(aside, "tree")) == nil || !exists(dir) {
				atomicfile.Rename(tmp, dir)
			}
			os.RemoveAll(aside)
		}
		if kt, err := findKernel(dir, k.SHA256); err == nil {
			return kt, nil
		}
		return nil, fmt.Errorf("kernel cache: could not replace the unusable tree %s: remove it (or run ukernel cache prune) and try again", dir)
	}
	return findKernel(dir, k.SHA256)
}

// findKernel returns the kernel unpacked in dir if the tree is complete for package digest sum
// and unchanged since.
func findKernel(dir, sum string) (*Kernel, error) {
	var mark kernelMark
	data, err := os.ReadFile(filepath.Join(dir, kernelComplete))
	if err != nil || json.Unmarshal(data, &mark) != nil || mark.Package != sum || mark.Tree == nil {
		return nil, fmt.Errorf("kernel tree %s is incomplete (no %s for %s)", dir, kernelComplete, sum)
	}
	renewed, err := mark.Tree.Check(dir, kernelComplete)
	if err != nil {
		return nil, fmt.Errorf("kernel tree %s: %w", dir, err)
	}
	if renewed {
		// Best effort: a failure only costs hashing the moved files again next time.
		_ = writeKernelMark(dir, mark)
	}
	return debian.FindKernel(dir)
}

func writeKernelMark(dir string, m kernelMark) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, kernelComplete), data, 0o644)
}

func readPackStamp(p string) (*packStamp, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var st packStamp
	return &st, json.Unmarshal(data, &st)
}

func fileSHA256(p string) (string, error) {
	sum, _, err := fileDigest(p)
	return sum, err
}

func fileDigest(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// modules are the kernel modules every boot of the image loads.
func modules(cfg *project.Config, dataVolume bool) []string {
	if dataVolume && cfg.Data.DiskMB == 0 {
		c := *cfg
		c.Data.DiskMB = 1
		return build.ModulesFor(&c)
	}
	return build.ModulesFor(cfg)
}

func rel(dir, p string) string {
	if r, err := filepath.Rel(dir, p); err == nil && !filepath.IsAbs(r) && r[0] != '.' {
		return r
	}
	return p
}

func abiArtefact(name, path string, size int64, sum string) abi.Artefact {
	return abi.Artefact{Name: name, Path: path, Size: size, SHA256: sum}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
