package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"

	"github.com/ukernel-dev/ukernel/internal/sign"
	"github.com/ukernel-dev/ukernel/internal/userconfig"
)

// A signature is stored as its own artifact: an image manifest of SignatureArtifactType whose
// subject is the signed manifest and whose one layer is a minisign signature of that manifest's
// bytes. Registries with the referrers API list it there; for those without (distribution 2.8),
// oras-go maintains the referrers tag (sha256-<hex>) of the distribution spec's fallback.

// trustedComment is the signed comment: it names the digest, so `minisign -V` shows what was
// signed. It has no time in it: signing one manifest twice with one key gives one artifact.
func trustedComment(d digest.Digest, name string) string {
	return fmt.Sprintf("ukernel image %s %s", d, name)
}

func (o *Options) pushSignature(ctx context.Context, s oras.GraphTarget, subject ocispec.Descriptor, man []byte, name string, k sign.PrivateKey) (Blob, error) {
	sig, err := sign.Sign(k, man, trustedComment(subject.Digest, name))
	if err != nil {
		return Blob{}, err
	}
	layer := Descriptor(SignatureLayerMediaType, sig)
	layer.Annotations = map[string]string{ocispec.AnnotationTitle: subject.Digest.Encoded() + ".minisig"}
	sm := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: SignatureArtifactType,
		Config:       ocispec.DescriptorEmptyJSON,
		Layers:       []ocispec.Descriptor{layer},
		Subject:      &ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size, ArtifactType: subject.ArtifactType},
		Annotations:  map[string]string{AnnotationKeyID: k.ID.String()},
	}
	b, err := json.Marshal(sm)
	if err != nil {
		return Blob{}, err
	}
	desc := Descriptor(ocispec.MediaTypeImageManifest, b)
	desc.ArtifactType = SignatureArtifactType
	desc.Annotations = sm.Annotations
	for _, blob := range []struct {
		d ocispec.Descriptor
		b []byte
	}{{ocispec.DescriptorEmptyJSON, ocispec.DescriptorEmptyJSON.Data}, {layer, sig}} {
		d := blob.d
		d.Data = nil
		if _, err := o.pushBlob(ctx, s, d, readCloser(blob.b), ""); err != nil {
			return Blob{}, err
		}
	}
	ok, err := s.Exists(ctx, desc)
	if err != nil {
		return Blob{}, err
	}
	if !ok {
		if err := s.Push(ctx, desc, bytes.NewReader(b)); err != nil {
			return Blob{}, fmt.Errorf("push signature %s: %w", desc.Digest, err)
		}
	}
	return Blob{MediaType: SignatureArtifactType, Digest: desc.Digest, Size: desc.Size, Moved: !ok}, nil
}

// signatures returns the minisign signatures attached to subject, each checked against the
// digest its artifact names. A referrer that is not a well-formed signature is skipped.
func (o *Options) signatures(ctx context.Context, s oras.ReadOnlyGraphTarget, subject ocispec.Descriptor) ([][]byte, error) {
	refs, err := s.Predecessors(ctx, subject)
	if err != nil {
		return nil, fmt.Errorf("list the signatures of %s: %w", subject.Digest, err)
	}
	var sigs [][]byte
	for _, r := range refs {
		// A layout's graph lists referrers without their artifact type: read those to know.
		if r.ArtifactType != SignatureArtifactType && r.ArtifactType != "" || r.MediaType != ocispec.MediaTypeImageManifest || r.Size > maxManifestSize {
			continue
		}
		b, err := o.fetchSmall(ctx, s, r, maxManifestSize)
		if err != nil {
			return nil, fmt.Errorf("signature %s: %w", r.Digest, err)
		}
		var m ocispec.Manifest
		if json.Unmarshal(b, &m) != nil || m.ArtifactType != SignatureArtifactType || m.Subject == nil || m.Subject.Digest != subject.Digest ||
			len(m.Layers) != 1 || m.Layers[0].MediaType != SignatureLayerMediaType || m.Layers[0].Size > maxSigSize {
			o.logger().Debug("skipping a referrer that is not a signature", "digest", r.Digest)
			continue
		}
		sig, err := o.fetchSmall(ctx, s, m.Layers[0], maxSigSize)
		if err != nil {
			return nil, fmt.Errorf("signature %s: %w", m.Layers[0].Digest, err)
		}
		sigs = append(sigs, sig)
	}
	return sigs, nil
}

// Signer is a trusted key whose signature verified.
type Signer struct {
	Key     string `json:"key"` // its name in trusted/
	KeyID   string `json:"key_id"`
	Comment string `json:"trusted_comment"`
}

// TrustReport is what the signatures of a manifest say under the user's policy.
type TrustReport struct {
	Required  bool     `json:"required"`       // the policy asks for a signature here
	Rule      string   `json:"rule,omitempty"` // the [trust] require glob that asked
	Signers   []Signer `json:"signers"`
	Untrusted []string `json:"untrusted_keys,omitempty"` // key IDs of signatures by keys not trusted
	Invalid   []string `json:"invalid,omitempty"`        // signatures by trusted keys that failed, why
}

// TrustError is a refusal under the policy: no valid signature by a trusted key.
type TrustError struct {
	Name   string // what the policy matched (host/repo, oci-layout:DIR)
	Digest digest.Digest
	Report TrustReport
	Keys   []string // trusted keys, "name (ID)"
}

func (e *TrustError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s@%s: refused by the trust policy ([trust] require %q): ", e.Name, e.Digest, e.Report.Rule)
	switch {
	case len(e.Report.Invalid) > 0:
		fmt.Fprintf(&b, "bad signature: %s", strings.Join(e.Report.Invalid, "; "))
	case len(e.Report.Untrusted) > 0:
		fmt.Fprintf(&b, "signed only by untrusted key %s", strings.Join(e.Report.Untrusted, ", "))
	default:
		b.WriteString("not signed")
	}
	if len(e.Keys) == 0 {
		b.WriteString("; no key is trusted (add one with 'ukernel trust add KEY.pub')")
	} else {
		fmt.Fprintf(&b, "; trusted: %s", strings.Join(e.Keys, ", "))
	}
	return b.String()
}

// ErrUntrusted is wrapped by every TrustError.
var ErrUntrusted = errors.New("refused by the trust policy")

func (e *TrustError) Unwrap() error { return ErrUntrusted }

// CheckTrust verifies the signatures sigs of the manifest man (digest d) found at name with the
// user's trusted keys, and refuses when the policy requires a signature that is not there. It
// reads nothing else: deploy and run use it on records kept from a pull.
func CheckTrust(cfg *userconfig.Config, name string, d digest.Digest, man []byte, sigs [][]byte) (TrustReport, error) {
	var rep TrustReport
	if digest.FromBytes(man) != d {
		return rep, fmt.Errorf("manifest of %s does not match its digest %s", name, d)
	}
	if cfg == nil {
		cfg = &userconfig.Config{}
	}
	rep.Required, rep.Rule = cfg.RequiresSignature(name)
	keys, err := cfg.TrustedKeys()
	if err != nil {
		return rep, err
	}
	for _, raw := range sigs {
		s, err := sign.ParseSignature(raw)
		if err != nil {
			rep.Invalid = append(rep.Invalid, err.Error())
			continue
		}
		i := keyIndex(keys, s.KeyID)
		if i < 0 {
			rep.Untrusted = append(rep.Untrusted, s.KeyID.String())
			continue
		}
		k := keys[i]
		if err := s.Verify(k.Key, man); err != nil {
			rep.Invalid = append(rep.Invalid, fmt.Sprintf("key %s (%s): %v", k.Name, k.Key.ID, err))
			continue
		}
		rep.Signers = append(rep.Signers, Signer{Key: k.Name, KeyID: k.Key.ID.String(), Comment: s.TrustedComment})
	}
	if rep.Required && len(rep.Signers) == 0 {
		te := &TrustError{Name: name, Digest: d, Report: rep}
		for _, k := range keys {
			te.Keys = append(te.Keys, fmt.Sprintf("%s (%s)", k.Name, k.Key.ID))
		}
		return rep, te
	}
	return rep, nil
}

func keyIndex(keys []userconfig.NamedKey, id sign.KeyID) int {
	for i, k := range keys {
		if k.Key.ID == id {
			return i
		}
	}
	return -1
}
