package debian

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"pault.ag/go/debian/version"
)

// stanza writes p back as a Packages stanza, one line per non-empty field.
func stanza(p Package) string {
	var b strings.Builder
	for _, f := range []struct{ k, v string }{
		{"Package", p.Name}, {"Version", p.Version}, {"Architecture", p.Architecture}, {"Multi-Arch", p.MultiArch},
		{"Depends", p.Depends}, {"Pre-Depends", p.PreDepends}, {"Provides", p.Provides}, {"Filename", p.Filename},
		{"SHA256", p.SHA256}, {"Source", p.Source}, {"Section", p.Section}, {"Priority", p.Priority},
	} {
		if f.v != "" {
			fmt.Fprintf(&b, "%s: %s\n", f.k, f.v)
		}
	}
	if p.Size != 0 {
		fmt.Fprintf(&b, "Size: %d\n", p.Size)
	}
	return b.String()
}

// FuzzParsePackages: a Packages index parses or fails with a line number; what it parses has a
// name and a version in every stanza, and written back as stanzas parses to the same packages
// (a wrapped relation field is one line with single spaces, so only its ends may differ).
func FuzzParsePackages(f *testing.F) {
	f.Add([]byte("Package: dash\nVersion: 0.5.12-2\nArchitecture: amd64\nPre-Depends: libc6 (>= 2.34)\nSize: 120\nSHA256: ab\n\nPackage: sh\nVersion: 1\nDepends: a,\n b | c\nDescription: x\n more\n"))
	f.Add([]byte("Package: a\nVersion: 1\nSize: x\n"))
	f.Add([]byte("Package: a\n\nVersion: 1\n"))
	f.Add([]byte("Depends:\n\tb\nPackage: p\nVersion: 2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pkgs, err := ParsePackages(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "line ") {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		var again strings.Builder
		for i, p := range pkgs {
			if p.Name == "" || p.Version == "" {
				t.Fatalf("stanza %d without a name or version: %+v", i, p)
			}
			again.WriteString(stanza(p) + "\n")
		}
		got, err := ParsePackages([]byte(again.String()))
		if err != nil {
			t.Fatalf("written back, the index does not parse: %v\n%s", err, again.String())
		}
		for i := range pkgs {
			p := &pkgs[i]
			p.Depends, p.PreDepends, p.Provides = strings.TrimSpace(p.Depends), strings.TrimSpace(p.PreDepends), strings.TrimSpace(p.Provides)
		}
		if len(got) != len(pkgs) || (len(got) > 0 && !reflect.DeepEqual(got, pkgs)) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, pkgs)
		}
	})
}

// FuzzParseRelations: a relation field parses to groups that print back to a field parsing to
// the same groups; each atom has a name, a known operator and a version made of version characters.
func FuzzParseRelations(f *testing.F) {
	for _, s := range []string{
		"libc6 (>= 2.34), libssl3 (>= 3.0.0) | libssl1.1, python3:any, foo [amd64]",
		"a (<< 1:2.0~rc1-1+b1) | b (> 1) | c (< 2) | d (= 3)",
		"a (>= ), b (", ",,|", "x:y:z (>>1)",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, field string) {
		groups, err := ParseRelations(field)
		if err != nil {
			return
		}
		parts := make([]string, len(groups))
		for i, g := range groups {
			for _, a := range g {
				switch a.Constraint.Op {
				case "", "<<", "<=", "=", ">=", ">>":
				default:
					t.Fatalf("atom %+v has operator %q", a, a.Constraint.Op)
				}
				if a.Name == "" || (a.Constraint.Op != "" && (a.Constraint.Version == "" || strings.Trim(a.Constraint.Version, versionChars) != "")) {
					t.Fatalf("bad atom %+v", a)
				}
			}
			parts[i] = g.String()
		}
		again, err := ParseRelations(strings.Join(parts, ", "))
		if err != nil || !reflect.DeepEqual(again, groups) {
			t.Fatalf("%q printed as %q parses to %+v (%v), not %+v", field, strings.Join(parts, ", "), again, err, groups)
		}
	})
}

// FuzzCompareVersions: the order of Debian versions is reflexive and antisymmetric, transitive
// over valid versions, and Constraint.Satisfied agrees with it.
func FuzzCompareVersions(f *testing.F) {
	f.Add("1.0-1", "1.0-1+b1", "1:0.9")
	f.Add("2.0~rc1", "2.0", "2.0.0")
	f.Add("1.0a", "1.0+", "1.0~~")
	f.Add("", "a:b", "-")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		for _, v := range []string{a, b, c} {
			if CompareVersions(v, v) != 0 {
				t.Fatalf("Compare(%q, %q) != 0", v, v)
			}
		}
		ab, ba := CompareVersions(a, b), CompareVersions(b, a)
		if ab != -ba || ab < -1 || ab > 1 {
			t.Fatalf("Compare(%q, %q) = %d, reversed %d", a, b, ab, ba)
		}
		for op, want := range map[string]bool{"<<": ab < 0, "<=": ab <= 0, "=": ab == 0, ">=": ab >= 0, ">>": ab > 0} {
			if got := (Constraint{Op: op, Version: b}).Satisfied(a); got != want {
				t.Fatalf("%q %s %q: Satisfied = %v, Compare = %d", a, op, b, got, ab)
			}
		}
		// Unparsable versions fall back to byte order, which mixes badly with dpkg's: only
		// valid versions need be transitive (archive data never holds others).
		if !validVersion(a) || !validVersion(b) || !validVersion(c) {
			return
		}
		if ab <= 0 && CompareVersions(b, c) <= 0 && CompareVersions(a, c) > 0 {
			t.Fatalf("not transitive: %q <= %q <= %q but %q > %q", a, b, c, a, c)
		}
	})
}

func validVersion(v string) bool {
	_, err := version.Parse(v)
	return err == nil
}

// stripRelease is r with only what ParseRelease reads from the text.
func stripRelease(r *Release) Release {
	return Release{Origin: r.Origin, Label: r.Label, Suite: r.Suite, Codename: r.Codename, Date: r.Date, ValidUntil: r.ValidUntil, Files: r.Files}
}

// writeRelease prints r as a Release file.
func writeRelease(r Release) []byte {
	var b bytes.Buffer
	for _, f := range []struct{ k, v string }{{"Origin", r.Origin}, {"Label", r.Label}, {"Suite", r.Suite}, {"Codename", r.Codename}} {
		if f.v != "" {
			fmt.Fprintf(&b, "%s: %s\n", f.k, f.v)
		}
	}
	if !r.Date.IsZero() {
		fmt.Fprintf(&b, "Date: %s\n", r.Date.Format(time.RFC1123Z))
	}
	if !r.ValidUntil.IsZero() {
		fmt.Fprintf(&b, "Valid-Until: %s\n", r.ValidUntil.Format(time.RFC1123Z))
	}
	b.WriteString("SHA256:\n")
	for name, fi := range r.Files {
		fmt.Fprintf(&b, " %s %d %s\n", fi.SHA256, fi.Size, name)
	}
	return b.Bytes()
}

const releaseSeed = "Origin: Debian\nLabel: Debian\nSuite: stable\nCodename: bookworm\nDate: Sat, 10 Jan 2026 11:11:11 UTC\nValid-Until: Sat, 17 Jan 2026 11:11:11 +0000\nSHA256:\n 0123abcd 1234 main/binary-amd64/Packages.xz\n ffff 9 main/binary-amd64/Packages\nMD5Sum:\n aa 1 x\n"

// FuzzParseRelease: a Release file parses to a codename and a file list that print back to a
// file parsing to the same release.
func FuzzParseRelease(f *testing.F) {
	f.Add([]byte(releaseSeed))
	f.Add([]byte("Codename: x\r\nSHA256:\r\n a 1 b\r\n"))
	f.Add([]byte("Codename: x\nDate: Mon, 2 Jan 2006 15:04:05 MST\nSHA256:\n a b c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRelease(data)
		if err != nil {
			return
		}
		if r.Codename == "" || len(r.Files) == 0 {
			t.Fatalf("accepted without a codename or files: %+v", r)
		}
		again, err := ParseRelease(writeRelease(*r))
		if err != nil {
			t.Fatalf("printed back, the release does not parse: %v\n%s", err, writeRelease(*r))
		}
		if !reflect.DeepEqual(stripRelease(again), stripRelease(r)) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", stripRelease(again), stripRelease(r))
		}
	})
}

// testSigner is a fresh OpenPGP key (EdDSA: made in milliseconds) and its public keyring file.
func testSigner(t testing.TB) (*openpgp.Entity, string) {
	e, err := openpgp.NewEntity("archive", "fuzz", "archive@example.org", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	if err := e.Serialize(&pub); err != nil {
		t.Fatal(err)
	}
	keyring := filepath.Join(t.TempDir(), "keyring.gpg")
	if err := os.WriteFile(keyring, pub.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return e, keyring
}

func clearsignBytes(t testing.TB, e *openpgp.Entity, text string) []byte {
	var out bytes.Buffer
	w, err := clearsign.Encode(&out, e.PrivateKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(text)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// FuzzVerifyInRelease mutates a clearsigned InRelease: whatever is accepted must be what was
// signed. A parsed field that differs from the signed text's would be an unsigned edit that
// passed (text around or inside the signed block leaking into the Release).
func FuzzVerifyInRelease(f *testing.F) {
	signer, keyring := testSigner(f)
	signed := releaseSeed
	want, err := ParseRelease([]byte(signed))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(clearsignBytes(f, signer, signed))
	f.Add(clearsignBytes(f, signer, "- Codename: x\nSHA256:\n a 1 b\n"))
	f.Add([]byte("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nCodename: x\n-----BEGIN PGP SIGNATURE-----\n\n-----END PGP SIGNATURE-----\n"))
	other, err := ParseRelease([]byte("Codename: x\nSHA256:\n a 1 b\n"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := VerifyInRelease(data, keyring)
		if err != nil {
			return
		}
		if got := stripRelease(r); !reflect.DeepEqual(got, stripRelease(want)) && !reflect.DeepEqual(got, stripRelease(other)) {
			t.Fatalf("accepted a release that was not signed: %+v", got)
		}
	})
}

// FuzzExtractDeb unpacks any file as a .deb: it fails or gives entries with clean relative
// paths, each on disk under the destination as declared; nothing is ever written beside it.
func FuzzExtractDeb(f *testing.F) {
	f.Add(debBytes(f, makeTar(f, []tarEntry{
		{tar.Header{Name: "./usr/a", Mode: 0o4755, Typeflag: tar.TypeReg}, "content"},
		{tar.Header{Name: "./usr/l", Typeflag: tar.TypeSymlink, Linkname: "a"}, ""},
	}), false))
	f.Add([]byte("!<arch>\ndata.tar/       0           0     0     100644  3         `\nabc"))
	f.Add(debBytes(f, sparseTar(1<<40), false))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		deb, dest := filepath.Join(parent, "p.deb"), filepath.Join(parent, "root")
		if err := os.WriteFile(deb, data, 0o644); err != nil {
			t.Fatal(err)
		}
		u, err := ExtractDeb(context.Background(), deb, dest)
		if names, _ := os.ReadDir(parent); len(names) > 2 {
			t.Fatalf("written beside the destination: %v", names)
		}
		if err != nil {
			return
		}
		for _, e := range u.Entries {
			if e.Path == "" || path.IsAbs(e.Path) || path.Clean(e.Path) != e.Path || e.Path == ".." || strings.HasPrefix(e.Path, "../") {
				t.Fatalf("entry path %q", e.Path)
			}
			if e.Mode&^fs.ModePerm != 0 {
				t.Fatalf("entry %q keeps mode bits %v", e.Path, e.Mode)
			}
			fi, err := os.Lstat(filepath.Join(dest, filepath.FromSlash(e.Path)))
			if err != nil {
				// A later entry may replace a path by another type; the last one must be there.
				continue
			}
			if e.Type == TypeFile && fi.Mode().IsRegular() && fi.Size() != e.Size && lastEntry(u.Entries, e) {
				t.Fatalf("%s: %d bytes on disk, %d declared", e.Path, fi.Size(), e.Size)
			}
		}
	})
}

// lastEntry reports whether e is the last entry for its path.
func lastEntry(entries []Entry, e Entry) bool {
	last := Entry{}
	for _, x := range entries {
		if x.Path == e.Path {
			last = x
		}
	}
	return last == e
}

// TestParseAtomTrimsName: white space other than a space between the name and its version,
// architecture list or qualifier (found by FuzzParseRelations) is not part of the name, and an
// empty qualifier is an error, not a name that prints as another.
func TestParseAtomTrimsName(t *testing.T) {
	for _, s := range []string{"libc6\t(>= 2.34)", "libc6 \t(>= 2.34)", "libc6\f[amd64]", "libc6\f:any"} {
		a, err := ParseAtom(s)
		if err != nil || a.Name != "libc6" {
			t.Errorf("ParseAtom(%q) = %+v, %v; want the name libc6", s, a, err)
		}
	}
	if a, err := ParseAtom("libc6:"); err == nil {
		t.Errorf("ParseAtom(\"libc6:\") = %+v, want an error for the empty architecture", a)
	}
}
