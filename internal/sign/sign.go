// Package sign reads and writes Ed25519 keys and signatures in minisign's format, so that a
// signature ukernel attaches to an image can be checked with `minisign -V` as well as by ukernel.
//
// Written here rather than imported: the Go minisign packages verify only, and the formats are
// three fixed byte layouts (https://jedisct1.github.io/minisign/). Signatures are the prehashed
// kind minisign writes by default ("ED": Ed25519 over the BLAKE2b-512 of the message) with a
// global signature over the trusted comment; legacy "Ed" signatures are refused.
package sign

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/blake2b"
)

// KeyID names a key pair: 8 random bytes, printed as minisign prints them.
type KeyID [8]byte

// String is the ID as minisign shows it (upper-case hex of the little-endian number).
func (id KeyID) String() string { return fmt.Sprintf("%016X", binary.LittleEndian.Uint64(id[:])) }

// PublicKey is a minisign public key.
type PublicKey struct {
	ID  KeyID
	Key ed25519.PublicKey
}

// PrivateKey is a minisign secret key (stored unencrypted: file permissions guard it).
type PrivateKey struct {
	ID  KeyID
	Key ed25519.PrivateKey
}

var (
	algEd       = [2]byte{'E', 'd'} // key algorithm, legacy signature algorithm
	algPrehash  = [2]byte{'E', 'D'} // signature over BLAKE2b-512(message)
	algChecksum = [2]byte{'B', '2'}
)

const (
	untrusted = "untrusted comment: "
	trusted   = "trusted comment: "
)

// Generate makes a new key pair.
func Generate() (PrivateKey, error) {
	_, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return PrivateKey{}, err
	}
	var k PrivateKey
	k.Key = sk
	if _, err := rand.Read(k.ID[:]); err != nil {
		return PrivateKey{}, err
	}
	return k, nil
}

// Public returns the key pair's public half.
func (k PrivateKey) Public() PublicKey {
	return PublicKey{ID: k.ID, Key: k.Key.Public().(ed25519.PublicKey)}
}

// Marshal returns the public key file: a comment line and the key.
func (k PublicKey) Marshal() []byte {
	b := append(append(algEd[:], k.ID[:]...), k.Key...)
	return fmt.Appendf(nil, "%sminisign public key %s\n%s\n", untrusted, k.ID, base64.StdEncoding.EncodeToString(b))
}

// Marshal returns the secret key file, unencrypted (minisign -W's layout).
func (k PrivateKey) Marshal() []byte {
	var b bytes.Buffer
	b.Write(algEd[:])
	b.Write([]byte{0, 0}) // no key derivation: not encrypted
	b.Write(algChecksum[:])
	b.Write(make([]byte, 32+8+8)) // salt, opslimit, memlimit (unused without encryption)
	b.Write(k.ID[:])
	b.Write(k.Key)
	chk := k.checksum()
	b.Write(chk[:])
	return fmt.Appendf(nil, "%sminisign secret key %s\n%s\n", untrusted, k.ID, base64.StdEncoding.EncodeToString(b.Bytes()))
}

func (k PrivateKey) checksum() [32]byte {
	h, _ := blake2b.New256(nil)
	h.Write(algEd[:])
	h.Write(k.ID[:])
	h.Write(k.Key)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// payload returns the base64 line of a key or signature file: the first line that is not a
// comment (a bare base64 line is accepted too, as minisign -P takes one).
func payload(data []byte, what string) ([]byte, error) {
	for line := range strings.SplitSeq(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, untrusted) {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("not a minisign %s: %w", what, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("not a minisign %s: no key line", what)
}

// ParsePublicKey reads a public key file (or its base64 line alone).
func ParsePublicKey(data []byte) (PublicKey, error) {
	b, err := payload(data, "public key")
	if err != nil {
		return PublicKey{}, err
	}
	if len(b) != 2+8+ed25519.PublicKeySize || !bytes.Equal(b[:2], algEd[:]) {
		return PublicKey{}, fmt.Errorf("not a minisign public key: %d bytes, expected 42 starting with Ed", len(b))
	}
	var k PublicKey
	copy(k.ID[:], b[2:10])
	k.Key = ed25519.PublicKey(bytes.Clone(b[10:]))
	return k, nil
}

// ParsePrivateKey reads an unencrypted secret key file (ukernel key generate, minisign -G -W).
func ParsePrivateKey(data []byte) (PrivateKey, error) {
	b, err := payload(data, "secret key")
	if err != nil {
		return PrivateKey{}, err
	}
	const size = 2 + 2 + 2 + 32 + 8 + 8 + 8 + 64 + 32
	if len(b) != size || !bytes.Equal(b[:2], algEd[:]) || !bytes.Equal(b[4:6], algChecksum[:]) {
		return PrivateKey{}, fmt.Errorf("not a minisign secret key: %d bytes, expected %d", len(b), size)
	}
	if b[2] != 0 || b[3] != 0 {
		return PrivateKey{}, errors.New("the secret key is encrypted with a password; ukernel reads only unencrypted keys (minisign -G -W, or ukernel key generate)")
	}
	var k PrivateKey
	rest := b[54:]
	copy(k.ID[:], rest[:8])
	k.Key = ed25519.NewKeyFromSeed(rest[8:40])
	if !bytes.Equal(k.Key, rest[8:72]) {
		return PrivateKey{}, errors.New("minisign secret key: its public half does not match its seed")
	}
	// minisign -W leaves the checksum zero; when set, it must match.
	chk := k.checksum()
	if stored := rest[72:104]; !bytes.Equal(stored, make([]byte, 32)) && subtle.ConstantTimeCompare(stored, chk[:]) != 1 {
		return PrivateKey{}, errors.New("minisign secret key: checksum mismatch (the file is damaged)")
	}
	return k, nil
}

// Signature is a parsed .minisig file.
type Signature struct {
	KeyID          KeyID
	Sig            [64]byte
	TrustedComment string
	GlobalSig      [64]byte
}

// Sign signs msg and returns the .minisig file. trustedComment is signed too (one line).
func Sign(k PrivateKey, msg []byte, trustedComment string) ([]byte, error) {
	if strings.ContainsAny(trustedComment, "\r\n") {
		return nil, errors.New("trusted comment must be one line")
	}
	h := blake2b.Sum512(msg)
	sig := ed25519.Sign(k.Key, h[:])
	global := ed25519.Sign(k.Key, append(bytes.Clone(sig), trustedComment...))
	line := append(append(algPrehash[:], k.ID[:]...), sig...)
	return fmt.Appendf(nil, "%ssignature from ukernel secret key %s\n%s\n%s%s\n%s\n", untrusted, k.ID,
		base64.StdEncoding.EncodeToString(line), trusted, trustedComment, base64.StdEncoding.EncodeToString(global)), nil
}

// ParseSignature reads a .minisig file.
func ParseSignature(data []byte) (Signature, error) {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], untrusted) || !strings.HasPrefix(lines[2], trusted) {
		return Signature{}, errors.New("not a minisign signature: expected 4 lines (untrusted comment, signature, trusted comment, global signature)")
	}
	var s Signature
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(lines[1]))
	if err != nil || len(b) != 2+8+64 {
		return Signature{}, errors.New("not a minisign signature: bad signature line")
	}
	if !bytes.Equal(b[:2], algPrehash[:]) {
		return Signature{}, fmt.Errorf("minisign signature algorithm %q: only prehashed (ED) signatures are accepted", b[:2])
	}
	copy(s.KeyID[:], b[2:10])
	copy(s.Sig[:], b[10:])
	s.TrustedComment = strings.TrimSuffix(strings.TrimPrefix(lines[2], trusted), "\r")
	g, err := base64.StdEncoding.DecodeString(strings.TrimSpace(lines[3]))
	if err != nil || len(g) != 64 {
		return Signature{}, errors.New("not a minisign signature: bad global signature line")
	}
	copy(s.GlobalSig[:], g)
	return s, nil
}

// ErrWrongKey means a signature was made by another key than the one it is checked with.
var ErrWrongKey = errors.New("signed by another key")

// Verify checks the signature of msg, and of the trusted comment, with k.
func (s Signature) Verify(k PublicKey, msg []byte) error {
	if s.KeyID != k.ID {
		return fmt.Errorf("%w: signature key %s, public key %s", ErrWrongKey, s.KeyID, k.ID)
	}
	h := blake2b.Sum512(msg)
	if !ed25519.Verify(k.Key, h[:], s.Sig[:]) {
		return fmt.Errorf("signature by key %s does not match the signed content", k.ID)
	}
	if !ed25519.Verify(k.Key, append(bytes.Clone(s.Sig[:]), s.TrustedComment...), s.GlobalSig[:]) {
		return fmt.Errorf("signature by key %s: the trusted comment was altered", k.ID)
	}
	return nil
}
