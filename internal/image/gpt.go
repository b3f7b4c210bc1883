package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"unicode/utf16"
)

// The disk is a raw GPT disk with 512-byte sectors and 1 MiB alignment. The table is written by
// hand (about 150 lines) rather than with go-diskfs: the same code then writes and checks it, every
// byte is known (Verify compares the protective MBR and the unused header bytes exactly), and no
// library default (random GUIDs, time) can slip into the output.
const (
	sectorSize    = 512
	align         = 1 << 20 // partitions start and end on 1 MiB boundaries
	numEntries    = 128
	entrySize     = 128
	entriesBytes  = numEntries * entrySize
	entrySectors  = entriesBytes / sectorSize // 32
	gptHeaderSize = 92
	gptRevision   = 0x00010000
	gptSignature  = "EFI PART"
	// maxLBA bounds the LBAs a header may name, so that a partition's byte offset and size
	// (LBA × 512) and their sum fit an int64: a crafted table otherwise passes the bounds checks
	// by overflow.
	maxLBA = 1 << 52
)

// linuxFSType is the "Linux filesystem data" partition type 0FC63DAF-8483-4772-8E79-3D69D8477DE4
// in its on-disk (mixed-endian) form. Both partitions use it: the guest finds them by name.
var linuxFSType = [16]byte{0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4}

// gptPart is one partition entry.
type gptPart struct {
	Type     [16]byte
	GUID     [16]byte
	FirstLBA uint64
	LastLBA  uint64 // inclusive
	Name     string
}

func (p gptPart) offset() int64 { return int64(p.FirstLBA) * sectorSize }
func (p gptPart) size() int64   { return int64(p.LastLBA-p.FirstLBA+1) * sectorSize }

// gptHeader is the decoded part of a GPT header that the image relies on.
type gptHeader struct {
	MyLBA, AltLBA uint64
	FirstUsable   uint64
	LastUsable    uint64
	DiskGUID      [16]byte
	EntriesLBA    uint64
	NumEntries    uint32
	EntrySize     uint32
	EntriesCRC    uint32
	HeaderCRC     uint32
}

// protectiveMBR returns LBA 0 for a disk of the given number of sectors.
func protectiveMBR(sectors uint64) []byte {
	b := make([]byte, sectorSize)
	e := b[446:462]
	e[1], e[2], e[3] = 0x00, 0x02, 0x00 // CHS of LBA 1
	e[4] = 0xEE                         // GPT protective
	e[5], e[6], e[7] = 0xFF, 0xFF, 0xFF
	binary.LittleEndian.PutUint32(e[8:], 1)
	size := sectors - 1
	if size > 0xFFFFFFFF {
		size = 0xFFFFFFFF
	}
	binary.LittleEndian.PutUint32(e[12:], uint32(size))
	b[510], b[511] = 0x55, 0xAA
	return b
}

// encodeEntries returns the 16 KiB partition entry array.
func encodeEntries(parts []gptPart) []byte {
	b := make([]byte, entriesBytes)
	for i, p := range parts {
		e := b[i*entrySize:]
		copy(e[0:16], p.Type[:])
		copy(e[16:32], p.GUID[:])
		binary.LittleEndian.PutUint64(e[32:], p.FirstLBA)
		binary.LittleEndian.PutUint64(e[40:], p.LastLBA)
		for j, u := range utf16.Encode([]rune(p.Name)) {
			binary.LittleEndian.PutUint16(e[56+2*j:], u)
		}
	}
	return b
}

// encodeHeader returns one header sector. primary selects the copy at LBA 1 (entries at LBA 2)
// or the backup at the last LBA (entries just before it).
func encodeHeader(sectors uint64, diskGUID [16]byte, entries []byte, primary bool) []byte {
	last := sectors - 1
	my, alt, entriesLBA := uint64(1), last, uint64(2)
	if !primary {
		my, alt, entriesLBA = last, 1, last-entrySectors
	}
	b := make([]byte, sectorSize)
	copy(b, gptSignature)
	binary.LittleEndian.PutUint32(b[8:], gptRevision)
	binary.LittleEndian.PutUint32(b[12:], gptHeaderSize)
	binary.LittleEndian.PutUint64(b[24:], my)
	binary.LittleEndian.PutUint64(b[32:], alt)
	binary.LittleEndian.PutUint64(b[40:], 2+entrySectors)
	binary.LittleEndian.PutUint64(b[48:], last-1-entrySectors)
	copy(b[56:72], diskGUID[:])
	binary.LittleEndian.PutUint64(b[72:], entriesLBA)
	binary.LittleEndian.PutUint32(b[80:], numEntries)
	binary.LittleEndian.PutUint32(b[84:], entrySize)
	binary.LittleEndian.PutUint32(b[88:], crc32.ChecksumIEEE(entries))
	binary.LittleEndian.PutUint32(b[16:], crc32.ChecksumIEEE(b[:gptHeaderSize]))
	return b
}

// decodeHeader checks one header sector: signature, revision, size, CRC and zero tail.
func decodeHeader(b []byte) (gptHeader, error) {
	var h gptHeader
	if len(b) != sectorSize {
		return h, fmt.Errorf("header sector is %d bytes, want %d", len(b), sectorSize)
	}
	if string(b[:8]) != gptSignature {
		return h, fmt.Errorf("signature %q, want %q", b[:8], gptSignature)
	}
	if r := binary.LittleEndian.Uint32(b[8:]); r != gptRevision {
		return h, fmt.Errorf("revision %#x, want %#x", r, gptRevision)
	}
	if s := binary.LittleEndian.Uint32(b[12:]); s != gptHeaderSize {
		return h, fmt.Errorf("header size %d, want %d", s, gptHeaderSize)
	}
	h.HeaderCRC = binary.LittleEndian.Uint32(b[16:])
	tmp := bytes.Clone(b[:gptHeaderSize])
	binary.LittleEndian.PutUint32(tmp[16:], 0)
	if c := crc32.ChecksumIEEE(tmp); c != h.HeaderCRC {
		return h, fmt.Errorf("header CRC32 %08x, computed %08x", h.HeaderCRC, c)
	}
	if binary.LittleEndian.Uint32(b[20:]) != 0 || !allZero(b[gptHeaderSize:]) {
		return h, errors.New("reserved header bytes are not zero")
	}
	h.MyLBA = binary.LittleEndian.Uint64(b[24:])
	h.AltLBA = binary.LittleEndian.Uint64(b[32:])
	h.FirstUsable = binary.LittleEndian.Uint64(b[40:])
	h.LastUsable = binary.LittleEndian.Uint64(b[48:])
	copy(h.DiskGUID[:], b[56:72])
	h.EntriesLBA = binary.LittleEndian.Uint64(b[72:])
	h.NumEntries = binary.LittleEndian.Uint32(b[80:])
	h.EntrySize = binary.LittleEndian.Uint32(b[84:])
	h.EntriesCRC = binary.LittleEndian.Uint32(b[88:])
	if h.NumEntries != numEntries || h.EntrySize != entrySize {
		return h, fmt.Errorf("%d entries of %d bytes, want %d of %d", h.NumEntries, h.EntrySize, numEntries, entrySize)
	}
	if max(h.MyLBA, h.AltLBA, h.LastUsable, h.EntriesLBA) > maxLBA {
		return h, fmt.Errorf("an LBA beyond %d (a %d EiB disk): not a real disk", uint64(maxLBA), (maxLBA*sectorSize)>>60)
	}
	return h, nil
}

// decodeEntries checks the entry array against the header's CRC and returns the used entries.
func decodeEntries(h gptHeader, b []byte) ([]gptPart, error) {
	if c := crc32.ChecksumIEEE(b); c != h.EntriesCRC {
		return nil, fmt.Errorf("partition entries CRC32 %08x, header says %08x", c, h.EntriesCRC)
	}
	var parts []gptPart
	for i := 0; i < numEntries; i++ {
		e := b[i*entrySize : (i+1)*entrySize]
		var p gptPart
		copy(p.Type[:], e[0:16])
		if p.Type == ([16]byte{}) {
			continue
		}
		copy(p.GUID[:], e[16:32])
		p.FirstLBA = binary.LittleEndian.Uint64(e[32:])
		p.LastLBA = binary.LittleEndian.Uint64(e[40:])
		u := make([]uint16, 0, 36)
		for j := 56; j < entrySize; j += 2 {
			c := binary.LittleEndian.Uint16(e[j:])
			if c == 0 {
				break
			}
			u = append(u, c)
		}
		p.Name = string(utf16.Decode(u))
		if p.LastLBA < p.FirstLBA || p.FirstLBA < h.FirstUsable || p.LastLBA > h.LastUsable {
			return nil, fmt.Errorf("partition %d (%q) spans LBA %d-%d outside the usable %d-%d", i+1, p.Name, p.FirstLBA, p.LastLBA, h.FirstUsable, h.LastUsable)
		}
		parts = append(parts, p)
	}
	return parts, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func alignUp(n int64) int64 { return (n + align - 1) / align * align }
