package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// dm-verity parameters of a read-only root: format version 1 (the salt is hashed before each
// block), SHA-256, 4 KiB data and hash blocks, no veritysetup superblock (the manifest carries
// every parameter). The hash area starts right after the filesystem inside the root partition.
const (
	VerityBlockSize = 4096
	VerityAlgorithm = "sha256"
	veritySaltTag   = "ukernel dm-verity salt v1\x00"
)

// verityTree is a computed hash tree: the hash blocks as they go on disk (top level first)
// and the parameters the manifest records.
type verityTree struct {
	params abi.Verity
	area   []byte
}

// computeVerity builds the dm-verity hash tree of the size bytes read from r (a whole number of
// blocks). The salt is derived from the data's SHA-256 so the same filesystem always gets the
// same tree. hashOffset is where the caller places the hash area, in bytes from the start of
// the partition.
func computeVerity(ctx context.Context, r io.Reader, size int64, dataSum []byte, hashOffset int64) (*verityTree, error) {
	if size <= 0 || size%VerityBlockSize != 0 {
		return nil, fmt.Errorf("verity: the filesystem is %d bytes, want a positive multiple of %d", size, VerityBlockSize)
	}
	if hashOffset%VerityBlockSize != 0 {
		return nil, fmt.Errorf("verity: hash offset %d is not a multiple of %d", hashOffset, VerityBlockSize)
	}
	st := sha256.Sum256(append([]byte(veritySaltTag), dataSum...))
	salt := st[:]
	h := sha256.New()
	sum := func(b []byte) []byte {
		h.Reset()
		h.Write(salt)
		h.Write(b)
		return h.Sum(nil)
	}

	// Level 0: one digest per data block.
	blocks := size / VerityBlockSize
	digests := make([]byte, 0, blocks*sha256.Size)
	buf := make([]byte, VerityBlockSize)
	for i := int64(0); i < blocks; i++ {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, fmt.Errorf("verity: reading data block %d: %w", i, err)
		}
		digests = append(digests, sum(buf)...)
	}
	// Each level packs the digests below it into zero-padded hash blocks, until one digest (the
	// root hash) is left. With one data block there is no level at all, as in the kernel.
	var levels [][]byte
	for len(digests) > sha256.Size {
		level := make([]byte, (len(digests)+VerityBlockSize-1)/VerityBlockSize*VerityBlockSize)
		copy(level, digests)
		levels = append(levels, level)
		digests = digests[:0:0]
		for off := 0; off < len(level); off += VerityBlockSize {
			digests = append(digests, sum(level[off:off+VerityBlockSize])...)
		}
	}
	var area []byte
	for i := len(levels) - 1; i >= 0; i-- { // dm-verity stores the top level first
		area = append(area, levels[i]...)
	}
	return &verityTree{
		params: abi.Verity{
			RootHash:      hex.EncodeToString(digests),
			Salt:          hex.EncodeToString(salt),
			DataBlocks:    blocks,
			HashOffset:    hashOffset,
			BlockSize:     VerityBlockSize,
			HashAlgorithm: VerityAlgorithm,
		},
		area: area,
	}, nil
}

// verityFile computes the hash tree of the filesystem image at path, placed right after it.
func verityFile(ctx context.Context, path string, size int64, sum []byte) (*verityTree, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return computeVerity(ctx, f, size, sum, size)
}

// verityAreaSize returns the size of the hash area for dataBlocks blocks.
func verityAreaSize(dataBlocks int64) int64 {
	per := int64(VerityBlockSize / sha256.Size)
	var n int64
	for b := dataBlocks; b > 1; {
		b = (b + per - 1) / per
		n += b
	}
	return n * VerityBlockSize
}

// checkVerity recomputes the hash tree of the root filesystem at partition offset off and
// compares it with the parameters in the manifest and the hash area on disk.
func (im *Image) checkVerity(off, partSize int64, root abi.Root) error {
	v := root.Verity
	if v.BlockSize != VerityBlockSize || v.HashAlgorithm != VerityAlgorithm {
		return fmt.Errorf("unsupported parameters: block size %d, algorithm %q (want %d, %q)", v.BlockSize, v.HashAlgorithm, VerityBlockSize, VerityAlgorithm)
	}
	if v.DataBlocks*VerityBlockSize != root.Size {
		return fmt.Errorf("%d data blocks of %d bytes, but the filesystem is %d bytes", v.DataBlocks, VerityBlockSize, root.Size)
	}
	areaSize := verityAreaSize(v.DataBlocks)
	if v.HashOffset < root.Size || v.HashOffset+areaSize > partSize {
		return fmt.Errorf("hash area [%d, %d) is not between the filesystem's end (%d) and the partition's (%d)", v.HashOffset, v.HashOffset+areaSize, root.Size, partSize)
	}
	sum, err := hex.DecodeString(root.SHA256)
	if err != nil {
		return fmt.Errorf("manifest root sha256 %q: %w", root.SHA256, err)
	}
	t, err := computeVerity(context.Background(), io.NewSectionReader(im.f, off, root.Size), root.Size, sum, v.HashOffset)
	if err != nil {
		return err
	}
	if t.params.RootHash != v.RootHash {
		return fmt.Errorf("the filesystem's recomputed root hash is %s, the manifest says %s", t.params.RootHash, v.RootHash)
	}
	if t.params != *v {
		return fmt.Errorf("the manifest's parameters %+v differ from the recomputed %+v", *v, t.params)
	}
	got := make([]byte, len(t.area))
	if _, err := im.f.ReadAt(got, off+v.HashOffset); err != nil {
		return fmt.Errorf("reading the hash area: %w", err)
	}
	if !bytes.Equal(got, t.area) {
		for i := range got {
			if got[i] != t.area[i] {
				return fmt.Errorf("hash area byte %d (partition byte %d) differs from the recomputed tree", i, v.HashOffset+int64(i))
			}
		}
	}
	return nil
}
