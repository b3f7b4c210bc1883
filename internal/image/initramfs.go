package image

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pierrec/lz4/v4"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// The initramfs is two concatenated newc archives, which the kernel unpacks in turn:
//
//  1. the base: /init, the modules, the mount points and /dev/console. It is recorded in the
//     manifest as the "initramfs" artefact.
//  2. the manifest segment: /ukernel/manifest.json alone. It cannot be part of the base, since the
//     manifest records the base's digest; it is rebuilt from manifest.json to verify it.
//
// Both are uncompressed: the kernel unpacks them without a decompressor, and the boot partition's
// size is dominated by the kernel anyway.

// initramfsDirs are the empty directories PID 1 mounts on before anything else exists.
var initramfsDirs = []string{"dev", "mnt", "proc", "run", "sys", "tmp", "ukernel"}

// buildInitramfs returns the base archive.
func buildInitramfs(initPath, modulesDir, release string, modules []string, epoch int64) ([]byte, error) {
	initBin, err := os.ReadFile(initPath)
	if err != nil {
		return nil, fmt.Errorf("reading the guest init: %w", err)
	}
	dirs := map[string]bool{}
	for _, d := range initramfsDirs {
		dirs[d] = true
	}
	files := map[string][]byte{}
	for _, rel := range modules {
		b, err := os.ReadFile(filepath.Join(modulesDir, filepath.FromSlash(rel)))
		if err != nil {
			return nil, fmt.Errorf("reading kernel module: %w", err)
		}
		p := path.Join("lib/modules", release, rel)
		files[p] = stripModuleSignature(b)
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var recs []cpio.Record
	for d := range dirs {
		recs = append(recs, cpio.Directory(d, 0o755))
	}
	for p, b := range files {
		recs = append(recs, cpio.StaticRecord(b, cpio.Info{Name: p, Mode: cpio.S_IFREG | 0o644}))
	}
	recs = append(recs,
		cpio.StaticRecord(initBin, cpio.Info{Name: "init", Mode: cpio.S_IFREG | 0o755}),
		// The kernel opens /dev/console for PID 1's stdio before devtmpfs is mounted.
		cpio.CharDev("dev/console", 0o600, 5, 1),
	)
	// Sorted by path: a directory sorts before everything in it.
	sort.Slice(recs, func(i, j int) bool { return recs[i].Name < recs[j].Name })
	return writeCpio(recs, 1, epoch)
}

// manifestSegment returns the archive that carries the manifest into the initramfs. It is
// unpacked first, so it carries the manifest's directory too.
func manifestSegment(manifest []byte, epoch int64) ([]byte, error) {
	name := strings.TrimPrefix(abi.InitramfsManifest, "/")
	return writeCpio([]cpio.Record{
		cpio.Directory(path.Dir(name), 0o755),
		cpio.StaticRecord(manifest, cpio.Info{Name: name, Mode: cpio.S_IFREG | 0o644}),
	}, 1<<20, epoch)
}

// writeCpio writes records with fixed owners and times and sequential inode numbers from ino.
func writeCpio(recs []cpio.Record, ino uint64, epoch int64) ([]byte, error) {
	cpio.MakeAllReproducible(recs)
	var buf bytes.Buffer
	w := cpio.Newc.Writer(&buf)
	for i := range recs {
		recs[i].Ino = ino + uint64(i)
		recs[i].MTime = uint64(epoch)
		recs[i].NLink = 1
		if recs[i].Mode&cpio.S_IFMT == cpio.S_IFDIR {
			recs[i].NLink = 2
		}
	}
	if err := cpio.WriteRecords(w, recs); err != nil {
		return nil, fmt.Errorf("writing the initramfs: %w", err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return nil, fmt.Errorf("writing the initramfs: %w", err)
	}
	return buf.Bytes(), nil
}

// compressLZ4Legacy compresses an initramfs archive in the legacy LZ4 format (`lz4 -l`), the
// one the kernel's initramfs unpacker reads. LZ4 rather than gzip (several times slower to
// unpack under software emulation): it halves the archive (init and modules), which keeps the
// image under 40 MB. The backends boot it decompressed (BootInitrd).
func compressLZ4Legacy(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	w := lz4.NewWriter(&buf)
	if err := w.Apply(lz4.LegacyOption(true), lz4.CompressionLevelOption(lz4.Level9)); err != nil {
		return nil, err
	}
	if _, err := w.Write(data); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// BootInitrd returns the initramfs initrd (as stored in an image whose manifest is m) with its
// base archive decompressed (an uncompressed one is left as it is): the same archives, which the kernel unpacks 30-40 ms faster under
// software emulation than the LZ4 one (measured on a 2.2 MB base). The backends boot this form,
// made once per image on the host, as they boot the ELF vmlinux rather than the bzImage.
func BootInitrd(initrd []byte, m abi.Manifest) ([]byte, error) {
	var a *abi.Artefact
	for i := range m.Artefacts {
		if m.Artefacts[i].Name == ArtefactInitramfs {
			a = &m.Artefacts[i]
		}
	}
	if a == nil || a.Size <= 0 || a.Size > int64(len(initrd)) {
		return nil, fmt.Errorf("%s: the manifest records no base archive that fits it", InitrdFile)
	}
	seg, base := initrd[:int64(len(initrd))-a.Size], initrd[int64(len(initrd))-a.Size:]
	if bytes.HasPrefix(base, []byte("070701")) {
		return initrd, nil // an uncompressed base (newc) is booted as it is
	}
	raw, err := io.ReadAll(lz4.NewReader(bytes.NewReader(base)))
	if err != nil {
		return nil, fmt.Errorf("%s: decompressing the base archive: %w", InitrdFile, err)
	}
	return append(append(make([]byte, 0, len(seg)+len(raw)), seg...), raw...), nil
}
