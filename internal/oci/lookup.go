package oci

import (
	"context"
)

// Lookup resolves ref and applies the trust policy to its manifest, reading no layer: how a
// build cache asks whether an image is there (and may be used) before it pulls it. A tag that
// names nothing wraps errdef.ErrNotFound.
func Lookup(ctx context.Context, refStr string, o Options) (VerifyResult, error) {
	ref, err := ParseRef(refStr)
	if err != nil {
		return VerifyResult{}, err
	}
	s, err := o.openRead(ctx, ref)
	if err != nil {
		return VerifyResult{}, explain(err, ref)
	}
	ri, err := o.resolve(ctx, s, ref)
	if err != nil {
		return VerifyResult{}, explain(err, ref)
	}
	return VerifyResult{Ref: ref.WithDigest(ri.desc.Digest).String(), Digest: ri.desc.Digest, Revision: ri.image.Revision,
		Name: ri.image.Manifest.Annotations[AnnotationName], Trust: ri.trust}, nil
}
