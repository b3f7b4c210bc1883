package debian

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
)

// DefaultKeyring is the Debian archive keyring as installed by debian-archive-keyring.
const DefaultKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// Release is a verified InRelease file.
type Release struct {
	Origin     string
	Label      string
	Suite      string
	Codename   string
	Date       time.Time
	ValidUntil time.Time // zero when absent
	// Files maps a path below dists/<suite>/ to its SHA-256 and size.
	Files map[string]FileInfo
	Raw   []byte // the signed file as fetched
}

// FileInfo is one entry of a Release file's SHA256 list.
type FileInfo struct {
	SHA256 string
	Size   int64
}

// VerifyInRelease checks data's clearsigned OpenPGP signature against the keyring file and
// parses the signed content. An unsigned file or one signed by a key not in the keyring fails.
func VerifyInRelease(data []byte, keyringPath string) (*Release, error) {
	block, _ := clearsign.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("InRelease is not a clearsigned OpenPGP message")
	}
	f, err := os.Open(keyringPath)
	if err != nil {
		return nil, fmt.Errorf("archive keyring: %w (install debian-archive-keyring)", err)
	}
	defer f.Close()
	keyring, err := openpgp.ReadKeyRing(f)
	if err != nil {
		return nil, fmt.Errorf("archive keyring %s: %w", keyringPath, err)
	}
	if _, err := block.VerifySignature(keyring, nil); err != nil {
		return nil, fmt.Errorf("InRelease signature does not verify against %s: %w", keyringPath, err)
	}
	r, err := ParseRelease(block.Plaintext)
	if err != nil {
		return nil, err
	}
	r.Raw = data
	return r, nil
}

// ParseRelease parses the content of a Release file.
func ParseRelease(text []byte) (*Release, error) {
	r := &Release{Files: map[string]FileInfo{}}
	inSHA := false
	for _, line := range strings.Split(string(bytes.ReplaceAll(text, []byte("\r\n"), []byte("\n"))), "\n") {
		if line == "" {
			continue
		}
		if line[0] == ' ' {
			if inSHA {
				f := strings.Fields(line)
				if len(f) != 3 {
					return nil, fmt.Errorf("Release: bad SHA256 line %q", line)
				}
				n, err := strconv.ParseInt(f[1], 10, 64)
				if err != nil {
					return nil, fmt.Errorf("Release: bad size in %q", line)
				}
				r.Files[f[2]] = FileInfo{SHA256: f[0], Size: n}
			}
			continue
		}
		key, val, _ := strings.Cut(line, ":")
		val = strings.TrimSpace(val)
		inSHA = key == "SHA256"
		var err error
		switch key {
		case "Origin":
			r.Origin = val
		case "Label":
			r.Label = val
		case "Suite":
			r.Suite = val
		case "Codename":
			r.Codename = val
		case "Date":
			r.Date, err = parseReleaseTime(val)
		case "Valid-Until":
			r.ValidUntil, err = parseReleaseTime(val)
		}
		if err != nil {
			return nil, fmt.Errorf("Release %s: %w", key, err)
		}
	}
	if r.Codename == "" || len(r.Files) == 0 {
		return nil, fmt.Errorf("Release file has no Codename or no SHA256 list")
	}
	return r, nil
}

func parseReleaseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC1123Z, time.RFC1123, "Mon, 2 Jan 2006 15:04:05 MST", "Mon, 2 Jan 2006 15:04:05 -0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("unparsable date %q", s)
}

// CheckFresh fails when the Release's Valid-Until has passed (a replayed, stale index).
func (r *Release) CheckFresh(now time.Time) error {
	if !r.ValidUntil.IsZero() && now.After(r.ValidUntil) {
		return fmt.Errorf("Release of %s expired at %s (Valid-Until)", r.Codename, r.ValidUntil.Format(time.RFC3339))
	}
	return nil
}
