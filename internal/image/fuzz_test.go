package image

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	erofs "github.com/erofs/go-erofs"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// withCRCs is a GPT header sector made of hdr (zero-padded) and the 16 KiB entry array made of
// entries, with both CRC32s set, so that fuzzed fields reach the checks after the checksums.
func withCRCs(hdr, entries []byte) (sector, eb []byte) {
	sector, eb = make([]byte, sectorSize), make([]byte, entriesBytes)
	copy(sector, hdr)
	copy(eb, entries)
	binary.LittleEndian.PutUint32(sector[88:], crc32.ChecksumIEEE(eb))
	binary.LittleEndian.PutUint32(sector[16:], 0)
	binary.LittleEndian.PutUint32(sector[16:], crc32.ChecksumIEEE(sector[:gptHeaderSize]))
	return sector, eb
}

// FuzzDecodeGPT: a header and entry array either fail or give partitions inside the usable
// range whose byte offsets and sizes are positive and do not overflow, and that encode back to
// an array decoding to the same partitions.
func FuzzDecodeGPT(f *testing.F) {
	parts := []gptPart{
		{Type: linuxFSType, GUID: [16]byte{1}, FirstLBA: 2048, LastLBA: 4095, Name: abi.BootLabel},
		{Type: linuxFSType, GUID: [16]byte{2}, FirstLBA: 4096, LastLBA: 8191, Name: abi.RootLabel},
	}
	entries := encodeEntries(parts)
	f.Add(encodeHeader(10240, [16]byte{9}, entries, true)[:gptHeaderSize], entries[:2*entrySize])
	f.Add(encodeHeader(10240, [16]byte{9}, entries, false)[:gptHeaderSize], entries[:entrySize])
	f.Add([]byte("EFI PART"), []byte{})
	f.Fuzz(func(t *testing.T, hdr, entries []byte) {
		sector, eb := withCRCs(hdr, entries)
		h, err := decodeHeader(sector)
		if err != nil {
			return
		}
		if h.NumEntries != numEntries || h.EntrySize != entrySize {
			t.Fatalf("accepted %d entries of %d bytes", h.NumEntries, h.EntrySize)
		}
		parts, err := decodeEntries(h, eb)
		if err != nil {
			return
		}
		for _, p := range parts {
			if p.FirstLBA < h.FirstUsable || p.LastLBA < p.FirstLBA || p.LastLBA > h.LastUsable {
				t.Fatalf("partition %+v outside %d-%d", p, h.FirstUsable, h.LastUsable)
			}
			if p.offset() < 0 || p.size() <= 0 || p.offset() > math.MaxInt64-p.size() {
				t.Fatalf("partition %+v: byte offset %d and size %d overflow", p, p.offset(), p.size())
			}
		}
		again := encodeEntries(parts)
		h.EntriesCRC = crc32.ChecksumIEEE(again)
		got, err := decodeEntries(h, again)
		if err != nil || !reflect.DeepEqual(got, parts) {
			t.Fatalf("re-encoded entries decode to %+v, %v; want %+v", got, err, parts)
		}
	})
}

// FuzzErofsBoot reads any bytes as a boot partition the way an image's reader does (the erofs
// library, then the files), and erofsSize the way Verify does: errors, never a panic or a hang.
func FuzzErofsBoot(f *testing.F) {
	dir := f.TempDir()
	kernel, boot := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "boot.erofs")
	if err := os.WriteFile(kernel, []byte("kernel"), 0o644); err != nil {
		f.Fatal(err)
	}
	if err := buildBootFS(context.Background(), boot, dir, kernel, []byte("070701"), []byte(`{"name":"x"}`), testEpoch); err != nil {
		f.Fatal(err)
	}
	f.Add(readFile(f, boot))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		if n, err := erofsSize(r); err == nil && (n < 0 || n > math.MaxUint32<<16) {
			t.Fatalf("erofsSize %d", n)
		}
		fsys, err := erofs.Open(r)
		if err != nil {
			return
		}
		fs.ReadFile(fsys, ManifestFile)
		// Every entry is read, a bounded amount each: a crafted file may claim any size. The
		// walk is bounded too: a directory may list itself (the saved input 04b276b2 walked
		// forever); ukernel itself only reads named files at the root, never walks it.
		entries := 0
		fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if entries++; entries > 1000 || strings.Count(p, "/") > 16 {
				return fs.SkipAll
			}
			if err != nil || d.IsDir() {
				return nil
			}
			if f, err := fsys.Open(p); err == nil {
				io.Copy(io.Discard, io.LimitReader(f, 1<<20))
				f.Close()
			}
			return nil
		})
	})
}

// FuzzBootInitrd: splitting an initrd into the manifest segment and the base archive the
// manifest records either fails or keeps the segment as is, and an uncompressed base whole.
func FuzzBootInitrd(f *testing.F) {
	seg := []byte("070701seg")
	f.Add(append(bytes.Clone(seg), "070701base"...), int64(10))
	f.Add(append(bytes.Clone(seg), 0x02, 0x21, 0x4c, 0x18, 0, 0, 0, 0), int64(8))
	f.Fuzz(func(t *testing.T, initrd []byte, size int64) {
		m := abi.Manifest{Artefacts: []abi.Artefact{{Name: ArtefactInitramfs, Size: size}}}
		out, err := BootInitrd(initrd, m)
		if err != nil {
			return
		}
		if size <= 0 || size > int64(len(initrd)) {
			t.Fatalf("accepted a base of %d bytes in %d", size, len(initrd))
		}
		segment := initrd[:int64(len(initrd))-size]
		if !bytes.HasPrefix(out, segment) {
			t.Fatal("the manifest segment changed")
		}
		if bytes.HasPrefix(initrd[len(segment):], []byte("070701")) && !bytes.Equal(out, initrd) {
			t.Fatal("an uncompressed base was changed")
		}
	})
}

func readFile(t testing.TB, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDecodeHeaderBoundsLBAs: a header whose usable range ends beyond any real disk (found by
// FuzzDecodeGPT: a partition's byte size overflowed to a negative number, passing the check
// that it fits the file) is refused.
func TestDecodeHeaderBoundsLBAs(t *testing.T) {
	entries := encodeEntries([]gptPart{{Type: linuxFSType, FirstLBA: 2048, LastLBA: 1<<60 + 2047, Name: abi.BootLabel}})
	hdr := encodeHeader(10240, [16]byte{9}, entries, true)
	binary.LittleEndian.PutUint64(hdr[48:], math.MaxUint64) // last usable LBA
	sector, _ := withCRCs(hdr[:gptHeaderSize], entries)
	if _, err := decodeHeader(sector); err == nil || !strings.Contains(err.Error(), "not a real disk") {
		t.Fatalf("decodeHeader: %v, want an error for the LBA", err)
	}
	binary.LittleEndian.PutUint64(hdr[48:], maxLBA)
	sector, _ = withCRCs(hdr[:gptHeaderSize], entries)
	if _, err := decodeHeader(sector); err != nil {
		t.Fatalf("the largest LBA allowed: %v", err)
	}
}
