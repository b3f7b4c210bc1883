package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
)

// A derived entry (an unpacked kernel, a decompressed vmlinux, an image's boot files, a parsed
// index) is made from verified inputs, but once on disk it could be edited or damaged like any
// file. Each one is sealed when it is made: its SHA-256 is recorded with its identity, and a use
// checks the identity first; only a file whose identity changed is hashed again. Any write
// changes the ctime, which no user can set back, so an identity that still matches means the
// content is the one hashed.

// FileID identifies a file's content without reading it.
type FileID struct {
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime"` // ns
	Ctime int64  `json:"ctime"` // ns
}

// IDOf returns the identity of a file from its FileInfo (from os.Stat or os.Lstat).
func IDOf(fi fs.FileInfo) (FileID, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return FileID{}, fmt.Errorf("%s: no file identity on this system", fi.Name())
	}
	return FileID{Dev: uint64(st.Dev), Ino: st.Ino, Size: fi.Size(), Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}, nil
}

// StatID returns the identity of the file at path.
func StatID(path string) (FileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return FileID{}, err
	}
	return IDOf(fi)
}

// Sealed is a sealed file's record: its digest and the identity it had when hashed.
type Sealed struct {
	SHA256 string `json:"sha256"`
	ID     FileID `json:"id"`
}

// ErrSealBroken means a derived file is not the one made: it was changed, or its seal is missing
// or unreadable. The caller makes the entry again.
var ErrSealBroken = errors.New("derived cache file changed since it was made")

func sealPath(path string) string {
	return path + ".seal"
}

// FileSHA256 hashes a file.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Seal records the digest of the file at path, in place and final, beside it. sum is its SHA-256
// when the caller knows it (from the bytes it wrote), "" to hash the file.
func Seal(path, sum string) error {
	id, err := StatID(path)
	if err != nil {
		return err
	}
	if sum == "" {
		if sum, err = FileSHA256(path); err != nil {
			return err
		}
		// Changed while hashing: the digest may be of neither version.
		if again, err := StatID(path); err != nil || again != id {
			return fmt.Errorf("%s changed while it was sealed", path)
		}
	}
	data, err := json.Marshal(Sealed{SHA256: sum, ID: id})
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(sealPath(path), data, 0o644)
}

// CheckSealed returns the digest of the file at path if it is the one recorded by Seal and, when
// want is not empty, want. A file whose identity changed is hashed again; if its content is
// still the one sealed, the seal takes its new identity (a copied or restored cache). Otherwise
// the error wraps ErrSealBroken.
func CheckSealed(path, want string) (string, error) {
	id, err := StatID(path)
	if err != nil {
		return "", err
	}
	var s Sealed
	data, err := os.ReadFile(sealPath(path))
	if err != nil || json.Unmarshal(data, &s) != nil || s.SHA256 == "" {
		return "", fmt.Errorf("%w: %s has no seal", ErrSealBroken, path)
	}
	if want != "" && s.SHA256 != want {
		return "", fmt.Errorf("%w: %s was sealed as sha256 %s, expected %s", ErrSealBroken, path, s.SHA256, want)
	}
	if s.ID == id {
		return s.SHA256, nil
	}
	sum, err := FileSHA256(path)
	if err != nil {
		return "", err
	}
	if sum != s.SHA256 {
		return "", fmt.Errorf("%w: %s is sha256 %s, sealed as %s", ErrSealBroken, path, sum, s.SHA256)
	}
	// Best effort: a failure only costs another hash next time.
	_ = Seal(path, sum)
	return sum, nil
}

// RemoveSealed removes a derived file and its seal.
func RemoveSealed(path string) {
	os.Remove(path)
	os.Remove(sealPath(path))
}

// sealedHeader starts a sealed state file: the SHA-256 of the rest follows it.
var sealedHeader = []byte("ukernel-sealed sha256:")

// WriteSealedState writes a derived state file (a parsed index) with the digest of its content,
// which ReadSealedState checks.
func (c *Cache) WriteSealedState(name string, data []byte) error {
	sum := sha256.Sum256(data)
	var buf bytes.Buffer
	buf.Grow(len(sealedHeader) + 65 + len(data))
	buf.Write(sealedHeader)
	buf.WriteString(hex.EncodeToString(sum[:]) + "\n")
	buf.Write(data)
	return c.WriteState(name, buf.Bytes())
}

// ReadSealedState returns a state file written by WriteSealedState. One whose content does not
// match its digest (edited, damaged, or written without one) is removed and reported as
// ErrNotFound, so the caller derives it again.
func (c *Cache) ReadSealedState(name string) ([]byte, error) {
	data, err := c.ReadState(name)
	if err != nil {
		return nil, err
	}
	rest, ok := bytes.CutPrefix(data, sealedHeader)
	if ok && len(rest) > 65 && rest[64] == '\n' {
		sum := sha256.Sum256(rest[65:])
		if hex.EncodeToString(sum[:]) == string(rest[:64]) {
			return rest[65:], nil
		}
	}
	os.Remove(c.statePath(name))
	return nil, fmt.Errorf("%w: state %s does not match its digest, removed", ErrNotFound, name)
}
