package lock

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/pypi"
)

// FetchDebs makes every locked Debian package of the root filesystem available in the cache
// and returns package name -> verified .deb path. Cached packages need no network.
func FetchDebs(ctx context.Context, l *Lock, c *cache.Cache, o Options) (map[string]string, error) {
	o.Cache = c
	return fetchPackages(ctx, l, o, l.Packages)
}

// FetchKernel does the same for the locked kernel package.
func FetchKernel(ctx context.Context, l *Lock, c *cache.Cache, o Options) (string, error) {
	if l.Kernel == nil {
		return "", fmt.Errorf("%s pins no kernel: run ukernel env lock", project.LockFile)
	}
	o.Cache = c
	m, err := fetchPackages(ctx, l, o, []Package{*l.Kernel})
	if err != nil {
		return "", err
	}
	return m[l.Kernel.Name], nil
}

// FetchTools does the same for the locked tools package; "" when the lock has none.
func FetchTools(ctx context.Context, l *Lock, c *cache.Cache, o Options) (string, error) {
	if l.Tools == nil {
		return "", nil
	}
	o.Cache = c
	m, err := fetchPackages(ctx, l, o, []Package{*l.Tools})
	if err != nil {
		return "", err
	}
	return m[l.Tools.Name], nil
}

func fetchPackages(ctx context.Context, l *Lock, o Options, pkgs []Package) (map[string]string, error) {
	if err := o.init(); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(pkgs))
	var missing []Package
	for _, p := range pkgs {
		path, err := o.Cache.Path(p.SHA256)
		if err == nil {
			out[p.Name] = path
			continue
		}
		if !errors.Is(err, cache.ErrNotFound) {
			return nil, err
		}
		if err != cache.ErrNotFound {
			o.Logger.Warn("cached package was corrupt, fetching again", "package", p.Name, "err", err)
		}
		missing = append(missing, p)
	}
	if len(missing) == 0 {
		return out, nil
	}
	if o.Offline {
		return nil, fmt.Errorf("--offline: %d locked packages are not in the cache (first: %s %s)", len(missing), missing[0].Name, missing[0].Version)
	}
	base, err := project.LookupBase(l.Base)
	if err != nil {
		return nil, err
	}
	srcs, err := sources(o.Dir, base.Codename)
	if err != nil {
		return nil, err
	}
	uris := map[string]string{}
	for _, s := range srcs {
		uris[s.Suite] = s.URI
	}
	f := o.fetcher()
	for _, p := range missing {
		uri, ok := uris[p.Suite]
		if !ok {
			return nil, fmt.Errorf("%s %s comes from suite %s, which the configured mirror (%s) does not list", p.Name, p.Version, p.Suite, srcs[0].From)
		}
		path, err := f.Fetch(ctx, o.Cache, uri+"/"+p.Filename, p.SHA256, p.Name+" "+p.Version, p.Size)
		if errors.Is(err, cache.ErrNotOnServer) {
			return nil, fmt.Errorf("locked package %s %s (%s) is no longer on the mirror: Debian drops superseded versions; run ukernel env upgrade, or set [env] mirror to a snapshot archive", p.Name, p.Version, p.Suite)
		}
		if err != nil {
			return nil, fmt.Errorf("fetch %s %s: %w", p.Name, p.Version, err)
		}
		out[p.Name] = path
	}
	return out, nil
}

// FetchWheels makes every locked wheel available in the cache and returns project name ->
// verified wheel path. Missing wheels are downloaded again through pip by exact version.
func FetchWheels(ctx context.Context, l *Lock, c *cache.Cache, o Options) (map[string]string, error) {
	o.Cache = c
	if err := o.init(); err != nil {
		return nil, err
	}
	out := map[string]string{}
	base, err := project.LookupBase(l.Base)
	if err != nil {
		return nil, err
	}
	for _, w := range l.Python {
		path, err := c.Path(w.SHA256)
		if err == nil {
			out[w.Name] = path
			continue
		}
		if !errors.Is(err, cache.ErrNotFound) {
			return nil, err
		}
		if o.Offline {
			return nil, fmt.Errorf("--offline: locked wheel %s is not in the cache", w.Filename)
		}
		tmp, err := c.WorkDir()
		if err != nil {
			return nil, err
		}
		p, err := pypi.Fetch(ctx, w, pypi.Target{PythonVersion: base.PythonVersion}, tmp)
		if err == nil {
			_, err = c.PutFile(p, w.SHA256)
		}
		os.RemoveAll(tmp)
		if err != nil {
			return nil, err
		}
		out[w.Name] = c.BlobPath(w.SHA256)
	}
	return out, nil
}
