// Package image writes and reads ukernel disk images: a raw GPT disk with a boot partition (an
// uncompressed erofs holding the kernel, the initramfs and manifest.json) and a compressed
// read-only erofs root. Every identifier in it is derived from content, so the same inputs give
// the same bytes and any changed byte is found by Verify. docs/IMAGE.md describes the format.
package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	erofs "github.com/erofs/go-erofs"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/crashpoint"
	"github.com/ukernel-dev/ukernel/internal/version"
	"github.com/ukernel-dev/ukernel/internal/workdir"
)

// DefaultCmdline is the kernel command line Pack records when the caller sets none.
// tsc_early_khz avoids the TSC calibration hang on microvm under TCG; acpi=off would break
// poweroff there.
const DefaultCmdline = "console=ttyS0 panic=-1 reboot=t tsc_early_khz=2000000 quiet loglevel=4 rdinit=/init"

// Names of the files in the boot partition.
const (
	KernelFile    = "vmlinuz"
	InitrdFile    = "initrd.img"
	ManifestFile  = abi.ManifestPath
	rootFSType    = "erofs"
	bootBlockSize = 4096
)

// Artefact names Pack records in the manifest (the caller adds bundle and adapter).
const (
	ArtefactKernel    = "kernel"
	ArtefactInitramfs = "initramfs"
	ArtefactInit      = "init"
	ArtefactRoot      = "root"
)

// Input is everything Pack needs. The caller fills Manifest except the fields Pack derives
// (Modules, Root, the kernel/initramfs/init/root artefacts, and defaults for ABI, Cmdline, Build).
type Input struct {
	Manifest   abi.Manifest
	KernelPath string   // bzImage of the locked kernel package
	ModulesDir string   // .../lib/modules/<release> of that package
	Modules    []string // module names every boot loads; dependencies are added
	// ModuleGroups are module names the guest loads only when a run needs them, by group
	// (abi.ModulesNet, ...); their dependencies are added, except those every boot loads.
	ModuleGroups    map[string][]string
	InitPath        string // static ukernel-init binary, becomes /init
	RootDir         string // staged root filesystem tree
	Output          string // image path, e.g. dist/<name>.img
	SourceDateEpoch int64
	// Readonly adds a dm-verity hash tree after the root filesystem, records it in
	// Manifest.Root.Verity and on the command line, and adds the dm-verity modules.
	Readonly bool
}

// VerityModules are the modules a read-only image adds for the guest to set up dm-verity (their
// dependencies, dm-mod, dm-bufio and reed_solomon, are resolved from .modinfo).
var VerityModules = []string{"dm_verity"}

// Sizes splits an image's size by part, in bytes.
type Sizes struct {
	Kernel        int64 `json:"kernel"`
	Initramfs     int64 `json:"initramfs"` // initrd.img: base archive plus manifest segment
	Init          int64 `json:"init"`
	Modules       int64 `json:"modules"` // module files inside the initramfs
	Manifest      int64 `json:"manifest"`
	BootFS        int64 `json:"boot_fs"`
	BootPartition int64 `json:"boot_partition"`
	RootFS        int64 `json:"root_fs"`
	RootPartition int64 `json:"root_partition"`
	Disk          int64 `json:"disk"`
}

// Result describes a written image.
type Result struct {
	Path     string
	Size     int64
	SHA256   string
	Manifest abi.Manifest
	Sizes    Sizes
}

// Pack writes the image to in.Output through a temporary file in the same directory, renamed
// into place at the end; on error or cancellation no file is left behind.
func Pack(ctx context.Context, in Input) (res *Result, err error) {
	if in.Manifest.Kernel.Release == "" {
		return nil, errors.New("pack: manifest kernel release is empty")
	}
	for what, p := range map[string]string{"kernel": in.KernelPath, "modules directory": in.ModulesDir, "init": in.InitPath, "root directory": in.RootDir, "output": in.Output} {
		if p == "" {
			return nil, fmt.Errorf("pack: no %s given", what)
		}
	}
	outDir := filepath.Dir(in.Output)
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("pack: %w", err)
	}
	if err := SweepKilled(in.Output); err != nil {
		return nil, err
	}
	workPrefix, tmpPrefix := workPrefixes(in.Output)
	tmpDir, err := workdir.Mkdir(outDir, workPrefix)
	if err != nil {
		return nil, fmt.Errorf("pack: %w", err)
	}
	defer os.RemoveAll(tmpDir)

	m := in.Manifest
	var sizes Sizes

	wantModules := in.Modules
	if in.Readonly {
		wantModules = append(append([]string(nil), in.Modules...), VerityModules...)
	}
	modules, groups, err := resolveModuleGroups(in.ModulesDir, wantModules, in.ModuleGroups)
	if err != nil {
		return nil, err
	}
	m.Modules, m.ModuleGroups = modules, groups
	for _, rel := range modules {
		st, err := os.Stat(filepath.Join(in.ModulesDir, filepath.FromSlash(rel)))
		if err != nil {
			return nil, err
		}
		sizes.Modules += st.Size()
	}

	// Root filesystem.
	rootPath := filepath.Join(tmpDir, "root.erofs")
	slog.Debug("pack: building root filesystem", "dir", in.RootDir)
	if err := buildRootFS(ctx, in.RootDir, rootPath, in.SourceDateEpoch); err != nil {
		return nil, err
	}
	rootSum, rootSize, err := fileDigest(rootPath)
	if err != nil {
		return nil, err
	}
	sizes.RootFS = rootSize
	m.Root = abi.Root{FSType: rootFSType, Size: rootSize, SHA256: hex.EncodeToString(rootSum)}
	var hashArea []byte // written right after the root filesystem
	if in.Readonly {
		t, err := verityFile(ctx, rootPath, rootSize, rootSum)
		if err != nil {
			return nil, err
		}
		m.Root.Verity, hashArea = &t.params, t.area
	}

	// Initramfs base, kernel and init digests.
	baseCpio, err := buildInitramfs(in.InitPath, in.ModulesDir, m.Kernel.Release, modules, in.SourceDateEpoch)
	if err != nil {
		return nil, err
	}
	base, err := compressLZ4Legacy(baseCpio)
	if err != nil {
		return nil, err
	}
	kernelSum, kernelSize, err := fileDigest(in.KernelPath)
	if err != nil {
		return nil, fmt.Errorf("reading the kernel: %w", err)
	}
	initSum, initSize, err := fileDigest(in.InitPath)
	if err != nil {
		return nil, fmt.Errorf("reading the guest init: %w", err)
	}
	sizes.Kernel, sizes.Init = kernelSize, initSize
	baseSum := sha256.Sum256(base)

	if m.ABI == "" {
		m.ABI = abi.Version
	}
	if m.Kernel.Cmdline == "" {
		m.Kernel.Cmdline = DefaultCmdline
	}
	if m.Root.Verity != nil {
		m.Kernel.Cmdline += " " + abi.VerityCmdlineKey + "=" + m.Root.Verity.RootHash
	}
	if m.Build.Ukernel == "" {
		m.Build.Ukernel = version.Version
	}
	if m.Build.Go == "" {
		m.Build.Go = version.Go()
	}
	m.Build.SourceDateEpoch = in.SourceDateEpoch
	m.Artefacts = setArtefacts(m.Artefacts,
		abi.Artefact{Name: ArtefactKernel, Path: KernelFile, Size: kernelSize, SHA256: hex.EncodeToString(kernelSum)},
		abi.Artefact{Name: ArtefactInitramfs, Path: InitrdFile, Size: int64(len(base)), SHA256: hex.EncodeToString(baseSum[:])},
		abi.Artefact{Name: ArtefactInit, Path: "/init", Size: initSize, SHA256: hex.EncodeToString(initSum)},
		abi.Artefact{Name: ArtefactRoot, Path: abi.RootLabel, Size: rootSize, SHA256: m.Root.SHA256},
	)
	manifest, err := MarshalManifest(m)
	if err != nil {
		return nil, err
	}
	sizes.Manifest = int64(len(manifest))
	seg, err := manifestSegment(manifest, in.SourceDateEpoch)
	if err != nil {
		return nil, err
	}
	// The manifest segment goes first: the kernel's LZ4 reader takes everything after a
	// compressed archive's start as more of it, so the compressed base must come last.
	initrd := append(seg, base...)
	sizes.Initramfs = int64(len(initrd))

	// Boot filesystem.
	bootPath := filepath.Join(tmpDir, "boot.erofs")
	if err := buildBootFS(ctx, bootPath, tmpDir, in.KernelPath, initrd, manifest, in.SourceDateEpoch); err != nil {
		return nil, err
	}
	bootSum, bootSize, err := fileDigest(bootPath)
	if err != nil {
		return nil, err
	}
	sizes.BootFS = bootSize

	// Disk.
	lay := newLayout(bootSize, rootSize+int64(len(hashArea)))
	var diskGUID, bootGUID, rootGUID [16]byte
	ms := sha256.Sum256(manifest)
	copy(diskGUID[:], ms[:])
	copy(bootGUID[:], bootSum)
	copy(rootGUID[:], rootSum)
	parts := []gptPart{
		{Type: linuxFSType, GUID: bootGUID, FirstLBA: uint64(lay.bootStart / sectorSize), LastLBA: uint64((lay.bootStart+lay.bootSize)/sectorSize - 1), Name: abi.BootLabel},
		{Type: linuxFSType, GUID: rootGUID, FirstLBA: uint64(lay.rootStart / sectorSize), LastLBA: uint64((lay.rootStart+lay.rootSize)/sectorSize - 1), Name: abi.RootLabel},
	}
	sizes.BootPartition, sizes.RootPartition, sizes.Disk = lay.bootSize, lay.rootSize, lay.disk

	tmp, err := workdir.Create(outDir, tmpPrefix)
	if err != nil {
		return nil, fmt.Errorf("pack: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	if err := writeDisk(ctx, io.MultiWriter(tmp, h), lay, diskGUID, parts, bootPath, rootPath, hashArea); err != nil {
		return nil, fmt.Errorf("writing %s: %w", in.Output, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	crashpoint.At("pack-image")
	if err := atomicfile.Rename(tmp.Name(), in.Output); err != nil {
		return nil, fmt.Errorf("pack: %w", err)
	}
	return &Result{Path: in.Output, Size: lay.disk, SHA256: hex.EncodeToString(h.Sum(nil)), Manifest: m, Sizes: sizes}, nil
}

// MarshalManifest is the one encoding of a manifest: indented JSON (map keys sorted by
// encoding/json) with a final newline. The boot partition and the initramfs hold these bytes.
func MarshalManifest(m abi.Manifest) ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the manifest: %w", err)
	}
	return append(b, '\n'), nil
}

// setArtefacts replaces or adds the given artefacts by name and sorts the list by name.
func setArtefacts(list []abi.Artefact, add ...abi.Artefact) []abi.Artefact {
	out := make([]abi.Artefact, 0, len(list)+len(add))
	for _, a := range list {
		replaced := false
		for _, b := range add {
			replaced = replaced || a.Name == b.Name
		}
		if !replaced {
			out = append(out, a)
		}
	}
	out = append(out, add...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// buildBootFS writes the boot partition's erofs: fixed build time, zero UUID, root-owned files
// with the source date as mtime.
func buildBootFS(ctx context.Context, out, tmpDir, kernelPath string, initrd, manifest []byte, epoch int64) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	w := erofs.Create(f, erofs.WithBuildTime(uint64(epoch), 0), erofs.WithTempDir(tmpDir), erofs.WithBlockSize(bootBlockSize))
	kernel, err := os.Open(kernelPath)
	if err != nil {
		return fmt.Errorf("reading the kernel: %w", err)
	}
	defer kernel.Close()
	files := []struct {
		name string
		r    io.Reader
	}{
		{InitrdFile, bytes.NewReader(initrd)},
		{ManifestFile, bytes.NewReader(manifest)},
		{KernelFile, kernel},
	}
	for _, file := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		ef, err := w.Create("/" + file.name)
		if err != nil {
			return fmt.Errorf("boot filesystem: %w", err)
		}
		if _, err := ef.ReadFrom(file.r); err != nil {
			return fmt.Errorf("boot filesystem: writing %s: %w", file.name, err)
		}
		if err := ef.Close(); err != nil {
			return fmt.Errorf("boot filesystem: %w", err)
		}
	}
	t := unixTime(epoch)
	for _, p := range []string{"/", "/" + InitrdFile, "/" + ManifestFile, "/" + KernelFile} {
		if err := w.Chtimes(p, t, t); err != nil {
			return fmt.Errorf("boot filesystem: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("boot filesystem: %w", err)
	}
	return f.Close()
}

// layout places the partitions: 1 MiB for the protective MBR and primary GPT, the boot and root
// partitions each rounded up to 1 MiB, and 1 MiB at the end holding the backup GPT. A dm-verity
// hash area (Root.Verity.HashOffset) goes inside the root partition after the filesystem.
type layout struct {
	bootStart, bootSize int64
	rootStart, rootSize int64
	disk                int64
}

func newLayout(bootFS, rootFS int64) layout {
	l := layout{bootStart: align, bootSize: alignUp(bootFS), rootSize: alignUp(rootFS)}
	l.rootStart = l.bootStart + l.bootSize
	l.disk = l.rootStart + l.rootSize + align
	return l
}

// writeDisk writes the whole disk sequentially, zeros included; rootTail (the verity hash area,
// if any) follows the root filesystem.
func writeDisk(ctx context.Context, w io.Writer, l layout, diskGUID [16]byte, parts []gptPart, bootPath, rootPath string, rootTail []byte) error {
	sectors := uint64(l.disk / sectorSize)
	entries := encodeEntries(parts)
	cw := &countWriter{w: w}
	write := func(b []byte) error { _, err := cw.Write(b); return err }
	zeroTo := func(off int64) error { return writeZeros(cw, off-cw.n) }
	copyFile := func(p string) error {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(cw, &ctxReader{ctx: ctx, r: f})
		return err
	}
	steps := []func() error{
		func() error { return write(protectiveMBR(sectors)) },
		func() error { return write(encodeHeader(sectors, diskGUID, entries, true)) },
		func() error { return write(entries) },
		func() error { return zeroTo(l.bootStart) },
		func() error { return copyFile(bootPath) },
		func() error { return zeroTo(l.rootStart) },
		func() error { return copyFile(rootPath) },
		func() error { return write(rootTail) },
		func() error { return zeroTo(l.disk - (entrySectors+1)*sectorSize) },
		func() error { return write(entries) },
		func() error { return write(encodeHeader(sectors, diskGUID, entries, false)) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	if cw.n != l.disk {
		return fmt.Errorf("wrote %d bytes, layout says %d", cw.n, l.disk)
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

var zeroBlock = make([]byte, 64<<10)

func writeZeros(w io.Writer, n int64) error {
	if n < 0 {
		return fmt.Errorf("layout overlap: %d bytes too many", -n)
	}
	for n > 0 {
		k := min(n, int64(len(zeroBlock)))
		if _, err := w.Write(zeroBlock[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// fileDigest returns a file's SHA-256 and size.
func fileDigest(p string) ([]byte, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	return digest(sha256.New(), f)
}

func digest(h hash.Hash, r io.Reader) ([]byte, int64, error) {
	n, err := io.Copy(h, r)
	if err != nil {
		return nil, 0, err
	}
	return h.Sum(nil), n, nil
}

func workPrefixes(output string) (work, tmp string) {
	return "." + filepath.Base(output) + ".work-", "." + filepath.Base(output) + ".tmp-"
}

// SweepKilled removes what a killed pack of output left beside it (its work directory, a
// partial image). Pack calls it; so does a pack that finds the image up to date.
func SweepKilled(output string) error {
	work, tmp := workPrefixes(output)
	for _, prefix := range []string{work, tmp} {
		if _, err := workdir.Sweep(filepath.Dir(output), prefix); err != nil {
			return fmt.Errorf("pack: %w", err)
		}
	}
	return nil
}
