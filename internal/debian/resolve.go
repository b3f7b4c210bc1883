package debian

import (
	"errors"
	"fmt"
	"iter"
	"maps"
	"sort"
	"strings"
)

// LayoutProvided are packages the image layout stands in for (the root filesystem is built
// merged-/usr), so dependencies on them count as satisfied and they are never installed.
var LayoutProvided = map[string]bool{"usr-is-merged": true, "usrmerge": true}

type provider struct {
	pkg     *Package
	version string // provided version, "" when unversioned
}

// Resolver computes dependency closures over one merged set of indices.
type Resolver struct {
	byName    map[string][]*Package // versions of a name, newest first
	providers map[string][]provider
	// Prefer pins names to versions (the current lock) while those versions are available.
	Prefer map[string]string
}

// NewResolver indexes the packages of Arch and "all".
func NewResolver(pkgs []Package) *Resolver {
	r := &Resolver{byName: map[string][]*Package{}, providers: map[string][]provider{}}
	for i := range pkgs {
		p := &pkgs[i]
		if p.Architecture != Arch && p.Architecture != "all" {
			continue
		}
		r.byName[p.Name] = append(r.byName[p.Name], p)
	}
	for _, vs := range r.byName {
		sort.SliceStable(vs, func(i, j int) bool {
			if c := CompareVersions(vs[i].Version, vs[j].Version); c != 0 {
				return c > 0
			}
			return vs[i].Suite < vs[j].Suite
		})
	}
	return r
}

// Candidate returns the version apt would pick for name: the preferred (locked) version while
// available, else the highest; nil if the name has no real package.
func (r *Resolver) Candidate(name string) *Package {
	vs := r.byName[name]
	if len(vs) == 0 {
		return nil
	}
	if want, ok := r.Prefer[name]; ok {
		for _, p := range vs {
			if p.Version == want {
				return p
			}
		}
	}
	return vs[0]
}

// Versions lists the available versions of name, newest first.
func (r *Resolver) Versions(name string) []*Package { return r.byName[name] }

// providersOf returns the candidate versions that provide name, built lazily: parsing every
// Provides field up front would cost more than the whole resolution.
func (r *Resolver) providersOf(name string) []provider {
	if len(r.providers) == 0 {
		r.buildProviders()
	}
	return r.providers[name]
}

func (r *Resolver) buildProviders() {
	r.providers = map[string][]provider{"": nil}
	names := make([]string, 0, len(r.byName))
	for n := range r.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := r.Candidate(n)
		if p.Provides == "" {
			continue
		}
		groups, err := ParseRelations(p.Provides)
		if err != nil {
			continue
		}
		for _, g := range groups {
			for _, a := range g {
				r.providers[a.Name] = append(r.providers[a.Name], provider{pkg: p, version: a.Constraint.Version})
			}
		}
	}
}

// Request is one requested package: Name with an optional exact Version.
type Request struct {
	Name    string
	Version string
}

// ParseRequest parses "name" or "name=version".
func ParseRequest(s string) Request {
	n, v, _ := strings.Cut(s, "=")
	return Request{Name: n, Version: v}
}

// Resolve returns the closure of the requests, sorted by name. Like apt, it walks dependencies
// depth-first in the order they are declared, skips a group an already chosen package
// satisfies, and otherwise installs the first alternative that can be installed.
//
// A preferred (locked) version that fails a dependency's constraint yields to the newest version
// that meets it, and the closure is resolved again from the start with that preference: what the
// old version pulled in or provided must not linger. Requests with an explicit version never move.
func (r *Resolver) Resolve(reqs []Request) ([]*Package, error) {
	// Candidates, and so the providers index, follow Prefer: overrides go to a copy, and the
	// index is rebuilt for it and again once the caller's Prefer is back.
	saved, prefer := r.Prefer, r.Prefer
	own := false
	override := func(name, version string) {
		if !own {
			prefer, own = maps.Clone(saved), true
			if prefer == nil {
				prefer = map[string]string{}
			}
		}
		prefer[name] = version
		r.Prefer, r.providers = prefer, nil
	}
	defer func() {
		if own {
			r.Prefer, r.providers = saved, nil
		}
	}()
	pinned := map[string]bool{}
	for _, q := range reqs {
		if q.Version != "" {
			pinned[q.Name] = true
			override(q.Name, q.Version)
		}
	}
	for {
		out, err := r.resolveOnce(reqs, pinned)
		var moved *preferenceMoved
		if !errors.As(err, &moved) {
			return out, err
		}
		override(moved.name, moved.version)
	}
}

func (r *Resolver) resolveOnce(reqs []Request, pinned map[string]bool) ([]*Package, error) {
	st := &state{r: r, marked: map[string]*Package{}, pinned: pinned}
	for _, q := range reqs {
		p, err := r.lookupRequest(q)
		if err != nil {
			return nil, err
		}
		if err := st.mark(p, nil); err != nil {
			return nil, err
		}
	}
	out := make([]*Package, 0, len(st.marked))
	for _, p := range st.marked {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// preferenceMoved asks Resolve to start over preferring version of name.
type preferenceMoved struct{ name, version string }

func (e *preferenceMoved) Error() string {
	return fmt.Sprintf("internal: resolve again preferring %s %s", e.name, e.version)
}

func (r *Resolver) lookupRequest(q Request) (*Package, error) {
	vs := r.byName[q.Name]
	if len(vs) == 0 {
		if prov := r.providersOf(q.Name); len(prov) > 0 {
			return nil, fmt.Errorf("%s is a virtual package provided by %s: request one of them", q.Name, providerNames(prov))
		}
		return nil, &UnknownPackageError{Name: q.Name, Suggestions: r.Suggest(q.Name)}
	}
	if q.Version == "" {
		return r.Candidate(q.Name), nil
	}
	for _, p := range vs {
		if p.Version == q.Version {
			return p, nil
		}
	}
	avail := make([]string, len(vs))
	for i, p := range vs {
		avail[i] = p.Version + " (" + p.Suite + ")"
	}
	return nil, fmt.Errorf("%s has no version %s in the archive; available: %s", q.Name, q.Version, strings.Join(avail, ", "))
}

func providerNames(prov []provider) string {
	var names []string
	for _, p := range prov {
		names = append(names, p.pkg.Name)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// UnknownPackageError is a name the archive does not have.
type UnknownPackageError struct {
	Name        string
	Suggestions []string
	Provides    []string // hints from Debian's Provides: "zlib1g provides libz1"
}

func (e *UnknownPackageError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "no package %s in the archive", e.Name)
	if len(e.Provides) > 0 {
		fmt.Fprintf(&b, "; %s", strings.Join(e.Provides, ", "))
	}
	if len(e.Suggestions) > 0 {
		fmt.Fprintf(&b, "; similar names: %s", strings.Join(e.Suggestions, ", "))
	}
	return b.String()
}

type state struct {
	r      *Resolver
	marked map[string]*Package
	pinned map[string]bool // names requested with an explicit version
}

func (st *state) mark(p *Package, chain []string) error {
	if _, ok := st.marked[p.Name]; ok {
		return nil
	}
	st.marked[p.Name] = p
	chain = append(chain, p.Name+" "+p.Version)
	for _, field := range []string{p.PreDepends, p.Depends} {
		groups, err := ParseRelations(field)
		if err != nil {
			return fmt.Errorf("%s %s: %w", p.Name, p.Version, err)
		}
		for _, g := range groups {
			if st.satisfied(g) {
				continue
			}
			choice, err := st.choose(g)
			if err != nil {
				return err
			}
			if choice == nil {
				return fmt.Errorf("cannot satisfy %s: %s depends on %q, which no available package satisfies", chain[0], strings.Join(chain, " -> "), g.String())
			}
			if err := st.mark(choice, chain); err != nil {
				return err
			}
		}
	}
	return nil
}

func archOK(a Atom) bool {
	return a.Arch == "" || a.Arch == "any" || a.Arch == "native" || a.Arch == Arch
}

// satisfied: some alternative is met by a package already chosen (directly or via Provides).
func (st *state) satisfied(g Group) bool {
	for _, a := range g {
		if LayoutProvided[a.Name] {
			return true
		}
		if !archOK(a) {
			continue
		}
		if p, ok := st.marked[a.Name]; ok && a.Constraint.Satisfied(p.Version) {
			return true
		}
		for _, pr := range st.r.providersOf(a.Name) {
			if st.marked[pr.pkg.Name] == pr.pkg && providesSatisfies(pr, a) {
				return true
			}
		}
	}
	return false
}

func providesSatisfies(pr provider, a Atom) bool {
	if a.Constraint.Op == "" {
		return true
	}
	return pr.version != "" && a.Constraint.Satisfied(pr.version)
}

// choose picks the first alternative that can be installed: the real package's candidate if
// it meets the constraint, else a providing package (apt's order: required/important
// priority first, then name). A preferred candidate that is too old is a *preferenceMoved.
func (st *state) choose(g Group) (*Package, error) {
	for _, a := range g {
		if !archOK(a) {
			continue
		}
		if c := st.r.Candidate(a.Name); c != nil {
			if a.Constraint.Satisfied(c.Version) {
				if _, taken := st.marked[c.Name]; !taken {
					return c, nil
				}
			} else if v := st.newerSatisfying(c, a); v != nil {
				return nil, &preferenceMoved{name: v.Name, version: v.Version}
			}
		}
		var cands []*Package
		for _, pr := range st.r.providersOf(a.Name) {
			if providesSatisfies(pr, a) {
				cands = append(cands, pr.pkg)
			}
		}
		if len(cands) > 0 {
			sort.SliceStable(cands, func(i, j int) bool {
				pi, pj := priorityRank(cands[i].Priority), priorityRank(cands[j].Priority)
				if pi != pj {
					return pi < pj
				}
				return cands[i].Name < cands[j].Name
			})
			return cands[0], nil
		}
	}
	return nil, nil
}

// newerSatisfying returns the newest version of c's name that meets a's constraint when c is a
// preferred (locked) version that does not: the lock keeps versions, it must not block an upgrade
// a dependency needs. Preferences only move up, so resolving again terminates, and explicit
// pins never move.
func (st *state) newerSatisfying(c *Package, a Atom) *Package {
	if want, ok := st.r.Prefer[c.Name]; !ok || want != c.Version || st.pinned[c.Name] {
		return nil
	}
	for _, v := range st.r.byName[c.Name] {
		if a.Constraint.Satisfied(v.Version) {
			if CompareVersions(v.Version, c.Version) > 0 {
				return v
			}
			return nil
		}
	}
	return nil
}

func priorityRank(p string) int {
	switch p {
	case "required":
		return 0
	case "important":
		return 1
	case "standard":
		return 2
	case "optional":
		return 3
	}
	return 4
}

// Suggest returns up to 10 package names close to name: one or two typos away, the same stem, or
// containing it; the closest first.
func (r *Resolver) Suggest(name string) []string {
	type cand struct {
		name string
		rank int
	}
	var out []cand
	for n := range r.byName {
		switch {
		case len(name) >= 4 && abs(len(n)-len(name)) <= typos(name) && editDistance(n, name) <= typos(name):
			out = append(out, cand{n, editDistance(n, name)})
		case strings.HasPrefix(n, name) || (len(name) >= 3 && strings.Contains(n, name)):
			out = append(out, cand{n, 3})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.rank != b.rank {
			return a.rank < b.rank
		}
		if len(a.name) != len(b.name) {
			return len(a.name) < len(b.name)
		}
		return a.name < b.name
	})
	names := make([]string, 0, min(len(out), 10))
	for _, c := range out[:min(len(out), 10)] {
		names = append(names, c.name)
	}
	return names
}

func abs(x int) int { return max(x, -x) }

// typos is how many edits a name of this length may be off by and still be suggested.
func typos(name string) int {
	if len(name) <= 5 {
		return 1
	}
	return 2
}

// editDistance counts the insertions, deletions, substitutions and swaps of adjacent letters
// between two short ASCII names (optimal string alignment distance).
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// Choose maps what a user typed to one real package, by a rule with no guessing (names are
// case-folded first, as Debian's are lower case):
//
//  1. a package of that name (NAME or NAME=VERSION);
//  2. a virtual name (Provides) that exactly one package provides;
//  3. a library stem: "lib" NAME followed only by a soversion ("libssl" -> "libssl3",
//     "libsqlite3" -> "libsqlite3-0", "3t64" too), when exactly one package is named so.
//
// Anything else is refused: several providers or stems are listed as candidates, and an unknown
// name gets Debian's Provides as a hint ("libz": zlib1g provides libz1) and similar names.
func (r *Resolver) Choose(input string) (*Package, error) {
	q := ParseRequest(input)
	q.Name = strings.ToLower(q.Name)
	if _, ok := r.byName[q.Name]; ok {
		return r.lookupRequest(q)
	}
	if prov := r.providersOf(q.Name); len(prov) == 1 {
		if q.Version != "" {
			return nil, fmt.Errorf("%s is a virtual package provided by %s: give %s=VERSION instead", q.Name, prov[0].pkg.Name, prov[0].pkg.Name)
		}
		return prov[0].pkg, nil
	} else if len(prov) > 1 {
		return nil, &AmbiguousError{Name: q.Name, Why: "is a virtual package provided by several packages", Candidates: strings.Split(providerNames(prov), ", ")}
	}
	stems := libraryStems(q.Name, maps.Keys(r.byName))
	switch len(stems) {
	case 0:
	case 1:
		return r.lookupRequest(Request{Name: stems[0], Version: q.Version})
	default:
		return nil, &AmbiguousError{Name: q.Name, Why: "names several libraries", Candidates: stems}
	}
	e := &UnknownPackageError{Name: q.Name, Suggestions: r.Suggest(q.Name)}
	if len(r.providers) == 0 {
		r.buildProviders()
	}
	for _, v := range libraryStems(q.Name, maps.Keys(r.providers)) {
		for _, pr := range r.providers[v] {
			e.Provides = append(e.Provides, pr.pkg.Name+" provides "+v)
		}
	}
	sort.Strings(e.Provides)
	return nil, e
}

// libraryStems returns the names among names that are stem followed by a soversion, sorted.
func libraryStems(stem string, names iter.Seq[string]) []string {
	if len(stem) <= len("lib") || !strings.HasPrefix(stem, "lib") {
		return nil
	}
	var out []string
	for n := range names {
		if rest, ok := strings.CutPrefix(n, stem); ok && soversion(stem, rest) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// soversion: what Debian's library naming appends to a library's name, its soname version:
// digits and dots ("3", "1.1", "5.3"), preceded by "-" when the name ends in a digit
// ("libsqlite3-0"), with the "t64" of the 64-bit time_t transition ("3t64").
func soversion(stem, s string) bool {
	if last := stem[len(stem)-1]; last >= '0' && last <= '9' {
		var ok bool
		if s, ok = strings.CutPrefix(s, "-"); !ok {
			return false
		}
	}
	s = strings.TrimSuffix(s, "t64")
	return s != "" && s[0] >= '0' && s[0] <= '9' && strings.Trim(s, "0123456789.") == ""
}

// AmbiguousError is a name that could mean several packages.
type AmbiguousError struct {
	Name       string
	Why        string
	Candidates []string
}

func (e *AmbiguousError) Error() string {
	return fmt.Sprintf("%s %s: %s; add one of them by its name", e.Name, e.Why, strings.Join(e.Candidates, ", "))
}
