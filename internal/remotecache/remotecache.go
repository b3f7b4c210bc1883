// Package remotecache is the shared build cache: images kept in an OCI registry repository
// under a tag derived from their input key, so that a machine with the same lock and source
// pulls what another machine built instead of building it again (docs/DISTRIBUTION.md).
//
// A hit is used only once oci has checked it: the manifest under the trust policy, every blob
// against its digest, the image against its revision. Anything else, a miss, an error or a
// registry that does not answer within Deadline, falls back to building.
package remotecache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"oras.land/oras-go/v2/errdef"

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/oci"
	"github.com/ukernel-dev/ukernel/internal/progress"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/sign"
	"github.com/ukernel-dev/ukernel/internal/userconfig"
)

const (
	// Env names the cache (host[:port]/repository), over ukernel.toml and config.toml; "off"
	// turns the cache off.
	Env = "UKERNEL_CACHE_REMOTE"
	// PushEnv = 1 makes this process a writer, as [cache] push = true in config.toml does.
	PushEnv = "UKERNEL_CACHE_PUSH"
	// Deadline bounds the lookup: a cache that does not answer costs at most this much.
	Deadline = 5 * time.Second
	// TagPrefix starts every cache tag: TagPrefix + the input key's 64 hex digits.
	TagPrefix = "ukernel-cache-"
)

// Settings say which cache is used, where that was set, and whether this user writes to it.
type Settings struct {
	Remote string `json:"remote"`
	From   string `json:"from"` // --remote, UKERNEL_CACHE_REMOTE, ukernel.toml or config.toml
	Push   bool   `json:"push"`
}

// Resolve picks the cache, first found: flag, the environment, the project, the user's
// config.toml. Writing is the user's setting only: a repository's ukernel.toml cannot make
// every clone a writer. An empty Remote means no cache.
func Resolve(flag string, proj *project.Config, user *userconfig.Config) (Settings, error) {
	var s Settings
	switch {
	case flag != "":
		s.Remote, s.From = flag, "--remote"
	case os.Getenv(Env) != "":
		s.Remote, s.From = os.Getenv(Env), Env
	case proj != nil && proj.Cache.Remote != "":
		s.Remote, s.From = proj.Cache.Remote, project.ConfigFile+" [cache] remote"
	case user != nil && user.File.Cache.Remote != "":
		s.Remote, s.From = user.File.Cache.Remote, "config.toml [cache] remote"
	}
	if s.Remote == "off" {
		return Settings{}, nil
	}
	s.Remote = strings.TrimSuffix(s.Remote, "/")
	s.Push = os.Getenv(PushEnv) == "1" || (user != nil && user.File.Cache.Push)
	if s.Remote == "" {
		return s, nil
	}
	ref, err := oci.ParseRef(s.Remote)
	if err != nil || ref.Kind != oci.KindRegistry || strings.ContainsAny(s.Remote, "@") || ref.String() != s.Remote+":latest" {
		return Settings{}, fmt.Errorf("%s: %q is not a registry repository; write host[:port]/path, without a tag (e.g. registry.example.com/team/cache)", s.From, s.Remote)
	}
	return s, nil
}

// Tag is the tag an image with input key key has in the cache.
func Tag(key string) string { return TagPrefix + key }

// Cache is an opened shared build cache.
type Cache struct {
	Settings
	oci   oci.Options
	store *cache.Cache
	prog  *progress.Writer
}

// Open prepares the cache's transport: the user's registry settings ([registry."HOST"]
// insecure, ca_file) and trust policy apply as they do to pull.
func Open(s Settings, user *userconfig.Config, c *cache.Cache, prog *progress.Writer, log *slog.Logger) *Cache {
	o := oci.Options{Config: user, Logger: log, Progress: prog}
	if ref, err := oci.ParseRef(s.Remote); err == nil && user != nil {
		o.Insecure = user.Registry(ref.Reg.Registry).Insecure
	}
	return &Cache{Settings: s, oci: o, store: c, prog: prog}
}

// Outcome is what a lookup found.
type Outcome string

const (
	Hit         Outcome = "hit"         // pulled, verified and used
	Miss        Outcome = "miss"        // no image under the key
	Unreachable Outcome = "unreachable" // no answer within Deadline, or a transport error
	Refused     Outcome = "refused"     // there, but failed a check (digest, image, trust)
)

// Result is one lookup.
type Result struct {
	Remote  string        `json:"remote"`
	Key     string        `json:"key"`
	Outcome Outcome       `json:"outcome"`
	Ref     string        `json:"ref,omitempty"` // by digest, when the key named an image
	Error   string        `json:"error,omitempty"`
	Took    time.Duration `json:"took_ns"`
}

// Fetch looks the input key up and, on a hit, writes the verified image to out (atomically)
// and returns its SHA-256. Every outcome but a hit is told in one line and returns "": the
// caller builds. Only a failure to write out locally is an error.
func (c *Cache) Fetch(ctx context.Context, key, out string) (Result, string, error) {
	start := time.Now()
	res := Result{Remote: c.Remote, Key: key}
	ref := c.Remote + ":" + Tag(key)
	lctx, cancel := context.WithTimeout(ctx, Deadline)
	found, err := oci.Lookup(lctx, ref, c.oci)
	cancel()
	fallback := func(o Outcome, why string) (Result, string, error) {
		res.Outcome, res.Took = o, time.Since(start)
		if err != nil {
			res.Error = err.Error()
		}
		c.prog.Printf("Remote cache: %s; building", why)
		return res, "", nil
	}
	switch {
	case err != nil && ctx.Err() != nil:
		return res, "", ctx.Err()
	case errors.Is(err, errdef.ErrNotFound):
		return fallback(Miss, fmt.Sprintf("no image for input key %s in %s", short(key), c.Remote))
	case errors.Is(err, oci.ErrUntrusted):
		res.Ref = found.Ref
		return fallback(Refused, fmt.Sprintf("refused the image for input key %s: %v", short(key), err))
	case errors.Is(err, context.DeadlineExceeded):
		return fallback(Unreachable, fmt.Sprintf("%s did not answer within %s", c.Remote, Deadline))
	case err != nil:
		return fallback(Unreachable, fmt.Sprintf("%s unreachable (%v)", c.Remote, err))
	}
	res.Ref = found.Ref
	po := oci.PullOptions{Options: c.oci, Cache: c.store}
	if !c.prog.TTY() {
		po.Progress = nil // a bar on a terminal; elsewhere the one line below says it all
	}
	pulled, err := oci.Pull(ctx, found.Ref, po)
	if err != nil {
		if ctx.Err() != nil {
			return res, "", ctx.Err()
		}
		return fallback(Refused, fmt.Sprintf("refused the image for input key %s: %v", short(key), err))
	}
	sum, err := copyVerified(pulled.Path, out, pulled.Revision)
	if err != nil {
		return res, "", err
	}
	res.Outcome, res.Took = Hit, time.Since(start)
	c.prog.Printf("Remote cache: pulled %s for input key %s from %s (verified; no build)", short(pulled.Digest.Encoded()), short(key), c.Remote)
	return res, sum, nil
}

// copyVerified copies the pulled image to out, hashing it again on the way: the cache's copy
// could have changed since the pull checked it.
func copyVerified(src, out, want string) (string, error) {
	f, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	err = atomicfile.Write(out, 0o644, func(w *os.File) error {
		if _, err := io.Copy(io.MultiWriter(w, h), f); err != nil {
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			return fmt.Errorf("%s changed in the cache since it was pulled (sha256 %s, expected %s); run 'ukernel cache prune'", src, got, want)
		}
		return nil
	})
	return want, err
}

// PushResult is what `cache push` did.
type PushResult struct {
	oci.PushResult
	Remote string `json:"remote"`
	Key    string `json:"key"`
	Tag    string `json:"tag"`
}

// ErrReadOnly is returned by Push for a user who is not a writer.
var ErrReadOnly = errors.New("the remote cache is read-only for this user: a writer (a CI job) sets [cache] push = true in config.toml or UKERNEL_CACHE_PUSH=1")

// Push publishes the image at path under the input key, signed with sig when it is not nil.
func (c *Cache) Push(ctx context.Context, key, path string, sig *sign.PrivateKey) (PushResult, error) {
	res := PushResult{Remote: c.Remote, Key: key, Tag: Tag(key)}
	if !c.Settings.Push {
		return res, ErrReadOnly
	}
	r, err := oci.Push(ctx, path, c.Remote+":"+Tag(key), oci.PushOptions{Options: c.oci, Cache: c.store, Key: sig})
	res.PushResult = r
	return res, err
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
