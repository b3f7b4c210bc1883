package lock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/debian"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/pypi"
)

// Options control Resolve and the Fetch functions.
type Options struct {
	Dir string // project directory
	// Offline never touches the network: indices and artefacts must be in the cache.
	Offline bool
	// Locked fails instead of writing when the lock would change.
	Locked bool
	// Upgrade re-resolves to the newest versions instead of keeping locked ones.
	Upgrade  bool
	Progress io.Writer // progress lines (nil: silent)
	TTY      bool      // Progress is a terminal: draw bars
	Logger   *slog.Logger
	Cache    *cache.Cache // nil: cache.Open()
	Keyring  string       // nil: the Debian archive keyring
	// Env is the request to lock; nil reads env/ukernel.env. `env add` and `env remove` lock
	// their edited request first and save it only once it has locked.
	Env *project.Env
	// Reresolve replaces an up-to-date lock the signed archive does not prove (`env lock`)
	// instead of refusing it (build, --locked).
	Reresolve bool
}

func (o *Options) init() error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Cache == nil {
		c, err := cache.Open()
		if err != nil {
			return err
		}
		o.Cache = c
	}
	return nil
}

func (o *Options) fetcher() *cache.Fetcher {
	return &cache.Fetcher{Progress: o.Progress, TTY: o.TTY, Logger: o.Logger}
}

// sources returns the mirror's suites for a release codename per the project's settings.
func sources(dir, codename string) ([]debian.Source, error) {
	mirror := ""
	if cfg, err := project.Load(dir); err == nil {
		mirror = cfg.Env.Mirror
	} else if _, statErr := os.Stat(dir + "/" + project.ConfigFile); statErr == nil {
		return nil, err
	}
	return debian.Sources(mirror, project.ConfigFile+" [env] mirror", codename)
}

// Resolve brings dir's lock up to date with its env/ukernel.env and returns it. An existing
// lock whose request is unchanged is kept as is (no network) unless Upgrade is set; otherwise the
// closure is resolved, keeping locked versions that still satisfy. changed reports whether the
// lock file differs from before; with Locked a change is an error and nothing is written. A lock
// that cannot be read or fails its digest is an error, except with Upgrade, which replaces it.
func Resolve(ctx context.Context, o Options) (*Lock, bool, error) {
	if err := o.init(); err != nil {
		return nil, false, err
	}
	env := o.Env
	if env == nil {
		var err error
		if env, err = project.LoadEnv(o.Dir); err != nil {
			return nil, false, err
		}
	}
	base, err := project.LookupBase(env.Base)
	if err != nil {
		return nil, false, fmt.Errorf("%s: [env] base: %w", project.ConfigFile, err)
	}
	req := requestOf(env)
	old, err := Load(o.Dir)
	if err != nil && !errors.Is(err, ErrNoLock) {
		// A damaged lock's pins cannot be trusted, and resolving without them would silently
		// move every package: only an explicit upgrade, which drops the pins anyway, replaces it.
		if !o.Upgrade || o.Locked {
			return nil, false, err
		}
		o.Logger.Warn("replacing unreadable lock", "err", err)
		old = nil
	}
	if old != nil && !o.Upgrade && old.Request.equal(req) {
		err := Prove(ctx, old, o)
		var unproven *debian.UnprovenError
		if err == nil {
			return old, false, nil
		} else if o.Locked || !o.Reresolve || !errors.As(err, &unproven) {
			return nil, false, err
		}
		// Resolved afresh from the signed indices; the unproven lock only steers versions.
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "Re-resolving %s: %v\n", project.LockFile, unproven)
		}
	}
	if o.Locked {
		why := "it does not exist"
		if old != nil && !old.Request.equal(req) {
			why = "env/ukernel.env changed since it was written"
		} else if old != nil {
			why = "an upgrade would change it"
		}
		return nil, false, fmt.Errorf("--locked: %s is out of date (%s); run ukernel env lock and commit the result", project.LockFile, why)
	}
	l, err := build(ctx, o, env, base, req, old)
	if err != nil {
		return nil, false, err
	}
	newData, err := l.Marshal()
	if err != nil {
		return nil, false, err
	}
	// The resolver read parsed indices from the cache: the new pins are proven like any lock's.
	if err := Prove(ctx, l, o); err != nil {
		return nil, false, err
	}
	if old != nil {
		oldData, _ := old.Marshal()
		if bytes.Equal(oldData, newData) {
			return l, false, nil
		}
	}
	if err := l.Save(o.Dir); err != nil {
		return nil, false, err
	}
	return l, true, nil
}

// OpenArchive opens the Debian release of a base per the project's mirror settings.
func OpenArchive(ctx context.Context, o Options, codename string) (*debian.Archive, error) {
	if err := o.init(); err != nil {
		return nil, err
	}
	srcs, err := sources(o.Dir, codename)
	if err != nil {
		return nil, err
	}
	return debian.Open(ctx, debian.OpenOptions{Sources: srcs, Cache: o.Cache, Fetcher: o.fetcher(), Keyring: o.Keyring, Offline: o.Offline, Logger: o.Logger})
}

func build(ctx context.Context, o Options, env *project.Env, base project.Base, req Request, old *Lock) (*Lock, error) {
	start := time.Now()
	arch, err := OpenArchive(ctx, o, base.Codename)
	if err != nil {
		return nil, err
	}
	o.Logger.Debug("indices loaded", "packages", len(arch.Packages), "took", time.Since(start))
	r := debian.NewResolver(arch.Packages)
	if old != nil && !o.Upgrade {
		r.Prefer = map[string]string{}
		for _, p := range old.Packages {
			r.Prefer[p.Name] = p.Version
		}
		for _, p := range []*Package{old.Kernel, old.Tools} {
			if p != nil {
				r.Prefer[p.Name] = p.Version
			}
		}
	}
	var reqs []debian.Request
	for _, n := range base.Packages {
		reqs = append(reqs, debian.Request{Name: n})
	}
	for _, s := range env.System {
		reqs = append(reqs, debian.ParseRequest(s))
	}
	closure, err := r.Resolve(reqs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", project.EnvFile, err)
	}
	var lockedKernel *Package
	if old != nil && !o.Upgrade && old.Request.Kernel == req.Kernel {
		lockedKernel = old.Kernel
	}
	kernel, err := resolveKernel(r, env.Kernel, lockedKernel)
	if err != nil {
		return nil, fmt.Errorf("%s: kernel: %w", project.EnvFile, err)
	}
	o.Logger.Debug("resolved", "packages", len(closure), "took", time.Since(start))
	l := &Lock{Version: FormatVersion, Base: env.Base, Request: req, Kernel: lockPackage(kernel)}
	// The tools are a convenience of development images: an archive without them locks the
	// rest all the same.
	if tools, err := r.Choose(ToolsPackage); err == nil {
		l.Tools = lockPackage(tools)
	} else {
		o.Logger.Warn("development images get no shell tools", "package", ToolsPackage, "err", err)
	}
	for _, p := range closure {
		l.Packages = append(l.Packages, *lockPackage(p))
	}
	for _, s := range arch.Suites {
		l.Archives = append(l.Archives, Archive{
			Origin: s.Release.Origin, Suite: s.Release.Suite, Codename: s.Release.Codename,
			Date: s.Release.Date.UTC().Format(time.RFC3339), Index: s.IndexPath, IndexSHA256: s.IndexSHA256,
		})
	}
	if len(env.Python) > 0 {
		// Wheels are built for the base's Python (cp311, cp313): a new base needs new ones.
		if old != nil && !o.Upgrade && old.Request.Base == req.Base && slices.Equal(old.Request.Python, req.Python) {
			l.Python = old.Python
		} else {
			if o.Offline {
				return nil, fmt.Errorf("--offline: the python requirements or the base changed and pip needs the network to resolve them; run once without --offline")
			}
			l.Python, err = lockPython(ctx, o, env.Python, base)
			if err != nil {
				return nil, err
			}
		}
	}
	return l, nil
}

// resolveKernel picks the guest kernel for name, a metapackage (linux-image-cloud-amd64) or a
// versioned image. The image locked before is kept while the archive has it, like any locked
// package; otherwise the metapackage is followed to the versioned image it depends on. The image
// is locked alone, without the dependencies that serve installing a kernel on a host.
func resolveKernel(r *debian.Resolver, name string, locked *Package) (*debian.Package, error) {
	if locked != nil {
		for _, p := range r.Versions(locked.Name) {
			if p.Version != locked.Version {
				continue
			}
			// A metapackage locked by an older ukernel is not kept: it is not a kernel.
			if deps, err := imageDeps(p); err == nil && len(deps) == 0 {
				return p, nil
			}
		}
	}
	p, err := r.Choose(name)
	if err != nil {
		return nil, err
	}
	for range 4 {
		deps, err := imageDeps(p)
		if err != nil {
			return nil, err
		}
		if len(deps) == 0 {
			return p, nil
		}
		var next *debian.Package
		for _, a := range deps {
			// Versions are newest first; the metapackage names its image with (= version).
			if i := slices.IndexFunc(r.Versions(a.Name), func(v *debian.Package) bool { return a.Constraint.Satisfied(v.Version) }); i >= 0 {
				next = r.Versions(a.Name)[i]
				break
			}
		}
		if next == nil {
			return nil, fmt.Errorf("%s %s depends on %s, which the archive does not have (a mirror mid-update?): try again later, or set kernel to a versioned linux-image package the archive has", p.Name, p.Version, deps[0])
		}
		p = next
	}
	return nil, fmt.Errorf("%s: kernel metapackage chain too long", name)
}

// imageDeps returns the linux-image-* dependencies of a kernel metapackage; an image has none.
func imageDeps(p *debian.Package) ([]debian.Atom, error) {
	groups, err := debian.ParseRelations(p.Depends)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", p.Name, p.Version, err)
	}
	var out []debian.Atom
	for _, g := range groups {
		if strings.HasPrefix(g[0].Name, "linux-image-") {
			out = append(out, g[0])
		}
	}
	return out, nil
}

func lockPackage(p *debian.Package) *Package {
	return &Package{Name: p.Name, Version: p.Version, Architecture: p.Architecture, Filename: p.Filename, Size: p.Size, SHA256: p.SHA256, Suite: p.Suite}
}

func lockPython(ctx context.Context, o Options, reqs []string, base project.Base) ([]pypi.Wheel, error) {
	if base.PythonVersion == "" {
		return nil, fmt.Errorf("%s: python packages need a python base (%s [env] base = \"python-3.11\"), not %s", project.EnvFile, project.ConfigFile, base.Name)
	}
	tmp, err := o.Cache.WorkDir()
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	wheels, err := pypi.Download(ctx, reqs, pypi.Target{PythonVersion: base.PythonVersion}, tmp, nil)
	if err != nil {
		return nil, err
	}
	for _, w := range wheels {
		if _, err := o.Cache.PutFile(tmp+"/"+w.Filename, w.SHA256); err != nil {
			return nil, err
		}
	}
	return wheels, nil
}
