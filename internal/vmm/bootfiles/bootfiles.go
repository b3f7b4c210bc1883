// Package bootfiles readies an image for booting: it verifies the image once (remembered by its
// file identity), extracts its kernel and initramfs into the cache keyed by the image's digest,
// and decompresses the kernel into the ELF vmlinux the backends boot; the cached files are
// sealed, so only the ones made are booted.
package bootfiles

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/image"
)

// InitrdFile is the name of the initramfs the backends boot, in the boot cache: the
// image's, with its base archive decompressed (image.BootInitrd).
const InitrdFile = "initrd.cpio"

// Boot is what a backend boots from an image: the image itself, its kernel and initramfs
// extracted into a cache keyed by the image's digest, and its manifest.
type Boot struct {
	Image        string // absolute path
	ImageDigest  string // sha256 of the whole image file
	Kernel       string // the image's bzImage
	KernelDigest string
	Vmlinux      string // the same kernel as an ELF, which the backends boot (see Vmlinux)
	Initrd       string
	Manifest     abi.Manifest
}

// Prepare opens the image at path and readies it for booting. An image file not seen before
// (by path, size, mtime, ctime and inode) is verified in full and hashed once; the result is
// remembered under cacheDir, so a repeated run reads only the manifest. The boot files extracted
// from it are sealed (cache.Seal): a run boots them only while they are the ones made, the
// kernel being the one the manifest names by digest.
func Prepare(path, cacheDir string) (*Boot, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	im, err := image.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", abs, err)
	}
	defer im.Close()
	digest, err := verifiedDigest(im, cacheDir)
	if err != nil {
		return nil, err
	}
	b := &Boot{Image: abs, ImageDigest: digest, Manifest: im.Manifest()}
	if err := abi.Compatible(b.Manifest.ABI); err != nil {
		return nil, fmt.Errorf("image %s: %w", abs, err)
	}
	for _, a := range b.Manifest.Artefacts {
		if a.Name == image.ArtefactKernel {
			b.KernelDigest = a.SHA256
		}
	}
	dir := cache.Boot.In(cacheDir, digest)
	b.Kernel, b.Initrd = filepath.Join(dir, image.KernelFile), filepath.Join(dir, InitrdFile)
	if err := checkBootFiles(im, b); err == nil {
		cache.MarkUsed(dir)
	} else if err := extractBootFiles(im, b, dir); err != nil {
		return nil, fmt.Errorf("image %s: %w", abs, err)
	}
	if b.Vmlinux, err = Vmlinux(b.Kernel, b.KernelDigest, cache.Vmlinux.In(cacheDir)); err != nil {
		return nil, fmt.Errorf("image %s: %w", abs, err)
	}
	return b, nil
}

// checkBootFiles tells whether the boot cache holds the files made for this image: the kernel
// the manifest names, by digest, and the initramfs as it was made from the image, which starts
// with the image's manifest (so a boot directory of another image, which a changed record in
// verified/ would name, is not taken).
func checkBootFiles(im *image.Image, b *Boot) error {
	if b.KernelDigest == "" {
		return fmt.Errorf("the manifest names no %s digest", image.ArtefactKernel)
	}
	if _, err := cache.CheckSealed(b.Kernel, b.KernelDigest); err != nil {
		return err
	}
	if _, err := cache.CheckSealed(b.Initrd, ""); err != nil {
		return err
	}
	seg, err := im.ManifestSegment()
	if err != nil {
		return err
	}
	f, err := os.Open(b.Initrd)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, len(seg))
	if _, err := io.ReadFull(f, head); err != nil || !bytes.Equal(head, seg) {
		return fmt.Errorf("%s was made for another image", b.Initrd)
	}
	return nil
}

// extractBootFiles (re)makes the boot files of a verified image and seals them.
func extractBootFiles(im *image.Image, b *Boot, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("boot cache: %w", err)
	}
	kernel, initrd, err := im.ExtractBoot(dir)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(initrd)
	if err != nil {
		return fmt.Errorf("boot cache: %w", err)
	}
	// Only the initramfs made from it is booted.
	os.Remove(initrd)
	if data, err = image.BootInitrd(data, b.Manifest); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(b.Initrd, data, 0o644); err != nil {
		return fmt.Errorf("boot cache: %w", err)
	}
	sum := sha256.Sum256(data)
	if err := cache.Seal(b.Initrd, hex.EncodeToString(sum[:])); err != nil {
		return fmt.Errorf("boot cache: %w", err)
	}
	// ExtractBoot checked the kernel against the manifest.
	if err := cache.Seal(kernel, b.KernelDigest); err != nil {
		return fmt.Errorf("boot cache: %w", err)
	}
	return nil
}

// verifiedDigest returns the image's sha256, verifying the whole image first unless this exact
// file was verified before.
func verifiedDigest(im *image.Image, cacheDir string) (string, error) {
	id, err := cache.StatID(im.Path())
	if err != nil {
		return "", fmt.Errorf("image %s: %w", im.Path(), err)
	}
	key := fmt.Sprintf("%s\x00%d\x00%d\x00%d\x00%d\x00%d", im.Path(), id.Size, id.Dev, id.Ino, id.Mtime, id.Ctime)
	cachePath := cache.Verified.In(cacheDir, cache.EntryName(key)+".json")
	type entry struct {
		Key    string `json:"key"`
		SHA256 string `json:"sha256"`
	}
	var e entry
	if b, err := os.ReadFile(cachePath); err == nil && json.Unmarshal(b, &e) == nil && e.Key == key && e.SHA256 != "" {
		cache.MarkUsed(cachePath)
		return e.SHA256, nil
	}
	if err := im.Verify().Err(); err != nil {
		return "", fmt.Errorf("image %s: %w", im.Path(), err)
	}
	digest, err := im.SHA256()
	if err != nil {
		return "", err
	}
	if b, err := json.Marshal(entry{Key: key, SHA256: digest}); err == nil {
		// A failed cache write only costs a second verification next time.
		_ = atomicfile.WriteFile(cachePath, b, 0o644)
	}
	return digest, nil
}
