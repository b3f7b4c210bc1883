package lock

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/pypi"
)

// fakeMirror is a signed Debian archive in a temporary directory, served as a file:// mirror,
// so lock tests run without the network against indices they control.
type fakeMirror struct {
	t       *testing.T
	dir     string
	key     *openpgp.Entity
	keyring string
}

func newFakeMirror(t *testing.T) *fakeMirror {
	t.Helper()
	key, err := openpgp.NewEntity("ukernel test archive", "", "", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	must(t, err)
	var pub bytes.Buffer
	must(t, key.Serialize(&pub))
	dir := t.TempDir()
	keyring := filepath.Join(dir, "keyring.gpg")
	must(t, os.WriteFile(keyring, pub.Bytes(), 0o644))
	return &fakeMirror{t: t, dir: filepath.Join(dir, "debian"), key: key, keyring: keyring}
}

// publish replaces codename's index with stanzas ("Package: x\nVersion: 1\n..."; Architecture
// defaults to amd64) and signs a new InRelease for it.
func (m *fakeMirror) publish(codename string, stanzas ...string) {
	m.t.Helper()
	var idx strings.Builder
	for _, s := range stanzas {
		if !strings.Contains(s, "Architecture:") {
			s += "\nArchitecture: amd64"
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(s, "Package: "), "\n")
		sum := sha256.Sum256([]byte(s))
		fmt.Fprintf(&idx, "%s\nFilename: pool/main/%s.deb\nSize: 1\nSHA256: %x\n\n", s, name, sum)
	}
	dists := filepath.Join(m.dir, "dists", codename)
	must(m.t, os.MkdirAll(filepath.Join(dists, "main", "binary-amd64"), 0o755))
	must(m.t, os.WriteFile(filepath.Join(dists, "main", "binary-amd64", "Packages"), []byte(idx.String()), 0o644))
	sum := sha256.Sum256([]byte(idx.String()))
	release := fmt.Sprintf("Origin: Debian\nSuite: %s\nCodename: %s\nDate: %s\nSHA256:\n %s %d main/binary-amd64/Packages\n",
		codename, codename, time.Now().UTC().Format(time.RFC1123Z), hex.EncodeToString(sum[:]), idx.Len())
	var signed bytes.Buffer
	w, err := clearsign.Encode(&signed, m.key.PrivateKey, nil)
	must(m.t, err)
	_, err = w.Write([]byte(release))
	must(m.t, err)
	must(m.t, w.Close())
	must(m.t, os.WriteFile(filepath.Join(dists, "InRelease"), signed.Bytes(), 0o644))
}

// project writes a project that reads this mirror and returns its directory and lock options
// (a private cache, the mirror's keyring).
func (m *fakeMirror) project(env string) (string, Options) {
	m.t.Helper()
	dir := writeProject(m.t, env)
	cfg := "[project]\nname = \"demo\"\nlanguage = \"python\"\nentry = \"src/main.py\"\n[env]\nbase = \"python-3.11\"\nmirror = \"file://" + m.dir + "\"\n"
	must(m.t, os.WriteFile(filepath.Join(dir, project.ConfigFile), []byte(cfg), 0o644))
	c, err := cache.OpenDir(m.t.TempDir())
	must(m.t, err)
	return dir, Options{Dir: dir, Cache: c, Keyring: m.keyring}
}

func writeEnv(t *testing.T, dir, env string) {
	t.Helper()
	must(t, os.WriteFile(filepath.Join(dir, project.EnvFile), []byte(env), 0o644))
}

// kernelStanzas is a cloud kernel metapackage at metaVersion depending on the image at
// imageVersion, plus the images listed.
func kernelStanzas(metaVersion, imageVersion string, images ...string) []string {
	out := []string{fmt.Sprintf("Package: linux-image-cloud-amd64\nVersion: %s\nDepends: linux-image-6.1.0-28-cloud-amd64 (= %s)", metaVersion, imageVersion)}
	for _, v := range images {
		out = append(out, "Package: linux-image-6.1.0-28-cloud-amd64\nVersion: "+v+"\nDepends: kmod, linux-base")
	}
	return out
}

// fakePip stands in for pip: it "downloads" foo-1 as a wheel tagged for the requested Python.
func fakePip(t *testing.T) {
	t.Helper()
	script := filepath.Join(t.TempDir(), "python3")
	must(t, os.WriteFile(script, []byte(`#!/bin/sh
while [ $# -gt 0 ]; do
	case $1 in -d) dir=$2; shift ;; --python-version) v=$2; shift ;; esac
	shift
done
tag=cp$(echo "$v" | tr -d .)
echo wheel >"$dir/foo-1-$tag-$tag-manylinux_2_17_x86_64.whl"
`), 0o755))
	saved := pypi.Python
	pypi.Python = script
	t.Cleanup(func() { pypi.Python = saved })
}

func TestPythonWheelsFollowTheBase(t *testing.T) {
	m := newFakeMirror(t)
	m.publish("bookworm", append(kernelStanzas("1", "6.1.119-1", "6.1.119-1"), "Package: python3.11\nVersion: 3.11.2-6")...)
	m.publish("trixie", append(kernelStanzas("1", "6.1.119-1", "6.1.119-1"), "Package: python3.13\nVersion: 3.13.5-2")...)
	fakePip(t)
	dir, o := m.project("python = [\"foo==1\"]\n")
	l, _, err := Resolve(ctx(t), o)
	must(t, err)
	if len(l.Python) != 1 || !strings.Contains(l.Python[0].Filename, "cp311") {
		t.Fatalf("python-3.11 wheels: %+v", l.Python)
	}
	cfg, err := os.ReadFile(filepath.Join(dir, project.ConfigFile))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, project.ConfigFile), bytes.Replace(cfg, []byte(`base = "python-3.11"`), []byte(`base = "python-3.13"`), 1), 0o644))
	l, _, err = Resolve(ctx(t), o)
	must(t, err)
	if len(l.Python) != 1 || !strings.Contains(l.Python[0].Filename, "cp313") {
		t.Fatalf("after moving to python-3.13 the lock kept %+v", l.Python)
	}
}

func TestKernelStaysLockedAndNeverTheMetapackage(t *testing.T) {
	m := newFakeMirror(t)
	others := []string{"Package: python3.11\nVersion: 3.11.2-6", "Package: curl\nVersion: 7.88.1-10", "Package: jq\nVersion: 1.6-2.1"}
	kernel := func(l *Lock) string { return l.Kernel.Name + " " + l.Kernel.Version }
	m.publish("bookworm", append(kernelStanzas("1", "6.1.119-1", "6.1.119-1"), others...)...)
	dir, o := m.project("")
	l, _, err := Resolve(ctx(t), o)
	must(t, err)
	if got := kernel(l); got != "linux-image-6.1.0-28-cloud-amd64 6.1.119-1" {
		t.Fatalf("kernel %s", got)
	}

	// The metapackage moves on while the locked image is still on the mirror: an unrelated
	// change keeps the locked kernel.
	m.publish("bookworm", append(kernelStanzas("2", "6.1.124-1", "6.1.119-1", "6.1.124-1"), others...)...)
	writeEnv(t, dir, "system = [\"curl\"]\n")
	l, _, err = Resolve(ctx(t), o)
	must(t, err)
	if got := kernel(l); got != "linux-image-6.1.0-28-cloud-amd64 6.1.119-1" {
		t.Fatalf("an unrelated change moved the kernel to %s", got)
	}

	// The locked image is gone: the metapackage is followed to the image it names.
	m.publish("bookworm", append(kernelStanzas("2", "6.1.124-1", "6.1.124-1"), others...)...)
	writeEnv(t, dir, "system = [\"curl\", \"jq\"]\n")
	l, _, err = Resolve(ctx(t), o)
	must(t, err)
	if got := kernel(l); got != "linux-image-6.1.0-28-cloud-amd64 6.1.124-1" {
		t.Fatalf("kernel %s, want the image the metapackage depends on", got)
	}

	// A lock that pinned the metapackage itself (as older versions could) is not kept.
	meta := *l.Kernel
	meta.Name, meta.Version = "linux-image-cloud-amd64", "2"
	l.Kernel = &meta
	must(t, l.Save(dir))
	writeEnv(t, dir, "system = [\"jq\"]\n")
	l, _, err = Resolve(ctx(t), o)
	must(t, err)
	if got := kernel(l); got != "linux-image-6.1.0-28-cloud-amd64 6.1.124-1" {
		t.Fatalf("a locked metapackage was kept: %s", got)
	}

	// A metapackage naming an image the mirror lacks is an error, never a locked metapackage.
	m.publish("bookworm", append(kernelStanzas("3", "6.1.130-1", "6.1.124-1"), others...)...)
	o.Upgrade = true
	_, _, err = Resolve(ctx(t), o)
	if err == nil || !strings.Contains(err.Error(), "linux-image-6.1.0-28-cloud-amd64 (= 6.1.130-1)") {
		t.Fatalf("metapackage without its image: %v", err)
	}
}

func TestLockedVersionYieldsToANewDependency(t *testing.T) {
	m := newFakeMirror(t)
	base := append(kernelStanzas("1", "6.1.119-1", "6.1.119-1"), "Package: python3.11\nVersion: 3.11.2-6\nDepends: libc6")
	m.publish("bookworm", append(base, "Package: libc6\nVersion: 1")...)
	dir, o := m.project("")
	_, _, err := Resolve(ctx(t), o)
	must(t, err)
	// The mirror gains libc6 2 and a package that needs it; adding that package moves libc6.
	m.publish("bookworm", append(base, "Package: libc6\nVersion: 1", "Package: libc6\nVersion: 2", "Package: app\nVersion: 1\nDepends: libc6 (>= 2)")...)
	writeEnv(t, dir, "system = [\"app\"]\n")
	l, _, err := Resolve(ctx(t), o)
	must(t, err)
	if i := slices.IndexFunc(l.Packages, func(p Package) bool { return p.Name == "libc6" }); i < 0 || l.Packages[i].Version != "2" {
		t.Fatalf("libc6 not moved to 2: %+v", l.Packages)
	}
}

func TestDamagedLockIsAnError(t *testing.T) {
	m := newFakeMirror(t)
	m.publish("bookworm", append(kernelStanzas("1", "6.1.119-1", "6.1.119-1"), "Package: python3.11\nVersion: 3.11.2-6", "Package: curl\nVersion: 7.88.1-10")...)
	dir, o := m.project("")
	_, _, err := Resolve(ctx(t), o)
	must(t, err)
	path := filepath.Join(dir, project.LockFile)
	data, err := os.ReadFile(path)
	must(t, err)
	damaged := bytes.Replace(data, []byte(`"version": "3.11.2-6"`), []byte(`"version": "3.11.2-7"`), 1)
	must(t, os.WriteFile(path, damaged, 0o644))

	// Neither an unchanged nor a changed request may silently replace it.
	for _, env := range []string{"", "system = [\"curl\"]\n"} {
		writeEnv(t, dir, env)
		_, _, err = Resolve(ctx(t), o)
		if err == nil || !strings.Contains(err.Error(), project.LockFile+": digest mismatch") || !strings.Contains(err.Error(), "ukernel env upgrade") {
			t.Fatalf("damaged lock: %v", err)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(after, damaged) {
			t.Fatal("the damaged lock was overwritten")
		}
	}
	// An explicit full re-resolution replaces it.
	o.Upgrade = true
	l, changed, err := Resolve(ctx(t), o)
	must(t, err)
	if !changed || len(l.Packages) != 2 {
		t.Fatalf("upgrade: changed=%v packages=%+v", changed, l.Packages)
	}
	_, err = Load(dir)
	must(t, err)
}
