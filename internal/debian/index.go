package debian

import (
	"bytes"
	"fmt"
	"strconv"
)

// Package is one stanza of a Packages index, reduced to the fields the resolver and the lock need.
type Package struct {
	Name         string
	Version      string
	Architecture string
	MultiArch    string
	Depends      string
	PreDepends   string
	Provides     string
	Filename     string
	Size         int64
	SHA256       string
	Source       string
	Section      string
	Priority     string
	Suite        string // the suite whose index listed it (set by the archive client)
}

// ParsePackages parses an uncompressed Packages index. It is a purpose-built scanner: the
// generic control-file parsers are several times slower on the 60k stanzas of a release.
func ParsePackages(data []byte) ([]Package, error) {
	pkgs := make([]Package, 0, bytes.Count(data, []byte("\nPackage: "))+1)
	var cur Package
	var field *string
	have := false
	line := 0
	flush := func() error {
		if !have {
			return nil
		}
		if cur.Name == "" || cur.Version == "" {
			return fmt.Errorf("line %d: stanza without Package or Version", line)
		}
		pkgs = append(pkgs, cur)
		cur, have, field = Package{}, false, nil
		return nil
	}
	for len(data) > 0 {
		line++
		var l []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i], data[i+1:]
		} else {
			l, data = data, nil
		}
		if len(l) == 0 {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		if l[0] == ' ' || l[0] == '\t' {
			// Continuation: relation fields may wrap; long descriptions are not kept.
			if field != nil {
				*field += " " + string(bytes.TrimSpace(l))
			}
			continue
		}
		have = true
		colon := bytes.IndexByte(l, ':')
		if colon < 0 {
			return nil, fmt.Errorf("line %d: %q is not a field", line, l)
		}
		key, val := l[:colon], bytes.TrimSpace(l[colon+1:])
		field = nil
		switch string(key) {
		case "Package":
			cur.Name = string(val)
		case "Version":
			cur.Version = string(val)
		case "Architecture":
			cur.Architecture = string(val)
		case "Multi-Arch":
			cur.MultiArch = string(val)
		case "Depends":
			cur.Depends = string(val)
			field = &cur.Depends
		case "Pre-Depends":
			cur.PreDepends = string(val)
			field = &cur.PreDepends
		case "Provides":
			cur.Provides = string(val)
			field = &cur.Provides
		case "Filename":
			cur.Filename = string(val)
		case "Size":
			n, err := strconv.ParseInt(string(val), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: Size %q: %w", line, val, err)
			}
			cur.Size = n
		case "SHA256":
			cur.SHA256 = string(val)
		case "Source":
			cur.Source = string(val)
		case "Priority":
			cur.Priority = string(val)
		case "Section":
			cur.Section = string(val)
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return pkgs, nil
}
