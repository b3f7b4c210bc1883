// Package diff compares two ukernel images or two lock files: packages added, removed and
// changed, files added, removed and changed with sizes, and the ABI, adapter, kernel and size
// differences.
package diff

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/image"
	"github.com/ukernel-dev/ukernel/internal/lock"
)

// Kinds of input.
const (
	KindImage = "image"
	KindLock  = "lock"
)

// Change is one field that differs, e.g. the kernel version.
type Change struct {
	What string `json:"what"`
	A    string `json:"a"`
	B    string `json:"b"`
}

// Package is a package present on one side or both.
type Package struct {
	Name string `json:"name"`
	A    string `json:"a,omitempty"` // version in A, "" when added
	B    string `json:"b,omitempty"` // version in B, "" when removed
}

// File is a file of the root filesystem present on one side or both.
type File struct {
	Path  string `json:"path"`
	SizeA int64  `json:"size_a"` // -1: absent
	SizeB int64  `json:"size_b"`
}

// SizeDelta is a size on both sides.
type SizeDelta struct {
	What string `json:"what"`
	A    int64  `json:"a"`
	B    int64  `json:"b"`
}

// Report is the comparison of A and B.
type Report struct {
	Kind      string      `json:"kind"`
	A         string      `json:"a"`
	B         string      `json:"b"`
	Identical bool        `json:"identical"`
	Changes   []Change    `json:"changes,omitempty"`
	Added     []Package   `json:"packages_added,omitempty"`
	Removed   []Package   `json:"packages_removed,omitempty"`
	Updated   []Package   `json:"packages_changed,omitempty"`
	Files     []File      `json:"files,omitempty"`
	Sizes     []SizeDelta `json:"sizes,omitempty"`
	// Notes say what could not be compared.
	Notes []string `json:"notes,omitempty"`
}

// Differs reports whether anything differs.
func (r *Report) Differs() bool { return !r.Identical }

// Compare compares the files a and b, which must both be images or both be locks.
func Compare(ctx context.Context, a, b string) (*Report, error) {
	ka, err := kindOf(a)
	if err != nil {
		return nil, err
	}
	kb, err := kindOf(b)
	if err != nil {
		return nil, err
	}
	if ka != kb {
		return nil, fmt.Errorf("cannot compare %s (%s) with %s (%s): give two images or two locks", a, ka, b, kb)
	}
	if ka == KindLock {
		return compareLocks(a, b)
	}
	return compareImages(ctx, a, b)
}

// kindOf tells an image from a lock by content, whatever the file is called.
func kindOf(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.IsDir() {
		return "", fmt.Errorf("%s is a directory; expected a ukernel image (dist/NAME.img) or a lock file (env/ukernel.lock)", path)
	}
	im, ierr := image.Open(path)
	if ierr == nil {
		im.Close()
		return KindImage, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	_, lerr := lock.Parse(data)
	if lerr == nil {
		return KindLock, nil
	}
	why := "not JSON"
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		why = lerr.Error()
	}
	return "", fmt.Errorf("%s is neither a ukernel image (%v) nor a lock file (%s); expected dist/NAME.img or env/ukernel.lock", path, ierr, why)
}

func compareLocks(a, b string) (*Report, error) {
	la, err := readLock(a)
	if err != nil {
		return nil, err
	}
	lb, err := readLock(b)
	if err != nil {
		return nil, err
	}
	r := &Report{Kind: KindLock, A: a, B: b}
	r.change("base", la.Base, lb.Base)
	r.change("kernel", pkgString(la.Kernel), pkgString(lb.Kernel))
	r.change("request (system)", strings.Join(la.Request.System, " "), strings.Join(lb.Request.System, " "))
	r.change("request (python)", strings.Join(la.Request.Python, " "), strings.Join(lb.Request.Python, " "))
	r.packages(lockClosure(la), lockClosure(lb))
	r.size("download size (debs, kernel included)", la.Size(), lb.Size())
	r.Identical = la.Digest == lb.Digest && len(r.Changes) == 0 && len(r.Added)+len(r.Removed)+len(r.Updated) == 0
	return r, nil
}

func readLock(path string) (*lock.Lock, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	l, err := lock.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

func pkgString(p *lock.Package) string {
	if p == nil {
		return ""
	}
	return p.Name + " " + p.Version
}

// lockClosure is the lock's packages in the manifest's "name=version" form.
func lockClosure(l *lock.Lock) []string {
	var c []string
	for _, p := range l.Packages {
		c = append(c, p.Name+"="+p.Version)
	}
	for _, w := range l.Python {
		c = append(c, "pypi:"+w.Name+"="+w.Version)
	}
	return c
}

func (r *Report) change(what, a, b string) {
	if a != b {
		r.Changes = append(r.Changes, Change{What: what, A: a, B: b})
	}
}

func (r *Report) size(what string, a, b int64) {
	r.Sizes = append(r.Sizes, SizeDelta{What: what, A: a, B: b})
}

// packages fills Added, Removed and Updated from two "name=version" lists.
func (r *Report) packages(a, b []string) {
	split := func(list []string) map[string]string {
		m := map[string]string{}
		for _, s := range list {
			n, v, _ := strings.Cut(s, "=")
			m[n] = v
		}
		return m
	}
	ma, mb := split(a), split(b)
	for n, va := range ma {
		vb, ok := mb[n]
		switch {
		case !ok:
			r.Removed = append(r.Removed, Package{Name: n, A: va})
		case va != vb:
			r.Updated = append(r.Updated, Package{Name: n, A: va, B: vb})
		}
	}
	for n, vb := range mb {
		if _, ok := ma[n]; !ok {
			r.Added = append(r.Added, Package{Name: n, B: vb})
		}
	}
	for _, l := range [][]Package{r.Added, r.Removed, r.Updated} {
		slices.SortFunc(l, func(x, y Package) int { return strings.Compare(x.Name, y.Name) })
	}
}

func compareImages(ctx context.Context, a, b string) (*Report, error) {
	ia, err := image.Open(a)
	if err != nil {
		return nil, err
	}
	defer ia.Close()
	ib, err := image.Open(b)
	if err != nil {
		return nil, err
	}
	defer ib.Close()
	r := &Report{Kind: KindImage, A: a, B: b}
	sa, err := ia.SHA256()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", a, err)
	}
	sb, err := ib.SHA256()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b, err)
	}
	ma, mb := ia.Manifest(), ib.Manifest()
	if sa == sb {
		r.Identical = true
		r.size("image", ia.Size(), ib.Size())
		return r, nil
	}
	compareManifests(r, ma, mb)
	r.size("image", ia.Size(), ib.Size())
	r.size("root filesystem", ma.Root.Size, mb.Root.Size)
	arts := map[string][2]int64{}
	var names []string
	for i, m := range []abi.Manifest{ma, mb} {
		for _, art := range m.Artefacts {
			v, ok := arts[art.Name]
			if !ok {
				v = [2]int64{-1, -1}
				names = append(names, art.Name)
			}
			v[i] = art.Size
			arts[art.Name] = v
		}
	}
	for _, n := range names {
		if v := arts[n]; v[0] != v[1] {
			r.size(n, v[0], v[1])
		}
	}
	if ma.Lock.Closure != nil && mb.Lock.Closure != nil {
		r.packages(ma.Lock.Closure, mb.Lock.Closure)
	} else if ma.Lock.Digest != mb.Lock.Digest {
		r.Notes = append(r.Notes, "package lists unavailable: an image predates the manifest's lock closure; compare the two env/ukernel.lock files instead")
	}
	files, err := compareRoots(ctx, ia, ib)
	if err != nil {
		if !errors.Is(err, image.ErrNoExtractor) {
			return nil, err
		}
		r.Notes = append(r.Notes, "files not compared: "+err.Error())
	}
	r.Files = files
	return r, nil
}

func compareManifests(r *Report, a, b abi.Manifest) {
	r.change("ABI", a.ABI, b.ABI)
	r.change("name", a.Name, b.Name)
	r.change("adapter", a.Adapter.Name+" "+a.Adapter.Runtime, b.Adapter.Name+" "+b.Adapter.Runtime)
	r.change("kernel", a.Kernel.Package+" "+a.Kernel.Version, b.Kernel.Package+" "+b.Kernel.Version)
	r.change("kernel command line", a.Kernel.Cmdline, b.Kernel.Cmdline)
	r.change("entry", strings.Join(a.Entry, " "), strings.Join(b.Entry, " "))
	r.change("lock digest", a.Lock.Digest, b.Lock.Digest)
	r.change("packages", fmt.Sprint(a.Lock.Packages), fmt.Sprint(b.Lock.Packages))
	r.change("root filesystem digest", a.Root.SHA256, b.Root.SHA256)
	r.change("ukernel", a.Build.Ukernel, b.Build.Ukernel)
	r.change("go", a.Build.Go, b.Build.Go)
}
