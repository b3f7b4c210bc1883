package image

import (
	"bytes"
	"encoding/binary"
)

const moduleSigMagic = "~Module signature appended~\n"

// stripModuleSignature removes the signature Debian appends to each module. The guest kernel
// does not enforce module signatures, but it still verifies one that is present, and under
// software emulation that RSA check is a large part of loading a module. The signature adds
// nothing here: the module's bytes are pinned by the lock's SHA-256 of its package and by the
// image's own digests (and dm-verity when read-only). A module without the trailer is returned
// as it is.
func stripModuleSignature(b []byte) []byte {
	if !bytes.HasSuffix(b, []byte(moduleSigMagic)) {
		return b
	}
	// struct module_signature: algo, hash, id_type, signer_len, key_id_len (u8 each),
	// 3 bytes padding, sig_len (big-endian u32); the signature precedes it.
	const infoLen = 12
	end := len(b) - len(moduleSigMagic)
	if end < infoLen {
		return b
	}
	info := b[end-infoLen : end]
	sigLen := int(binary.BigEndian.Uint32(info[8:12]))
	start := end - infoLen - sigLen
	if sigLen <= 0 || start < 0 {
		return b
	}
	return b[:start]
}
