// Package debian reads Debian archives: signed Release files, Packages indices, version and
// relation rules, a dependency resolver that mirrors apt's choices, and safe .deb extraction.
package debian

import (
	"fmt"
	"strings"

	"pault.ag/go/debian/version"
)

// CompareVersions orders two Debian version strings (dpkg rules). Unparsable versions compare as
// plain strings, which never happens with archive data.
func CompareVersions(a, b string) int {
	if a == b {
		return 0
	}
	va, errA := version.Parse(a)
	vb, errB := version.Parse(b)
	if errA != nil || errB != nil {
		return strings.Compare(a, b)
	}
	switch c := version.Compare(va, vb); {
	case c < 0:
		return -1
	case c > 0:
		return 1
	}
	return 0
}

// Constraint is a version restriction such as ">= 1.2".
type Constraint struct {
	Op      string // <<, <=, =, >=, >>; "" for none
	Version string
}

// Satisfied reports whether v meets the constraint.
func (c Constraint) Satisfied(v string) bool {
	if c.Op == "" {
		return true
	}
	r := CompareVersions(v, c.Version)
	switch c.Op {
	case "<<":
		return r < 0
	case "<=":
		return r <= 0
	case "=":
		return r == 0
	case ">=":
		return r >= 0
	case ">>":
		return r > 0
	}
	return false
}

func (c Constraint) String() string {
	if c.Op == "" {
		return ""
	}
	return fmt.Sprintf(" (%s %s)", c.Op, c.Version)
}

// Atom is one alternative of a relation: a package name, an optional architecture qualifier and
// an optional version constraint.
type Atom struct {
	Name       string
	Arch       string // "", "any", "native" or an architecture
	Constraint Constraint
}

func (a Atom) String() string {
	s := a.Name
	if a.Arch != "" {
		s += ":" + a.Arch
	}
	return s + a.Constraint.String()
}

// Group is a relation with its alternatives ("a | b").
type Group []Atom

func (g Group) String() string {
	parts := make([]string, len(g))
	for i, a := range g {
		parts[i] = a.String()
	}
	return strings.Join(parts, " | ")
}

// ParseRelations parses a Depends-style field of a binary package.
func ParseRelations(field string) ([]Group, error) {
	field = strings.TrimSpace(field)
	if field == "" {
		return nil, nil
	}
	var groups []Group
	for _, g := range strings.Split(field, ",") {
		g = strings.TrimSpace(g)
		if g == "" {
			continue
		}
		var group Group
		for _, alt := range strings.Split(g, "|") {
			a, err := ParseAtom(alt)
			if err != nil {
				return nil, fmt.Errorf("relation %q: %w", g, err)
			}
			group = append(group, a)
		}
		groups = append(groups, group)
	}
	return groups, nil
}

const versionChars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.+~:-"

// ParseAtom parses "name[:arch] [(op version)]".
func ParseAtom(s string) (Atom, error) {
	s = strings.TrimSpace(s)
	var a Atom
	name := s
	if i := strings.IndexAny(s, " (["); i >= 0 {
		name = strings.TrimSpace(s[:i]) // "a\t(>= 1)", "a [amd64]"
		rest := strings.TrimSpace(s[i:])
		if strings.HasPrefix(rest, "(") {
			end := strings.IndexByte(rest, ')')
			if end < 0 {
				return a, fmt.Errorf("unterminated version in %q", s)
			}
			inner := strings.TrimSpace(rest[1:end])
			op := strings.TrimRight(inner[:len(inner)-len(strings.TrimLeft(inner, "<=>"))], " ")
			ver := strings.TrimSpace(inner[len(op):])
			switch op {
			case "<", "<=", "=", ">=", ">", "<<", ">>":
			default:
				return a, fmt.Errorf("bad operator %q in %q", op, s)
			}
			// "<" and ">" are obsolete spellings of "<=" and ">=".
			if op == "<" {
				op = "<="
			} else if op == ">" {
				op = ">="
			}
			if ver == "" || strings.Trim(ver, versionChars) != "" {
				return a, fmt.Errorf("bad or missing version in %q", s)
			}
			a.Constraint = Constraint{Op: op, Version: ver}
		}
	}
	if n, arch, ok := strings.Cut(name, ":"); ok {
		if arch == "" {
			return a, fmt.Errorf("empty architecture qualifier in %q", s)
		}
		name, a.Arch = strings.TrimSpace(n), arch
	}
	if name == "" {
		return a, fmt.Errorf("empty package name in %q", s)
	}
	a.Name = name
	return a, nil
}
