package debian

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/ukernel-dev/ukernel/internal/cache"
)

// Pin is a package a lock says the archive published: the claim Prove checks.
type Pin struct {
	Name, Version, Architecture string
	Filename                    string
	Size                        int64
	SHA256                      string
	Suite                       string // codename of the suite whose index listed it
}

func (p Pin) String() string { return p.Name + " " + p.Version }

// LockedIndex is the index a lock was resolved from, for one suite.
type LockedIndex struct {
	Codename string
	Path     string // below dists/<suite>/, e.g. main/binary-amd64/Packages.xz
	SHA256   string
}

// UnprovenError names a pinned package the archive's signature does not vouch for.
type UnprovenError struct {
	Pin    Pin
	Reason string
}

func (e *UnprovenError) Error() string {
	return fmt.Sprintf("%s %s (%s) is not proven by the signed archive: %s", e.Pin.Name, e.Pin.Version, e.Pin.Suite, e.Reason)
}

// Prove checks every pin against the archive's signature, link by link: the suite's InRelease
// verifies against the keyring, it lists the lock's index by SHA-256, the index's content has that
// digest, and the index's stanza for the pin has the pin's architecture, file name, size and
// SHA-256. Nothing is taken on the cache's word: a cached InRelease is verified again and a cached
// index is read only by its signed digest. The InRelease that signed an index is kept in the cache
// when first verified, so a lock stays provable offline after the mirror moved on.
//
// When the lock's index is no longer signed by any InRelease at hand (the suite was updated since
// and the cache has no copy), the suite's current signed index proves the pins instead: the claim
// checked, "Debian published this file as this package", is the same.
func Prove(ctx context.Context, o OpenOptions, indices []LockedIndex, pins []Pin) error {
	if o.Keyring == "" {
		o.Keyring = DefaultKeyring
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	bySuite := map[string][]Pin{}
	var suites []string
	for _, p := range pins {
		if _, ok := bySuite[p.Suite]; !ok {
			suites = append(suites, p.Suite)
		}
		bySuite[p.Suite] = append(bySuite[p.Suite], p)
	}
	slices.Sort(suites)
	for _, suite := range suites {
		if err := proveSuite(ctx, o, suite, indices, bySuite[suite]); err != nil {
			return err
		}
	}
	return nil
}

func proveSuite(ctx context.Context, o OpenOptions, suite string, indices []LockedIndex, pins []Pin) error {
	i := slices.IndexFunc(o.Sources, func(s Source) bool { return s.Suite == suite })
	if i < 0 {
		return &UnprovenError{Pin: pins[0], Reason: fmt.Sprintf("the configured mirror (%s) has no suite %s", sourcesFrom(o.Sources), suite)}
	}
	src := o.Sources[i]
	var locked *LockedIndex
	if j := slices.IndexFunc(indices, func(li LockedIndex) bool { return li.Codename == suite }); j >= 0 {
		locked = &indices[j]
	}
	rel, idxPath, err := signingRelease(ctx, o, src, locked)
	if err != nil {
		return err
	}
	data, err := signedIndex(ctx, o, src, rel, idxPath)
	if err != nil {
		return err
	}
	names := map[string]bool{}
	for _, p := range pins {
		names[p.Name] = true
	}
	listed, err := FindPackages(data, names)
	if err != nil {
		return fmt.Errorf("signed index %s of %s: %w", idxPath, suite, err)
	}
	for _, p := range pins {
		k := slices.IndexFunc(listed, func(q Package) bool {
			return q.Name == p.Name && q.Version == p.Version && q.Architecture == p.Architecture
		})
		if k < 0 {
			why := fmt.Sprintf("the signed index of %s (sha256 %s) has no %s %s for %s", suite, rel.Files[idxPath].SHA256, p.Name, p.Version, p.Architecture)
			if locked == nil || rel.Files[locked.Path].SHA256 != locked.SHA256 {
				why += " (the index it was locked from is no longer signed by the mirror's InRelease nor cached)"
			}
			return &UnprovenError{Pin: p, Reason: why}
		}
		q := listed[k]
		switch {
		case q.SHA256 != p.SHA256:
			return &UnprovenError{Pin: p, Reason: fmt.Sprintf("the lock pins sha256 %s, the signed index says %s", p.SHA256, q.SHA256)}
		case q.Size != p.Size:
			return &UnprovenError{Pin: p, Reason: fmt.Sprintf("the lock pins size %d, the signed index says %d", p.Size, q.Size)}
		case q.Filename != p.Filename:
			return &UnprovenError{Pin: p, Reason: fmt.Sprintf("the lock pins file %s, the signed index says %s", p.Filename, q.Filename)}
		}
	}
	return nil
}

func sourcesFrom(srcs []Source) string {
	if len(srcs) == 0 {
		return "none"
	}
	return srcs[0].From
}

// byIndexKey is where the InRelease that signed an index is kept, by the index's digest.
func byIndexKey(sum string) string { return "inrelease-by-index/" + sum }

// keepSigner records raw (a verified InRelease) as the signer of its Packages index.
func keepSigner(c *cache.Cache, rel *Release, raw []byte) {
	_, sum, _ := packagesIndex(rel)
	if sum == "" {
		return
	}
	if _, err := c.ReadState(byIndexKey(sum)); err == nil {
		return
	}
	_ = c.WriteState(byIndexKey(sum), raw) // best effort: without it the current index proves
}

// packagesIndex returns the path, digest and compression of the amd64 Packages index rel lists.
func packagesIndex(rel *Release) (path, sum, comp string) {
	base := Component + "/binary-" + Arch + "/Packages"
	for _, ext := range []string{".xz", ".gz", ".zst", ""} {
		if fi, ok := rel.Files[base+ext]; ok {
			return base + ext, fi.SHA256, ext
		}
	}
	return "", "", ""
}

// signingRelease returns a verified Release listing the lock's index, else the suite's current
// one, with the index path to read.
func signingRelease(ctx context.Context, o OpenOptions, src Source, locked *LockedIndex) (*Release, string, error) {
	where := fmt.Sprintf("suite %s at %s (mirror from %s)", src.Suite, src.URI, src.From)
	signs := func(rel *Release) bool {
		return locked != nil && rel.Files[locked.Path].SHA256 == locked.SHA256
	}
	if locked != nil {
		if raw, err := o.Cache.ReadState(byIndexKey(locked.SHA256)); err == nil {
			// A cached copy is re-verified; one that fails is ignored, not trusted.
			if rel, err := VerifyInRelease(raw, o.Keyring); err == nil && signs(rel) {
				return rel, locked.Path, nil
			} else if err != nil {
				o.Logger.Warn("cached InRelease does not verify, ignored", "suite", src.Suite, "err", err)
			}
		}
	}
	var raw []byte
	var err error
	if o.Offline {
		if raw, err = o.Cache.ReadState(stateKey(src)); err != nil {
			return nil, "", fmt.Errorf("offline: no cached InRelease for %s: run once without --offline", where)
		}
	} else if raw, err = o.Fetcher.Get(ctx, src.URI+"/dists/"+src.Suite+"/InRelease"); err != nil {
		return nil, "", fmt.Errorf("fetch InRelease of %s: %w", where, err)
	}
	rel, err := VerifyInRelease(raw, o.Keyring)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", where, err)
	}
	if !o.Offline {
		if err := rel.CheckFresh(o.Now); err != nil {
			return nil, "", fmt.Errorf("%s: %w", where, err)
		}
		if err := o.Cache.WriteState(stateKey(src), raw); err != nil {
			return nil, "", err
		}
		keepSigner(o.Cache, rel, raw)
	}
	if signs(rel) {
		return rel, locked.Path, nil
	}
	path, _, _ := packagesIndex(rel)
	if path == "" {
		return nil, "", fmt.Errorf("%s: Release lists no %s/binary-%s/Packages index", where, Component, Arch)
	}
	o.Logger.Info("the index a lock was made from is no longer signed; proving its pins by the current one", "suite", src.Suite)
	return rel, path, nil
}

// signedIndex returns the uncompressed content of the index at path, as rel signs it. The
// uncompressed form is kept in the cache by its signed digest: reading it back costs a hash, where
// decompressing the index costs seconds.
func signedIndex(ctx context.Context, o OpenOptions, src Source, rel *Release, path string) ([]byte, error) {
	comp := ""
	for _, ext := range []string{".xz", ".gz", ".zst"} {
		if strings.HasSuffix(path, ext) {
			comp = ext
		}
	}
	plain, hasPlain := rel.Files[strings.TrimSuffix(path, comp)]
	if hasPlain {
		if data, err := o.Cache.ReadBlob(plain.SHA256); err == nil {
			return data, nil
		}
	}
	fi := rel.Files[path]
	var file string
	var err error
	if o.Offline {
		if file, err = o.Cache.Path(fi.SHA256); err != nil {
			return nil, fmt.Errorf("offline: index %s of suite %s (sha256 %s) is not cached: run once without --offline", path, src.Suite, fi.SHA256)
		}
	} else {
		// By hash first: the mirror keeps superseded indices there for a while, by path it has
		// only the newest.
		dir, _, _ := strings.Cut(path, "/Packages")
		byHash := src.URI + "/dists/" + src.Suite + "/" + dir + "/by-hash/SHA256/" + fi.SHA256
		file, err = o.Fetcher.Fetch(ctx, o.Cache, byHash, fi.SHA256, src.Suite+" "+path, fi.Size)
		if err != nil {
			file, err = o.Fetcher.Fetch(ctx, o.Cache, src.URI+"/dists/"+src.Suite+"/"+path, fi.SHA256, src.Suite+" "+path, fi.Size)
		}
		if err != nil {
			return nil, fmt.Errorf("fetch index %s of suite %s: %w", path, src.Suite, err)
		}
	}
	data, err := readMaybeCompressed(file, comp)
	if err != nil {
		return nil, fmt.Errorf("index %s of suite %s: %w", path, src.Suite, err)
	}
	if hasPlain {
		if s := sha256.Sum256(data); hex.EncodeToString(s[:]) != plain.SHA256 {
			sum := hex.EncodeToString(s[:])
			return nil, fmt.Errorf("index %s of suite %s decompresses to sha256 %s, its InRelease says %s", path, src.Suite, sum, plain.SHA256)
		}
		if _, err := o.Cache.PutBytes(data); err != nil {
			o.Logger.Warn("could not cache the uncompressed index", "err", err)
		}
	}
	return data, nil
}

// FindPackages returns the stanzas of a Packages index whose Package is one of names, without
// parsing the others (a release's index has 60k stanzas; a lock needs a few dozen).
func FindPackages(data []byte, names map[string]bool) ([]Package, error) {
	var out []Package
	for len(data) > 0 {
		stanza := data
		if i := bytes.Index(data, []byte("\n\n")); i >= 0 {
			stanza, data = data[:i+1], data[i+2:]
		} else {
			data = nil
		}
		// Debian writes Package first; a stanza that names another package there and has no
		// second Package field is skipped unparsed.
		if rest, ok := bytes.CutPrefix(stanza, []byte("Package: ")); ok {
			name, tail, _ := bytes.Cut(rest, []byte("\n"))
			if !names[string(bytes.TrimSpace(name))] && !bytes.Contains(tail, []byte("Package:")) {
				continue
			}
		}
		pkgs, err := ParsePackages(stanza)
		if err != nil {
			return nil, err
		}
		for _, p := range pkgs {
			if names[p.Name] {
				out = append(out, p)
			}
		}
	}
	return out, nil
}
