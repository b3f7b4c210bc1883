package debian

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ulikunitz/xz"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/testenv"
)

type tarEntry struct {
	hdr  tar.Header
	body string
}

func makeTar(t testing.TB, entries []tarEntry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.Size = int64(len(e.body))
		h.Format = tar.FormatGNU
		must(t, tw.WriteHeader(&h))
		_, err := tw.Write([]byte(e.body))
		must(t, err)
	}
	must(t, tw.Close())
	return buf.Bytes()
}

func makeDeb(t *testing.T, data []tarEntry) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "demo.deb")
	must(t, os.WriteFile(p, debBytes(t, makeTar(t, data), true), 0o644))
	return p
}

// debBytes is a .deb of the demo control member and dataTar as its data member, both
// compressed (control.tar.gz, data.tar.xz) or stored (control.tar, data.tar).
func debBytes(t testing.TB, dataTar []byte, compress bool) []byte {
	ctl := makeTar(t, []tarEntry{
		{tar.Header{Name: "./control", Mode: 0o644, Typeflag: tar.TypeReg}, "Package: demo\nVersion: 1.0\nArchitecture: amd64\nDescription: demo\n two lines\n"},
		{tar.Header{Name: "./postinst", Mode: 0o755, Typeflag: tar.TypeReg}, "#!/bin/sh\nexit 0\n"},
	})
	ctlName, ctlBody := "control.tar", ctl
	dataName, dataBody := "data.tar", dataTar
	if compress {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(ctl)
		zw.Close()
		ctlName, ctlBody = "control.tar.gz", gz.Bytes()
		var xzb bytes.Buffer
		xw, err := xz.NewWriter(&xzb)
		must(t, err)
		xw.Write(dataTar)
		must(t, xw.Close())
		dataName, dataBody = "data.tar.xz", xzb.Bytes()
	}
	var deb bytes.Buffer
	deb.WriteString("!<arch>\n")
	for _, m := range []struct {
		name string
		body []byte
	}{{"debian-binary", []byte("2.0\n")}, {ctlName, ctlBody}, {dataName, dataBody}} {
		fmt.Fprintf(&deb, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.name+"/", 0, 0, 0, "100644", len(m.body))
		deb.Write(m.body)
		if len(m.body)%2 == 1 {
			deb.WriteByte('\n')
		}
	}
	return deb.Bytes()
}

// TestExtractDebRefusesTruncation: a data member cut at a tar block boundary (after a complete
// entry, so archive/tar sees a clean end) or an ar member shorter than its header says is an
// error, not a smaller package.
func TestExtractDebRefusesTruncation(t *testing.T) {
	full := makeTar(t, []tarEntry{
		{tar.Header{Name: "./a", Mode: 0o644, Typeflag: tar.TypeReg}, "first file"},
		{tar.Header{Name: "./b", Mode: 0o644, Typeflag: tar.TypeReg}, "second file"},
	})
	const firstEntry = 2 * 512 // header and one block of content
	cut := func(b []byte, n int) []byte { return b[:len(b)-n] }
	for _, c := range []struct {
		name    string
		deb     []byte
		wantErr string
	}{
		{"data.tar.xz whose tar is cut after an entry", debBytes(t, full[:firstEntry], true), "truncated tar archive"},
		{"data.tar member cut after an entry", debBytes(t, full[:firstEntry], false), "truncated tar archive"},
		{"the .deb file cut after an entry", cut(debBytes(t, full, false), len(full)-firstEntry), "truncated tar archive"},
		{"tar with one end block", debBytes(t, full[:len(full)-512], false), "truncated tar archive"},
		{"empty data member", debBytes(t, nil, false), "truncated tar archive"},
		// The tar ends properly inside the member; the record padding after it is missing.
		{"ar member shorter than its header", cut(debBytes(t, append(full, make([]byte, 512)...), false), 512), `ar member "data.tar" is truncated (512 of its`},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "cut.deb")
			must(t, os.WriteFile(p, c.deb, 0o644))
			_, err := ExtractDeb(context.Background(), p, t.TempDir())
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("got %v, want an error with %q", err, c.wantErr)
			}
		})
	}
	// The whole archive, end blocks included, still extracts.
	p := filepath.Join(t.TempDir(), "full.deb")
	must(t, os.WriteFile(p, debBytes(t, full, false), 0o644))
	u, err := ExtractDeb(context.Background(), p, t.TempDir())
	if err != nil || len(u.Entries) != 2 {
		t.Fatalf("full archive: %v, %+v", err, u)
	}
}

func TestExtractDebSynthetic(t *testing.T) {
	deb := makeDeb(t, []tarEntry{
		{tar.Header{Name: "./", Mode: 0o755, Typeflag: tar.TypeDir}, ""},
		{tar.Header{Name: "./usr/bin/", Mode: 0o755, Typeflag: tar.TypeDir}, ""},
		{tar.Header{Name: "./usr/bin/su", Mode: 0o4755, Typeflag: tar.TypeReg, Uid: 0, Gid: 0}, "binary"},
		{tar.Header{Name: "./usr/bin/crontab", Mode: 0o2755, Typeflag: tar.TypeReg, Gid: 107}, "binary"},
		{tar.Header{Name: "./usr/bin/sh", Typeflag: tar.TypeSymlink, Linkname: "/bin/dash", Mode: 0o777}, ""},
		{tar.Header{Name: "./usr/bin/su2", Typeflag: tar.TypeLink, Linkname: "./usr/bin/su"}, ""},
		{tar.Header{Name: "./dev/null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666}, ""},
	})
	dest := t.TempDir()
	u, err := ExtractDeb(context.Background(), deb, dest)
	must(t, err)
	if u.Control["Package"] != "demo" || !strings.Contains(u.Control["Description"], "two lines") {
		t.Errorf("control %v", u.Control)
	}
	if _, ok := u.Scripts["postinst"]; !ok || len(u.Scripts) != 1 {
		t.Errorf("scripts %v", u.Scripts)
	}
	byPath := map[string]Entry{}
	for _, e := range u.Entries {
		byPath[e.Path] = e
	}
	if e := byPath["usr/bin/su"]; e.Mode != 0o755 || e.Type != TypeFile {
		t.Errorf("su %+v", e)
	}
	if e := byPath["usr/bin/crontab"]; e.GID != 107 || e.Mode != 0o755 {
		t.Errorf("crontab %+v", e)
	}
	if e := byPath["usr/bin/sh"]; e.Type != TypeSymlink || e.Link != "/bin/dash" {
		t.Errorf("sh %+v", e)
	}
	if e := byPath["usr/bin/su2"]; e.Type != TypeHard || e.Link != "usr/bin/su" {
		t.Errorf("su2 %+v", e)
	}
	if _, ok := byPath["dev/null"]; ok {
		t.Error("device node extracted")
	}
	if fi, err := os.Stat(filepath.Join(dest, "usr/bin/su")); err != nil || fi.Mode()&os.ModeSetuid != 0 {
		t.Errorf("su on disk: %v %v", fi.Mode(), err)
	}
	notes := strings.Join(u.Neutralised, "\n")
	for _, want := range []string{"usr/bin/su: setuid", "usr/bin/crontab: setuid/setgid", "dev/null: device node"} {
		if !strings.Contains(notes, want) {
			t.Errorf("neutralised notes lack %q:\n%s", want, notes)
		}
	}
}

func TestExtractDebRefusesEscapes(t *testing.T) {
	for name, entries := range map[string][]tarEntry{
		"dotdot":   {{tar.Header{Name: "./../evil", Mode: 0o644, Typeflag: tar.TypeReg}, "x"}},
		"absolute": {{tar.Header{Name: "/etc/evil", Mode: 0o644, Typeflag: tar.TypeReg}, "x"}},
		"through-symlink": {
			{tar.Header{Name: "./etc", Typeflag: tar.TypeSymlink, Linkname: "/tmp"}, ""},
			{tar.Header{Name: "./etc/evil", Mode: 0o644, Typeflag: tar.TypeReg}, "x"},
		},
		"hardlink-out": {{tar.Header{Name: "./x", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"}, ""}},
	} {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			dest := filepath.Join(parent, "root")
			_, err := ExtractDeb(context.Background(), makeDeb(t, entries), dest)
			if err == nil || !strings.Contains(err.Error(), "refused") {
				t.Fatalf("got %v, want a refusal", err)
			}
			if _, err := os.Stat(filepath.Join(parent, "evil")); err == nil {
				t.Fatal("file written outside the tree")
			}
		})
	}
}

// TestExtractRealDeb compares the extracted entries of a real package with dpkg-deb's listing.
func TestExtractRealDeb(t *testing.T) {
	a := openBookworm(t)
	p := NewResolver(a.Packages).Candidate("libssl3")
	var uri string
	for _, s := range a.Suites {
		if s.Release.Codename == p.Suite {
			uri = s.Source.URI
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := testCache(t)
	deb, err := (&cache.Fetcher{}).Fetch(ctx, c, uri+"/"+p.Filename, p.SHA256, p.Name, p.Size)
	must(t, err)
	dest := t.TempDir()
	u, err := ExtractDeb(ctx, deb, dest)
	must(t, err)
	if u.Control["Package"] != "libssl3" || u.Control["Version"] != p.Version {
		t.Fatalf("control %v", u.Control)
	}
	testenv.RequireTools(t, "dpkg-deb") // the reference tool this test compares with
	out, err := exec.CommandContext(ctx, "dpkg-deb", "--contents", deb).Output()
	must(t, err)
	var want, got []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		name := strings.TrimSuffix(strings.TrimPrefix(f[5], "./"), "/")
		if name != "" {
			want = append(want, f[0][:1]+" "+name)
		}
	}
	kind := map[EntryType]string{TypeDir: "d", TypeFile: "-", TypeSymlink: "l", TypeHard: "h"}
	for _, e := range u.Entries {
		got = append(got, kind[e.Type]+" "+e.Path)
	}
	sort.Strings(want)
	sort.Strings(got)
	if strings.Join(want, "\n") != strings.Join(got, "\n") {
		t.Errorf("entries differ from dpkg-deb:\nours:\n%s\ndpkg-deb:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// sparseTar is a data.tar of one PAX sparse entry (format 1.0) claiming size bytes, all a
// hole: Go's writer refuses to write one, so its blocks are laid out here.
func sparseTar(size int64) []byte {
	header := func(name string, n int, typ byte) []byte {
		b := make([]byte, 512)
		copy(b, name)
		copy(b[100:], "0000644\x00")
		copy(b[124:], fmt.Sprintf("%011o\x00", n))
		copy(b[136:], "00000000000\x00")
		b[156] = typ
		copy(b[257:], "ustar\x0000")
		copy(b[148:], "        ")
		sum := 0
		for _, c := range b {
			sum += int(c)
		}
		copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
		return b
	}
	pad := func(b []byte) []byte { return append(b, make([]byte, (512-len(b)%512)%512)...) }
	var pax []byte
	for _, kv := range [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.name", "./usr/big"}, {"GNU.sparse.realsize", strconv.FormatInt(size, 10)}} {
		rec := " " + kv[0] + "=" + kv[1] + "\n"
		n := len(rec) + 1
		for len(strconv.Itoa(n))+len(rec) != n {
			n++
		}
		pax = append(pax, strconv.Itoa(n)+rec...)
	}
	sparseMap := pad([]byte("0\n"))
	out := append(header("./PaxHeaders/big", len(pax), 'x'), pad(pax)...)
	out = append(append(out, header("./GNUSparseFile.0/big", len(sparseMap), '0')...), sparseMap...)
	return append(out, make([]byte, 1024)...)
}

// TestExtractDebRefusesSparse: a sparse entry (found by FuzzExtractDeb, which stalled on one)
// claims its size with nothing behind it; this one's 1.5 KiB wrote 21 GB of zeros in a minute,
// past the context's deadline. It is refused, at once.
func TestExtractDebRefusesSparse(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sparse.deb")
	must(t, os.WriteFile(p, debBytes(t, sparseTar(1<<40), false), 0o644))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := ExtractDeb(ctx, p, filepath.Join(t.TempDir(), "root"))
	if err == nil || !strings.Contains(err.Error(), "sparse file") {
		t.Fatalf("sparse entry: %v", err)
	}
}
