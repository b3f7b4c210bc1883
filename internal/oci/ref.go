package oci

import (
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/registry"
)

// Kind is where a reference points.
type Kind int

const (
	KindRegistry Kind = iota // host[:port]/repo[:tag|@digest]
	KindLayout               // oci-layout:DIR[:tag|@digest]
	KindArchive              // oci-archive:FILE.tar[:tag|@digest]
)

// Ref is a parsed reference.
type Ref struct {
	Kind Kind
	Path string // DIR or FILE (layout, archive)
	Reg  registry.Reference
	// Reference is the tag or digest ("latest" when none was given).
	Reference string
}

const (
	layoutPrefix  = "oci-layout:"
	archivePrefix = "oci-archive:"
	defaultTag    = "latest"
)

// ParseRef parses a reference as the user typed it.
func ParseRef(s string) (Ref, error) {
	for prefix, kind := range map[string]Kind{layoutPrefix: KindLayout, archivePrefix: KindArchive} {
		rest, ok := strings.CutPrefix(s, prefix)
		if !ok {
			continue
		}
		r := Ref{Kind: kind, Path: rest, Reference: defaultTag}
		if p, d, ok := strings.Cut(rest, "@"); ok {
			r.Path, r.Reference = p, d
			if _, err := digest.Parse(d); err != nil {
				return Ref{}, fmt.Errorf("reference %q: %q is not a digest (sha256:<64 hex>)", s, d)
			}
		} else if i := strings.LastIndexByte(rest, ':'); i > strings.LastIndexByte(rest, '/') {
			r.Path, r.Reference = rest[:i], rest[i+1:]
		}
		if r.Path == "" || r.Reference == "" {
			return Ref{}, fmt.Errorf("reference %q: expected %sPATH[:TAG|@DIGEST]", s, prefix)
		}
		return r, nil
	}
	reg, err := registry.ParseReference(s)
	if err == nil && (reg.Registry == "." || reg.Registry == "..") {
		// oras takes ./x.img for host "." and repository x.img: it is a path.
		err = fmt.Errorf("%s is a path, not a registry host", reg.Registry+"/")
	}
	if err != nil {
		return Ref{}, fmt.Errorf("reference %q: expected host[:port]/repository[:tag|@sha256:...], %s or %s: %w", s, layoutPrefix+"DIR", archivePrefix+"FILE.tar", err)
	}
	r := Ref{Kind: KindRegistry, Reg: reg, Reference: reg.Reference}
	if r.Reference == "" {
		r.Reference = defaultTag
		r.Reg.Reference = defaultTag
	}
	return r, nil
}

// Name is the reference without tag or digest: what the trust policy matches.
func (r Ref) Name() string {
	switch r.Kind {
	case KindLayout:
		return layoutPrefix + r.Path
	case KindArchive:
		return archivePrefix + r.Path
	}
	return r.Reg.Registry + "/" + r.Reg.Repository
}

// IsDigest reports whether the reference names a digest rather than a tag.
func (r Ref) IsDigest() bool { return strings.Contains(r.Reference, ":") }

// String is the reference as it would be typed.
func (r Ref) String() string {
	sep := ":"
	if r.IsDigest() {
		sep = "@"
	}
	return r.Name() + sep + r.Reference
}

// WithDigest returns the reference by digest d.
func (r Ref) WithDigest(d digest.Digest) Ref {
	r.Reference = d.String()
	r.Reg.Reference = d.String()
	return r
}
