package debian

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// EntryType is the kind of a file in a package.
type EntryType string

const (
	TypeFile    EntryType = "file"
	TypeDir     EntryType = "dir"
	TypeSymlink EntryType = "symlink"
	TypeHard    EntryType = "hardlink"
)

// Entry is one extracted path with the metadata the package declared. The staging tree itself
// is written as the host user with plain modes; the image builder applies these values.
type Entry struct {
	Path string      `json:"path"` // relative, slash-separated, no leading "./"
	Type EntryType   `json:"type"`
	Mode fs.FileMode `json:"mode"` // permission bits as declared, setuid/setgid removed
	UID  int         `json:"uid"`
	GID  int         `json:"gid"`
	Size int64       `json:"size,omitempty"`
	Link string      `json:"link,omitempty"` // symlink target or hard link source path
}

// Unpacked describes an extracted .deb.
type Unpacked struct {
	Control map[string]string // control file fields
	// Scripts maps maintainer script names present (preinst, postinst, prerm, postrm, config,
	// triggers) to their content: ukernel does not run them, the image builder emulates them.
	Scripts map[string]string
	Entries []Entry
	// Neutralised lists what was changed or skipped for safety (setuid bits, device nodes).
	Neutralised []string
}

// Matches checks the package's own control fields against what its lock pins: a file that is
// another package, version or architecture than the one locked is refused, whatever its hash.
func (u *Unpacked) Matches(name, version, arch string) error {
	for _, f := range []struct{ field, want string }{{"Package", name}, {"Version", version}, {"Architecture", arch}} {
		if got := u.Control[f.field]; got != f.want {
			return fmt.Errorf("the package's control file says %s: %q, the lock pins %q", f.field, got, f.want)
		}
	}
	return nil
}

var maintainerScripts = map[string]bool{"preinst": true, "postinst": true, "prerm": true, "postrm": true, "config": true, "triggers": true}

// ExtractDeb unpacks the data of a .deb into destDir and returns its control data and every
// entry's metadata. Paths that would leave destDir (absolute, "..", or through a symlink) are an
// error; device nodes and FIFOs are skipped and setuid/setgid bits dropped, each noted.
func ExtractDeb(ctx context.Context, debPath, destDir string) (*Unpacked, error) {
	f, err := os.Open(debPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	u := &Unpacked{Control: map[string]string{}, Scripts: map[string]string{}}
	ar := bufio.NewReader(f)
	magic := make([]byte, 8)
	if _, err := io.ReadFull(ar, magic); err != nil || string(magic) != "!<arch>\n" {
		return nil, fmt.Errorf("%s: not a Debian package (no ar header)", debPath)
	}
	sawData, sawControl := false, false
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr := make([]byte, 60)
		if _, err := io.ReadFull(ar, hdr); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s: ar header: %w", debPath, err)
		}
		name := strings.TrimRight(strings.TrimSpace(string(hdr[:16])), "/")
		size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("%s: ar member %q has a bad size", debPath, name)
		}
		member := &io.LimitedReader{R: ar, N: size}
		switch {
		case strings.HasPrefix(name, "control.tar"):
			if err := readControl(member, name, u); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", debPath, name, err)
			}
			sawControl = true
		case strings.HasPrefix(name, "data.tar"):
			if err := os.MkdirAll(destDir, 0o755); err != nil {
				return nil, err
			}
			if err := extractData(ctx, member, name, destDir, u); err != nil {
				return nil, fmt.Errorf("%s: %w", debPath, err)
			}
			sawData = true
		}
		if _, err := io.Copy(io.Discard, member); err != nil {
			return nil, fmt.Errorf("%s: %w", debPath, err)
		}
		if member.N > 0 {
			return nil, fmt.Errorf("%s: ar member %q is truncated (%d of its %d bytes missing)", debPath, name, member.N, size)
		}
		if size%2 == 1 {
			ar.ReadByte()
		}
	}
	if !sawControl || !sawData {
		return nil, fmt.Errorf("%s: missing control.tar or data.tar member", debPath)
	}
	return u, nil
}

func decompress(r io.Reader, name string) (io.Reader, func(), error) {
	switch path.Ext(name) {
	case ".xz":
		x, err := xz.NewReader(bufio.NewReader(r))
		return x, func() {}, err
	case ".zst":
		z, err := zstd.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return z, z.Close, nil
	case ".gz":
		g, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return g, func() { g.Close() }, nil
	case ".tar":
		return r, func() {}, nil
	}
	return nil, nil, fmt.Errorf("unsupported compression of %s", name)
}

func readControl(r io.Reader, name string, u *Unpacked) error {
	dr, done, err := decompress(r, name)
	if err != nil {
		return err
	}
	defer done()
	tr := newTarReader(dr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		base := path.Base(h.Name)
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(io.LimitReader(tr, 16<<20))
		if err != nil {
			return err
		}
		switch {
		case base == "control":
			parseControlFields(data, u.Control)
		case maintainerScripts[base]:
			u.Scripts[base] = string(data)
		}
	}
}

func parseControlFields(data []byte, into map[string]string) {
	var last string
	for _, l := range strings.Split(string(data), "\n") {
		if l == "" {
			continue
		}
		if l[0] == ' ' || l[0] == '\t' {
			if last != "" {
				into[last] += "\n" + l
			}
			continue
		}
		k, v, _ := strings.Cut(l, ":")
		last = k
		into[k] = strings.TrimSpace(v)
	}
}

// tarReader is a tar.Reader that tells the end of an archive from a truncation: archive/tar
// returns io.EOF at any header boundary, with or without the two zero blocks that end a tar file,
// so a member cut after a complete entry would otherwise extract as a smaller, valid package.
type tarReader struct {
	*tar.Reader
	in *countingReader
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func newTarReader(r io.Reader) *tarReader {
	in := &countingReader{r: r}
	return &tarReader{Reader: tar.NewReader(in), in: in}
}

// Next is tar.Reader.Next, but io.EOF only after the end-of-archive blocks. The unread rest of
// the current entry is drained first, so what the final call reads is the last entry's padding
// (under one block) and then the end marker: at least two blocks in all when it is there.
func (t *tarReader) Next() (*tar.Header, error) {
	if _, err := io.Copy(io.Discard, t.Reader); err != nil {
		return nil, err
	}
	before := t.in.n
	h, err := t.Reader.Next()
	if err == io.EOF && t.in.n-before < 2*512 {
		return nil, fmt.Errorf("truncated tar archive (it ends without its end-of-archive blocks): %w", io.ErrUnexpectedEOF)
	}
	return h, err
}

// cleanEntryPath turns a tar name into a safe relative path, or fails.
func cleanEntryPath(name string) (string, error) {
	n := strings.TrimPrefix(name, "./")
	if n == "" || n == "." {
		return "", nil
	}
	if strings.HasPrefix(n, "/") {
		return "", fmt.Errorf("absolute path %q refused", name)
	}
	c := path.Clean(n)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("path %q escapes the tree, refused", name)
	}
	return c, nil
}

// checkParents refuses to write through a symlink: every parent of rel inside destDir must be
// a real directory.
func checkParents(destDir, rel string) error {
	dir := path.Dir(rel)
	if dir == "." {
		return nil
	}
	cur := destDir
	for _, part := range strings.Split(dir, "/") {
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			return os.MkdirAll(filepath.Join(destDir, filepath.FromSlash(dir)), 0o755)
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("path %q goes through a symlink, refused", rel)
		}
		if !fi.IsDir() {
			return fmt.Errorf("path %q: parent %s is not a directory", rel, cur)
		}
	}
	return nil
}

func extractData(ctx context.Context, r io.Reader, name, destDir string, u *Unpacked) error {
	dr, done, err := decompress(r, name)
	if err != nil {
		return err
	}
	defer done()
	tr := newTarReader(dr)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rel, err := cleanEntryPath(h.Name)
		if err != nil {
			return err
		}
		if rel == "" {
			continue
		}
		// A sparse entry's size is what it claims, not what the archive holds: 1.5 KiB made
		// 21 GB of zeros in a minute. dpkg does not unpack sparse files either.
		if isSparse(h) {
			return fmt.Errorf("%s: %s is a sparse file, which dpkg does not unpack", name, rel)
		}
		mode := fs.FileMode(h.Mode).Perm()
		if h.Mode&(0o4000|0o2000) != 0 {
			u.Neutralised = append(u.Neutralised, fmt.Sprintf("%s: setuid/setgid bits removed (mode %04o)", rel, h.Mode&0o7777))
		}
		e := Entry{Path: rel, Mode: mode, UID: h.Uid, GID: h.Gid}
		target := filepath.Join(destDir, filepath.FromSlash(rel))
		if err := checkParents(destDir, rel); err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			e.Type = TypeDir
			if fi, err := os.Lstat(target); err == nil && !fi.IsDir() {
				return fmt.Errorf("directory %q collides with an existing non-directory", rel)
			}
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			e.Type, e.Size = TypeFile, h.Size
			perm := fs.FileMode(0o644)
			if mode&0o111 != 0 {
				perm = 0o755
			}
			os.Remove(target) // a later package may replace a file (dpkg's diversions aside)
			out, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, ctxReader{ctx, tr})
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", rel, err)
			}
		case tar.TypeSymlink:
			e.Type, e.Link = TypeSymlink, h.Linkname
			os.Remove(target)
			// The link is stored as is; it is never followed while extracting (checkParents).
			if err := os.Symlink(h.Linkname, target); err != nil {
				return err
			}
		case tar.TypeLink:
			src, err := cleanEntryPath(h.Linkname)
			if err != nil || src == "" {
				return fmt.Errorf("hard link %q -> %q refused", rel, h.Linkname)
			}
			if err := checkParents(destDir, src); err != nil {
				return err
			}
			e.Type, e.Link = TypeHard, src
			os.Remove(target)
			if err := os.Link(filepath.Join(destDir, filepath.FromSlash(src)), target); err != nil {
				return fmt.Errorf("hard link %s: %w", rel, err)
			}
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			u.Neutralised = append(u.Neutralised, fmt.Sprintf("%s: device node or FIFO skipped", rel))
			continue
		default:
			u.Neutralised = append(u.Neutralised, fmt.Sprintf("%s: unsupported tar entry type %q skipped", rel, h.Typeflag))
			continue
		}
		u.Entries = append(u.Entries, e)
	}
	sort.SliceStable(u.Entries, func(i, j int) bool { return u.Entries[i].Path < u.Entries[j].Path })
	return nil
}

// isSparse reports a GNU sparse entry, old style or in PAX records (Go's reader turns the latter
// into a regular file that reads as zeros for its claimed size).
func isSparse(h *tar.Header) bool {
	if h.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// ctxReader ends a long copy when ctx does: a file is as large as its package says.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
