package image

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// elfModule is a minimal relocatable ELF64 file whose only section is .modinfo, holding info:
// what ResolveModules reads of a module.
func elfModule(info []byte) []byte {
	const ehdr, shdr = 64, 64
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	shoff := ehdr + len(info) + len(shstr)
	var b bytes.Buffer
	h := elf.Header64{Type: uint16(elf.ET_REL), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Shoff: uint64(shoff), Ehsize: ehdr, Shentsize: shdr, Shnum: 3, Shstrndx: 2}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS], h.Ident[elf.EI_DATA], h.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	binary.Write(&b, binary.LittleEndian, h)
	b.Write(info)
	b.Write(shstr)
	binary.Write(&b, binary.LittleEndian, []elf.Section64{{},
		{Name: 1, Type: uint32(elf.SHT_PROGBITS), Off: ehdr, Size: uint64(len(info)), Addralign: 1},
		{Name: 10, Type: uint32(elf.SHT_STRTAB), Off: uint64(ehdr + len(info)), Size: uint64(len(shstr)), Addralign: 1}})
	return b.Bytes()
}

// FuzzResolveModules: a kernel package's modules (their .modinfo, one of them gzipped, as Debian
// 13 compresses them) and its modules.builtin, as the mirror serves them. Resolving fails or
// gives each module once, every one a module file under the tree, each after the modules it
// depends on that are not built in, the same order every time.
func FuzzResolveModules(f *testing.F) {
	f.Add([]byte("license=GPL\x00depends=b,c\x00"), []byte("depends=c\x00"), "kernel/x.ko\n")
	f.Add([]byte("depends=b\x00"), []byte("depends=a\x00"), "")
	f.Add([]byte("depends=x, c,\x00depends=b"), []byte("depends=../a\x00"), "kernel/x.ko\n\n kernel/c.ko.zst \n")
	f.Fuzz(func(t *testing.T, infoA, infoB []byte, builtin string) {
		dir := t.TempDir()
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(elfModule(infoB))
		zw.Close()
		for rel, data := range map[string][]byte{
			"kernel/a.ko": elfModule(infoA), "kernel/sub/b.ko.gz": gz.Bytes(),
			"kernel/c.ko": elfModule([]byte("license=GPL\x00")), "modules.builtin": []byte(builtin),
		} {
			p := filepath.Join(dir, rel)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		builtins, err := readBuiltin(dir)
		if err != nil {
			t.Fatalf("modules.builtin: %v", err)
		}
		for _, want := range [][]string{{"a"}, {"b", "a"}} {
			order, err := ResolveModules(dir, want)
			if err != nil {
				continue
			}
			for i, rel := range order {
				if slices.Index(order, rel) != i {
					t.Fatalf("%q: %s twice", order, rel)
				}
				if _, err := os.Stat(filepath.Join(dir, rel)); err != nil || !isModuleFile(rel) {
					t.Fatalf("%q: %s is not a module file under the tree", order, rel)
				}
				deps, err := moduleDepends(filepath.Join(dir, rel))
				if err != nil {
					t.Fatalf("%s resolved but its .modinfo does not read: %v", rel, err)
				}
				for _, d := range deps {
					if builtins[d] {
						continue
					}
					if !slices.ContainsFunc(order[:i], func(p string) bool { return moduleName(p) == d }) {
						t.Fatalf("%q: %s comes before its dependency %s", order, rel, d)
					}
				}
			}
			for _, n := range want {
				if !builtins[n] && !slices.ContainsFunc(order, func(p string) bool { return moduleName(p) == n }) {
					t.Fatalf("%q: the requested %s is missing", order, n)
				}
			}
			if again, err := ResolveModules(dir, want); err != nil || !slices.Equal(again, order) {
				t.Fatalf("resolved %q, then %q, %v", order, again, err)
			}
		}
	})
}

// FuzzStripModuleSignature: a module as the package ships it loses exactly a well-formed
// signature trailer (magic, the 12-byte info, a signature of the length it gives), or nothing.
func FuzzStripModuleSignature(f *testing.F) {
	info := make([]byte, 12)
	binary.BigEndian.PutUint32(info[8:], 3)
	f.Add(append(append([]byte("\x7fELF body sig"), info...), moduleSigMagic...))
	f.Add([]byte(moduleSigMagic))
	f.Add(append(bytes.Repeat([]byte{0xff}, 12), moduleSigMagic...))
	f.Fuzz(func(t *testing.T, b []byte) {
		out := stripModuleSignature(b)
		if !bytes.HasPrefix(b, out) {
			t.Fatalf("%q is not a prefix of the module", out)
		}
		if len(out) == len(b) {
			return
		}
		tail := b[len(out):]
		end := len(tail) - len(moduleSigMagic)
		if !bytes.HasSuffix(tail, []byte(moduleSigMagic)) || end < 12 {
			t.Fatalf("cut %q, which is not a signature trailer", tail)
		}
		if n := binary.BigEndian.Uint32(tail[end-4 : end]); n == 0 || int(n) != end-12 {
			t.Fatalf("cut %d bytes of signature, its info says %d", end-12, n)
		}
	})
}
