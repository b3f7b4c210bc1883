// Package lock produces and reads env/ukernel.lock: the exact, hashed closure of an
// environment request (Debian packages, the guest kernel, Python wheels), and fetches the
// locked artefacts into the cache.
package lock

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/pypi"
)

// FormatVersion is the lock file format version.
const FormatVersion = 1

// Lock is env/ukernel.lock.
type Lock struct {
	Version  int       `json:"version"`
	Base     string    `json:"base"`
	Request  Request   `json:"request"`
	Archives []Archive `json:"archives"`
	Packages []Package `json:"packages"`
	Kernel   *Package  `json:"kernel"`
	// Tools is ToolsPackage: the static shell and tools of development images, for exec and
	// shell (not put in --release images). A lock written before it has none.
	Tools  *Package     `json:"tools,omitempty"`
	Python []pypi.Wheel `json:"python"`
	Digest string       `json:"digest"`
}

// Request echoes env/ukernel.env, so a changed request is seen without resolving.
type Request struct {
	Base   string   `json:"base"`
	Kernel string   `json:"kernel"`
	System []string `json:"system"`
	Python []string `json:"python"`
}

// Archive identifies one suite's index the closure came from, never by URL.
type Archive struct {
	Origin      string `json:"origin"`
	Suite       string `json:"suite"`
	Codename    string `json:"codename"`
	Date        string `json:"date"`
	Index       string `json:"index"`
	IndexSHA256 string `json:"index_sha256"`
}

// Package is one pinned Debian package.
type Package struct {
	Name         string `json:"name"`
	Version      string `json:"version"`
	Architecture string `json:"architecture"`
	Filename     string `json:"filename"` // path in the archive's pool
	Size         int64  `json:"size"`
	SHA256       string `json:"sha256"`
	Suite        string `json:"suite"` // codename of the suite that listed it (bookworm-security)
}

// ToolsPackage is the Debian package of the development image's tools: one static busybox.
const ToolsPackage = "busybox-static"

// ErrNoLock means the project has no lock file yet.
var ErrNoLock = errors.New("no lock file")

func requestOf(e *project.Env) Request {
	r := Request{Base: e.Base, Kernel: e.Kernel, System: slices.Clone(e.System), Python: slices.Clone(e.Python)}
	if r.System == nil {
		r.System = []string{}
	}
	if r.Python == nil {
		r.Python = []string{}
	}
	slices.Sort(r.System)
	slices.Sort(r.Python)
	return r
}

func (r Request) equal(o Request) bool {
	return r.Base == o.Base && r.Kernel == o.Kernel && slices.Equal(r.System, o.System) && slices.Equal(r.Python, o.Python)
}

// Stale lists how env differs from the request l was locked for ("system: + curl"); nothing
// when the lock is up to date with it.
func (l *Lock) Stale(env *project.Env) []string {
	want := requestOf(env)
	var out []string
	if l.Request.Base != want.Base {
		out = append(out, fmt.Sprintf("base: %s, locked %s", want.Base, l.Request.Base))
	}
	if l.Request.Kernel != want.Kernel {
		out = append(out, fmt.Sprintf("kernel: %s, locked %s", want.Kernel, l.Request.Kernel))
	}
	for _, list := range []struct {
		key      string
		got, was []string
	}{{"system", want.System, l.Request.System}, {"python", want.Python, l.Request.Python}} {
		for _, s := range list.got {
			if !slices.Contains(list.was, s) {
				out = append(out, list.key+": + "+s)
			}
		}
		for _, s := range list.was {
			if !slices.Contains(list.got, s) {
				out = append(out, list.key+": - "+s)
			}
		}
	}
	return out
}

func (l *Lock) normalise() {
	slices.SortFunc(l.Packages, func(a, b Package) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(l.Archives, func(a, b Archive) int { return cmp.Compare(a.Codename, b.Codename) })
	slices.SortFunc(l.Python, func(a, b pypi.Wheel) int { return cmp.Compare(a.Name, b.Name) })
	if l.Packages == nil {
		l.Packages = []Package{}
	}
	if l.Python == nil {
		l.Python = []pypi.Wheel{}
	}
	if l.Archives == nil {
		l.Archives = []Archive{}
	}
}

func (l *Lock) contentDigest() (string, error) {
	c := *l
	c.Digest = ""
	data, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(s[:]), nil
}

// Marshal returns the canonical file content: sorted, indented, digest set, trailing newline.
func (l *Lock) Marshal() ([]byte, error) {
	l.normalise()
	d, err := l.contentDigest()
	if err != nil {
		return nil, err
	}
	l.Digest = d
	data, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// Save writes dir/env/ukernel.lock atomically.
func (l *Lock) Save(dir string) error {
	data, err := l.Marshal()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, project.LockFile), data, 0o644)
}

// Load reads and verifies dir/env/ukernel.lock. A missing file is ErrNoLock.
func Load(dir string) (*Lock, error) {
	data, err := os.ReadFile(filepath.Join(dir, project.LockFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w: run ukernel env lock", project.LockFile, ErrNoLock)
	}
	if err != nil {
		return nil, err
	}
	return Parse(data)
}

// recoverHint says what to do with a damaged lock: its pins cannot be trusted, so only restoring
// it or an explicit re-resolution (which drops every pin) fixes it.
const recoverHint = "restore it (e.g. from version control, resolving any merge conflict), or run ukernel env upgrade to re-resolve it from scratch"

// Parse decodes lock content and verifies its digest.
func Parse(data []byte) (*Lock, error) {
	var l Lock
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("%s: not a valid lock file: %v; %s", project.LockFile, err, recoverHint)
	}
	// What follows the object (a second lock pasted by a merge) would otherwise go unread.
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s: not a valid lock file: content after the lock's closing brace (offset %d); %s", project.LockFile, dec.InputOffset(), recoverHint)
	}
	if l.Version != FormatVersion {
		return nil, fmt.Errorf("%s: format version %d, this ukernel reads %d; use the ukernel that wrote it, or run ukernel env upgrade to re-resolve it from scratch", project.LockFile, l.Version, FormatVersion)
	}
	want, err := l.contentDigest()
	if err != nil {
		return nil, err
	}
	if l.Digest != want {
		return nil, fmt.Errorf("%s: digest mismatch (file says %s, content is %s): it was edited or damaged; %s", project.LockFile, l.Digest, want, recoverHint)
	}
	// The digest says the lock is whole, not that it came from a resolution: a lock from
	// elsewhere (a clone, a merge) is outside input.
	for _, w := range l.Python {
		if err := w.Check(); err != nil {
			return nil, fmt.Errorf("%s: %v; %s", project.LockFile, err, recoverHint)
		}
	}
	return &l, nil
}

// Size is the total download size of the locked Debian packages (kernel included).
func (l *Lock) Size() int64 {
	var n int64
	for _, p := range l.Packages {
		n += p.Size
	}
	for _, p := range []*Package{l.Kernel, l.Tools} {
		if p != nil {
			n += p.Size
		}
	}
	return n
}
