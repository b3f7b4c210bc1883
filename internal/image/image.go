package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	erofs "github.com/erofs/go-erofs"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/atomicfile"
)

// Names of the parts of an image, as Verify reports them.
const (
	PartMBR       = "protective MBR"
	PartPrimary   = "primary GPT"
	PartBackup    = "backup GPT"
	PartBoot      = "boot partition"
	PartRoot      = "root partition"
	PartVerity    = "verity hash tree"
	PartGaps      = "gaps"
	PartManifest  = "manifest"
	PartKernel    = "kernel"
	PartInitramfs = "initramfs"
)

// Image is an opened image file. Opening reads the partition table and the manifest only.
type Image struct {
	path     string
	f        *os.File
	size     int64
	sectors  uint64 // disk size the table describes
	boot     gptPart
	root     gptPart
	diskGUID [16]byte
	manifest abi.Manifest
	rawMan   []byte
}

// Open reads the image's GPT (the primary copy, or the backup when the primary is damaged) and
// the manifest from the boot partition. It needs no root and mounts nothing.
func Open(path string) (*Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	im, err := open(path, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return im, nil
}

func open(path string, f *os.File) (*Image, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	im := &Image{path: path, f: f, size: st.Size()}
	if im.size < 2*align {
		return nil, fmt.Errorf("%s: %d bytes is too small for a ukernel image (truncated?)", path, im.size)
	}
	h, parts, perr := im.readTable(1)
	if perr != nil {
		// The backup sits at the disk's last LBA; if the file is truncated it is not there.
		var berr error
		if h, parts, berr = im.readTable(uint64(im.size/sectorSize) - 1); berr != nil {
			return nil, fmt.Errorf("%s: no readable partition table: primary GPT: %v; backup GPT at the end of the file: %v", path, perr, berr)
		}
	}
	im.diskGUID = h.DiskGUID
	im.sectors = max(h.MyLBA, h.AltLBA) + 1
	var haveBoot, haveRoot bool
	for _, p := range parts {
		switch p.Name {
		case abi.BootLabel:
			im.boot, haveBoot = p, true
		case abi.RootLabel:
			im.root, haveRoot = p, true
		}
	}
	if !haveBoot || !haveRoot || len(parts) != 2 {
		return nil, fmt.Errorf("%s: want exactly the partitions %q and %q, found %d partitions", path, abi.BootLabel, abi.RootLabel, len(parts))
	}
	if im.boot.offset()+im.boot.size() > im.size {
		return nil, fmt.Errorf("%s: truncated: the boot partition ends at byte %d, the file has %d", path, im.boot.offset()+im.boot.size(), im.size)
	}
	raw, err := im.ReadBootFile(ManifestFile)
	if err != nil {
		return nil, fmt.Errorf("%s: reading %s from the boot partition: %w", path, ManifestFile, err)
	}
	if err := json.Unmarshal(raw, &im.manifest); err != nil {
		return nil, fmt.Errorf("%s: %s in the boot partition: %w", path, ManifestFile, err)
	}
	im.rawMan = raw
	return im, nil
}

// readTable reads and checks the GPT header at lba and its entries.
func (im *Image) readTable(lba uint64) (gptHeader, []gptPart, error) {
	hb := make([]byte, sectorSize)
	if _, err := im.f.ReadAt(hb, int64(lba)*sectorSize); err != nil {
		return gptHeader{}, nil, fmt.Errorf("reading the header at LBA %d: %w", lba, err)
	}
	h, err := decodeHeader(hb)
	if err != nil {
		return h, nil, err
	}
	if h.MyLBA != lba {
		return h, nil, fmt.Errorf("header at LBA %d says it is at LBA %d", lba, h.MyLBA)
	}
	eb := make([]byte, entriesBytes)
	if _, err := im.f.ReadAt(eb, int64(h.EntriesLBA)*sectorSize); err != nil {
		return h, nil, fmt.Errorf("reading the partition entries at LBA %d: %w", h.EntriesLBA, err)
	}
	parts, err := decodeEntries(h, eb)
	return h, parts, err
}

// Close closes the image file.
func (im *Image) Close() error { return im.f.Close() }

// Path returns the image's path.
func (im *Image) Path() string { return im.path }

// Size returns the image file's size in bytes.
func (im *Image) Size() int64 { return im.size }

// RootPartition returns the root partition's byte offset and size, from the partition table
// Open checked (the backup's when the primary is damaged).
func (im *Image) RootPartition() (offset, size int64) { return im.root.offset(), im.root.size() }

// Manifest returns the manifest read from the boot partition.
func (im *Image) Manifest() abi.Manifest { return im.manifest }

// RawManifest returns manifest.json as stored.
func (im *Image) RawManifest() []byte { return bytes.Clone(im.rawMan) }

// SHA256 hashes the whole image file.
func (im *Image) SHA256() (string, error) {
	sum, _, err := digest(sha256.New(), io.NewSectionReader(im.f, 0, im.size))
	if err != nil {
		return "", fmt.Errorf("%s: %w", im.path, err)
	}
	return hex.EncodeToString(sum), nil
}

// ManifestSegment returns the start of the image's initramfs: the archive holding its manifest,
// which the backends' boot initramfs (BootInitrd) starts with too.
func (im *Image) ManifestSegment() ([]byte, error) {
	return manifestSegment(im.rawMan, im.manifest.Build.SourceDateEpoch)
}

// ReadBootFile returns a file of the boot partition (vmlinuz, initrd.img, manifest.json).
func (im *Image) ReadBootFile(name string) ([]byte, error) {
	fsys, err := erofs.Open(io.NewSectionReader(im.f, im.boot.offset(), im.boot.size()))
	if err != nil {
		return nil, fmt.Errorf("boot partition of %s: %w", im.path, err)
	}
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("boot partition of %s: %w", im.path, err)
	}
	return b, nil
}

// ExtractBoot writes the kernel and initramfs into dir (for a VMM's -kernel/-initrd), after
// checking them against the manifest. Each file is written to a temporary name and renamed.
func (im *Image) ExtractBoot(dir string) (kernel, initrd string, err error) {
	kb, err := im.ReadBootFile(KernelFile)
	if err != nil {
		return "", "", err
	}
	ib, err := im.ReadBootFile(InitrdFile)
	if err != nil {
		return "", "", err
	}
	if err := im.checkKernel(kb); err != nil {
		return "", "", err
	}
	if err := im.checkInitrd(ib); err != nil {
		return "", "", err
	}
	kernel, initrd = filepath.Join(dir, KernelFile), filepath.Join(dir, InitrdFile)
	if err := atomicfile.WriteFile(kernel, kb, 0o644); err != nil {
		return "", "", err
	}
	if err := atomicfile.WriteFile(initrd, ib, 0o644); err != nil {
		return "", "", err
	}
	return kernel, initrd, nil
}

func (im *Image) artefact(name string) (abi.Artefact, error) {
	for _, a := range im.manifest.Artefacts {
		if a.Name == name {
			return a, nil
		}
	}
	return abi.Artefact{}, fmt.Errorf("the manifest lists no %q artefact", name)
}

func (im *Image) checkKernel(b []byte) error {
	a, err := im.artefact(ArtefactKernel)
	if err != nil {
		return err
	}
	if sum := sha256.Sum256(b); int64(len(b)) != a.Size || hex.EncodeToString(sum[:]) != a.SHA256 {
		return fmt.Errorf("%s in the boot partition: %d bytes sha256 %x, the manifest says %d bytes sha256 %s", KernelFile, len(b), sum, a.Size, a.SHA256)
	}
	return nil
}

// checkInitrd checks initrd.img: the manifest segment, then the compressed base archive the
// manifest records.
func (im *Image) checkInitrd(b []byte) error {
	a, err := im.artefact(ArtefactInitramfs)
	if err != nil {
		return err
	}
	seg, err := manifestSegment(im.rawMan, im.manifest.Build.SourceDateEpoch)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(b, seg) {
		return fmt.Errorf("%s: the manifest segment before the base archive differs from %s", InitrdFile, ManifestFile)
	}
	base := b[len(seg):]
	if int64(len(base)) != a.Size {
		return fmt.Errorf("%s: the base archive is %d bytes, the manifest records %d", InitrdFile, len(base), a.Size)
	}
	if sum := sha256.Sum256(base); hex.EncodeToString(sum[:]) != a.SHA256 {
		return fmt.Errorf("%s: base archive sha256 %x, the manifest says %s", InitrdFile, sum, a.SHA256)
	}
	return nil
}

// Check is the result of verifying one part of an image.
type Check struct {
	Part string `json:"part"`
	OK   bool   `json:"ok"`
	Err  string `json:"error,omitempty"`
}

// Report lists the checks Verify made, in disk order.
type Report struct {
	Checks []Check `json:"checks"`
}

// OK reports whether every check passed.
func (r Report) OK() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return len(r.Checks) > 0
}

// Err returns nil when every check passed, else an error naming each damaged part.
func (r Report) Err() error {
	var msgs []string
	for _, c := range r.Checks {
		if !c.OK {
			msgs = append(msgs, c.Part+": "+c.Err)
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New("image damaged: " + strings.Join(msgs, "; "))
}

// Verify checks every byte of the image: the protective MBR exactly, both GPT copies (header and
// entries CRC32, and that they agree), each partition against its content-derived GUID, the zero
// padding after each filesystem and the zero gaps between the regions, the manifest against the
// disk GUID, and the kernel and initramfs against the manifest's digests. A read-only image's
// dm-verity hash tree is recomputed and compared with the hash area and the manifest's root hash.
func (im *Image) Verify() Report {
	var r Report
	add := func(part string, err error) {
		c := Check{Part: part, OK: err == nil}
		if err != nil {
			c.Err = err.Error()
		}
		r.Checks = append(r.Checks, c)
	}
	want := im.sectors * sectorSize
	truncated := int64(want) > im.size
	if int64(want) < im.size {
		add("size", fmt.Errorf("the file is %d bytes, the partition table describes %d", im.size, want))
	}

	add(PartMBR, im.checkRegion(0, protectiveMBR(im.sectors)))
	ph, pparts, perr := im.readTable(1)
	add(PartPrimary, perr)
	var berr error
	var bh gptHeader
	var bparts []gptPart
	if truncated {
		berr = fmt.Errorf("missing: the image is truncated to %d bytes, the backup GPT ends at byte %d", im.size, want)
	} else {
		bh, bparts, berr = im.readTable(im.sectors - 1)
		if berr == nil && perr == nil {
			berr = agree(ph, bh, pparts, bparts)
		}
	}
	add(PartBackup, berr)

	add(PartBoot, im.checkPartition(im.boot, nil))
	rootErr := im.checkPartition(im.root, &im.manifest.Root)
	if truncated && im.root.offset()+im.root.size() > im.size {
		rootErr = fmt.Errorf("missing: the image is truncated to %d bytes, the root partition ends at byte %d", im.size, im.root.offset()+im.root.size())
	}
	add(PartRoot, rootErr)
	if v := im.manifest.Root.Verity; v != nil {
		err := fmt.Errorf("missing: the image is truncated to %d bytes", im.size)
		if !truncated {
			err = im.checkVerity(im.root.offset(), im.root.size(), im.manifest.Root)
		}
		if err != nil {
			err = fmt.Errorf("%s: %w", PartRoot, err)
		}
		add(PartVerity, err)
	}
	add(PartGaps, im.checkGaps())

	ms := sha256.Sum256(im.rawMan)
	var merr error
	if !bytes.Equal(ms[:16], im.diskGUID[:]) {
		merr = fmt.Errorf("%s sha256 %x does not match the disk GUID %x", ManifestFile, ms[:16], im.diskGUID)
	} else if err := abi.Compatible(im.manifest.ABI); err != nil {
		merr = err
	}
	add(PartManifest, merr)
	kb, err := im.ReadBootFile(KernelFile)
	if err == nil {
		err = im.checkKernel(kb)
	}
	add(PartKernel, err)
	ib, err := im.ReadBootFile(InitrdFile)
	if err == nil {
		err = im.checkInitrd(ib)
	}
	add(PartInitramfs, err)
	return r
}

// agree checks that the backup GPT describes the same disk as the primary.
func agree(p, b gptHeader, pp, bp []gptPart) error {
	if p.AltLBA != b.MyLBA || b.AltLBA != p.MyLBA || p.DiskGUID != b.DiskGUID || p.FirstUsable != b.FirstUsable || p.LastUsable != b.LastUsable {
		return errors.New("header does not match the primary GPT's")
	}
	if p.EntriesCRC != b.EntriesCRC || len(pp) != len(bp) {
		return errors.New("partition entries differ from the primary GPT's")
	}
	return nil
}

func (im *Image) checkRegion(off int64, want []byte) error {
	got := make([]byte, len(want))
	if _, err := im.f.ReadAt(got, off); err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				return fmt.Errorf("byte %d is %#02x, want %#02x", off+int64(i), got[i], want[i])
			}
		}
	}
	return nil
}

// checkPartition hashes the filesystem at the start of a partition (its size from the erofs
// superblock, or from the manifest for the root), compares the digest with the partition's GUID
// (and the manifest's digest for the root) and checks that the rest of the partition is zero.
func (im *Image) checkPartition(p gptPart, root *abi.Root) error {
	off, size := p.offset(), p.size()
	if off+size > im.size {
		return fmt.Errorf("missing: the partition ends at byte %d, the file has %d", off+size, im.size)
	}
	fsSize, err := erofsSize(io.NewSectionReader(im.f, off, size))
	if err != nil {
		return err
	}
	if root != nil && root.Size != fsSize {
		return fmt.Errorf("filesystem is %d bytes, the manifest says %d", fsSize, root.Size)
	}
	if fsSize > size {
		return fmt.Errorf("filesystem is %d bytes, larger than the %d-byte partition", fsSize, size)
	}
	sum, _, err := digest(sha256.New(), io.NewSectionReader(im.f, off, fsSize))
	if err != nil {
		return err
	}
	if !bytes.Equal(sum[:16], p.GUID[:]) {
		return fmt.Errorf("filesystem sha256 %x does not match the partition GUID %x", sum[:16], p.GUID)
	}
	if root != nil && hex.EncodeToString(sum) != root.SHA256 {
		return fmt.Errorf("filesystem sha256 %x, the manifest says %s", sum, root.SHA256)
	}
	used := fsSize
	if root != nil && root.Verity != nil {
		// The hash area (checked on its own by checkVerity) sits between the padding regions.
		v := root.Verity
		area := verityAreaSize(v.DataBlocks)
		if v.HashOffset < fsSize || v.HashOffset+area > size {
			return fmt.Errorf("verity hash area [%d, %d) is outside the space after the %d-byte filesystem in the %d-byte partition", v.HashOffset, v.HashOffset+area, fsSize, size)
		}
		if err := im.checkZero(off+fsSize, off+v.HashOffset); err != nil {
			return fmt.Errorf("padding before the verity hash area: %w", err)
		}
		used = v.HashOffset + area
	}
	if err := im.checkZero(off+used, off+size); err != nil {
		return fmt.Errorf("padding after the filesystem: %w", err)
	}
	return nil
}

// checkGaps checks that the space between the GPT copies and the partitions is zero.
func (im *Image) checkGaps() error {
	type gap struct{ from, to int64 }
	backupEntries := int64(im.sectors-1-entrySectors) * sectorSize
	gaps := []gap{
		{(2 + entrySectors) * sectorSize, im.boot.offset()},
		{im.boot.offset() + im.boot.size(), im.root.offset()},
		{im.root.offset() + im.root.size(), backupEntries},
	}
	for _, g := range gaps {
		if g.from > g.to {
			return fmt.Errorf("regions overlap at byte %d", g.to)
		}
		if err := im.checkZero(g.from, min(g.to, im.size)); err != nil {
			return err
		}
	}
	return nil
}

func (im *Image) checkZero(from, to int64) error {
	buf := make([]byte, 64<<10)
	for off := from; off < to; {
		n := min(int64(len(buf)), to-off)
		if _, err := im.f.ReadAt(buf[:n], off); err != nil {
			return err
		}
		for i, c := range buf[:n] {
			if c != 0 {
				return fmt.Errorf("byte %d is %#02x, want zero", off+int64(i), c)
			}
		}
		off += n
	}
	return nil
}

// erofsSize reads an erofs superblock (at byte 1024) and returns blocks × block size.
func erofsSize(r io.ReaderAt) (int64, error) {
	sb := make([]byte, 64)
	if _, err := r.ReadAt(sb, 1024); err != nil {
		return 0, fmt.Errorf("reading the erofs superblock: %w", err)
	}
	if m := binary.LittleEndian.Uint32(sb[0:]); m != 0xE0F5E1E2 {
		return 0, fmt.Errorf("no erofs superblock (magic %#08x)", m)
	}
	bits := sb[12]
	if bits < 9 || bits > 16 {
		return 0, fmt.Errorf("erofs block size 2^%d is out of range", bits)
	}
	return int64(binary.LittleEndian.Uint32(sb[36:])) << bits, nil
}

func unixTime(epoch int64) time.Time { return time.Unix(epoch, 0).UTC() }
