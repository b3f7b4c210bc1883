package vmm

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/image"
	"github.com/ukernel-dev/ukernel/internal/project"
)

// BootInitrdFile is the name of the initramfs the backends boot, in the boot cache: the
// image's, with its base archive decompressed (image.BootInitrd).
const BootInitrdFile = "initrd.cpio"

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

// PrepareBoot opens the image at path and readies it for booting. An image file not seen before
// (by path, size, mtime, ctime and inode) is verified in full and hashed once; the result is
// remembered under cacheDir, so a repeated run reads only the manifest.
func PrepareBoot(path, cacheDir string) (*Boot, error) {
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
	dir := filepath.Join(cacheDir, "boot", digest)
	b.Kernel, b.Initrd = filepath.Join(dir, image.KernelFile), filepath.Join(dir, BootInitrdFile)
	if fileExists(b.Kernel) && fileExists(b.Initrd) {
		cache.MarkUsed(dir)
	} else {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("boot cache: %w", err)
		}
		var initrd string
		if b.Kernel, initrd, err = im.ExtractBoot(dir); err != nil {
			return nil, fmt.Errorf("image %s: %w", abs, err)
		}
		data, err := os.ReadFile(initrd)
		if err != nil {
			return nil, fmt.Errorf("boot cache: %w", err)
		}
		if data, err = image.BootInitrd(data, b.Manifest); err != nil {
			return nil, fmt.Errorf("image %s: %w", abs, err)
		}
		if err := project.WriteFileAtomic(b.Initrd, data, 0o644); err != nil {
			return nil, fmt.Errorf("boot cache: %w", err)
		}
	}
	if b.Vmlinux, err = Vmlinux(b.Kernel, b.KernelDigest, filepath.Join(cacheDir, "vmlinux")); err != nil {
		return nil, fmt.Errorf("image %s: %w", abs, err)
	}
	return b, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// verifiedDigest returns the image's sha256, verifying the whole image first unless this exact
// file was verified before.
func verifiedDigest(im *image.Image, cacheDir string) (string, error) {
	fi, err := os.Stat(im.Path())
	if err != nil {
		return "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", fmt.Errorf("image %s: no file identity", im.Path())
	}
	key := fmt.Sprintf("%s\x00%d\x00%d\x00%d\x00%d\x00%d", im.Path(), fi.Size(), st.Dev, st.Ino, st.Mtim.Nano(), st.Ctim.Nano())
	cachePath := filepath.Join(cacheDir, "verified", shortHash(key)+".json")
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
		_ = project.WriteFileAtomic(cachePath, b, 0o644)
	}
	return digest, nil
}
