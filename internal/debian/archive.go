package debian

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/ukernel-dev/ukernel/internal/cache"
)

// Arch is the one architecture guests run.
const Arch = "amd64"

// Component is the archive area read; ukernel images use main only.
const Component = "main"

// Suite is one opened suite: its source, verified Release and the index it read.
type Suite struct {
	Source  Source
	Release *Release
	// IndexPath and IndexSHA256 identify the Packages index used (compressed form).
	IndexPath   string
	IndexSHA256 string
}

// Archive is the merged package view of a release's suites.
type Archive struct {
	Suites   []*Suite
	Packages []Package
}

// OpenOptions configure Open.
type OpenOptions struct {
	Sources []Source
	Cache   *cache.Cache
	Fetcher *cache.Fetcher
	Keyring string // default DefaultKeyring
	// Offline uses the InRelease files last fetched into the cache and never the network.
	Offline bool
	Now     time.Time // for Valid-Until; default time.Now()
	Logger  *slog.Logger
}

// Open fetches and verifies every suite's InRelease and Packages index (or takes them from the
// cache) and parses them. Parsed indices are cached keyed by the index's SHA-256.
func Open(ctx context.Context, o OpenOptions) (*Archive, error) {
	if o.Keyring == "" {
		o.Keyring = DefaultKeyring
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Archive{}
	for _, src := range o.Sources {
		s, pkgs, err := openSuite(ctx, o, src, log)
		if err != nil {
			return nil, err
		}
		if s == nil {
			continue
		}
		a.Suites = append(a.Suites, s)
		a.Packages = append(a.Packages, pkgs...)
	}
	if len(a.Suites) == 0 {
		return nil, fmt.Errorf("no suite could be read from the configured mirror")
	}
	return a, nil
}

func stateKey(src Source) string {
	h := sha256.Sum256([]byte(src.URI + "\x00" + src.Suite))
	return "inrelease/" + hex.EncodeToString(h[:8]) + "-" + src.Suite
}

func openSuite(ctx context.Context, o OpenOptions, src Source, log *slog.Logger) (*Suite, []Package, error) {
	where := fmt.Sprintf("suite %s at %s (mirror from %s)", src.Suite, src.URI, src.From)
	var raw []byte
	var err error
	if o.Offline {
		raw, err = o.Cache.ReadState(stateKey(src))
		if err != nil {
			return nil, nil, fmt.Errorf("offline: no cached InRelease for %s: run once without --offline", where)
		}
	} else {
		raw, err = o.Fetcher.Get(ctx, src.URI+"/dists/"+src.Suite+"/InRelease")
		if err != nil {
			if errors.Is(err, cache.ErrNotOnServer) && src.Suite != codenameOf(src.Suite) {
				// An -updates or -security suite the mirror does not carry is not fatal.
				log.Warn("suite not on mirror, skipped", "suite", src.Suite, "uri", src.URI)
				return nil, nil, nil
			}
			return nil, nil, fmt.Errorf("fetch InRelease of %s: %w", where, err)
		}
	}
	rel, err := VerifyInRelease(raw, o.Keyring)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", where, err)
	}
	if err := rel.CheckFresh(o.Now); err != nil {
		if !o.Offline {
			return nil, nil, fmt.Errorf("%s: %w", where, err)
		}
		log.Warn("using an expired cached Release offline", "suite", src.Suite, "err", err)
	}
	if !o.Offline {
		if err := o.Cache.WriteState(stateKey(src), raw); err != nil {
			return nil, nil, err
		}
		keepSigner(o.Cache, rel, raw)
	}
	s := &Suite{Source: src, Release: rel}
	var comp string
	s.IndexPath, s.IndexSHA256, comp = packagesIndex(rel)
	if s.IndexPath == "" {
		return nil, nil, fmt.Errorf("%s: Release lists no %s/binary-%s/Packages index", where, Component, Arch)
	}
	pkgs, err := loadParsed(o.Cache, s.IndexSHA256)
	if err != nil {
		var path string
		if o.Offline {
			path, err = o.Cache.Path(s.IndexSHA256)
			if err != nil {
				return nil, nil, fmt.Errorf("offline: index %s of %s not cached: run once without --offline", s.IndexPath, where)
			}
		} else {
			path, err = o.Fetcher.Fetch(ctx, o.Cache, src.URI+"/dists/"+src.Suite+"/"+s.IndexPath, s.IndexSHA256, src.Suite+" "+s.IndexPath, rel.Files[s.IndexPath].Size)
			if err != nil {
				return nil, nil, fmt.Errorf("fetch index of %s: %w", where, err)
			}
		}
		data, err := readMaybeCompressed(path, comp)
		if err == nil {
			pkgs, err = ParsePackages(data)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s %s: %w", where, s.IndexPath, err)
		}
		// Kept for Prove, which reads the index by its signed digest and would otherwise
		// decompress it again.
		if plain, ok := rel.Files[strings.TrimSuffix(s.IndexPath, comp)]; ok && plain.Size == int64(len(data)) {
			if _, err := o.Cache.PutBytes(data); err != nil {
				log.Warn("could not cache the uncompressed index", "err", err)
			}
		}
		if err := storeParsed(o.Cache, s.IndexSHA256, pkgs); err != nil {
			log.Warn("could not cache parsed index", "err", err)
		}
	}
	for i := range pkgs {
		pkgs[i].Suite = rel.Codename
	}
	return s, pkgs, nil
}

func codenameOf(suite string) string {
	c, _, _ := bytes.Cut([]byte(suite), []byte("-"))
	return string(c)
}

func readMaybeCompressed(path, comp string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r io.Reader
	switch comp {
	case ".xz":
		r, err = xz.NewReader(bytes.NewReader(raw))
	case ".gz":
		r, err = gzip.NewReader(bytes.NewReader(raw))
	case ".zst":
		var d *zstd.Decoder
		d, err = zstd.NewReader(bytes.NewReader(raw))
		if err == nil {
			defer d.Close()
			r = d
		}
	default:
		return raw, nil
	}
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// parsedVersion changes whenever Package's fields change, invalidating cached parses.
const parsedVersion = "v2"

func parsedKey(sum string) string { return "parsed/" + parsedVersion + "-" + sum + ".gob" }

func loadParsed(c *cache.Cache, sum string) ([]Package, error) {
	// Sealed: an edited parse must not put another pin into a lock.
	data, err := c.ReadSealedState(parsedKey(sum))
	if err != nil {
		return nil, err
	}
	var pkgs []Package
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&pkgs); err != nil {
		return nil, err
	}
	return pkgs, nil
}

func storeParsed(c *cache.Cache, sum string, pkgs []Package) error {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(pkgs); err != nil {
		return err
	}
	return c.WriteSealedState(parsedKey(sum), buf.Bytes())
}
