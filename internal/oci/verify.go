package oci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/image"
	"github.com/ukernel-dev/ukernel/internal/userconfig"
)

// VerifyResult is what verify found.
type VerifyResult struct {
	Ref      string        `json:"ref,omitempty"`
	Image    string        `json:"image,omitempty"`
	Digest   digest.Digest `json:"digest,omitempty"`
	Revision string        `json:"revision"`
	Name     string        `json:"name,omitempty"`
	Pulled   bool          `json:"pulled"` // a local image that came from a pull (its signatures were kept)
	Trust    TrustReport   `json:"trust"`
}

// VerifyRemote checks ref where it is, writing nothing: the manifest, the signatures under the
// policy, the config, and every byte of the layer against its digest and the revision.
func VerifyRemote(ctx context.Context, refStr string, o Options) (VerifyResult, error) {
	ref, err := ParseRef(refStr)
	if err != nil {
		return VerifyResult{}, err
	}
	res, err := verifyRemote(ctx, ref, o)
	return res, explain(err, ref)
}

func verifyRemote(ctx context.Context, ref Ref, o Options) (VerifyResult, error) {
	s, err := o.openRead(ctx, ref)
	if err != nil {
		return VerifyResult{}, err
	}
	ri, err := o.resolve(ctx, s, ref)
	res := VerifyResult{Ref: ref.WithDigest(ri.desc.Digest).String(), Digest: ri.desc.Digest, Revision: ri.image.Revision, Trust: ri.trust}
	if err != nil {
		return res, err
	}
	res.Name = ri.image.Manifest.Annotations[AnnotationName]
	if _, err := o.fetchSmall(ctx, s, ri.image.Manifest.Config, maxConfigSize); err != nil {
		return res, err
	}
	err = o.fetchLayer(ctx, s, ri.image, func(r io.Reader) error {
		h := sha256.New()
		if _, err := io.Copy(h, r); err != nil {
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != ri.image.Revision {
			return fmt.Errorf("the image is sha256:%s, the manifest's revision sha256:%s", got, ri.image.Revision)
		}
		return nil
	})
	return res, err
}

// VerifyLocal checks an image file as inspect does and, when it came from a pull, applies the
// trust policy to the signatures kept with it. An image that was not pulled has no signatures:
// it passes only where the policy requires none (deploy and run call this with name "" for a
// local build).
func VerifyLocal(path string, c *cache.Cache, cfg *userconfig.Config) (VerifyResult, error) {
	res := VerifyResult{Image: path}
	im, err := image.Open(path)
	if err != nil {
		return res, err
	}
	defer im.Close()
	if err := im.Verify().Err(); err != nil {
		return res, fmt.Errorf("%s: %w", path, err)
	}
	if res.Revision, err = im.SHA256(); err != nil {
		return res, err
	}
	res.Name = im.Manifest().Name
	rec, err := readRecord(c, res.Revision)
	if err != nil || rec == nil {
		return res, err
	}
	pm, err := ParseManifest(rec.Manifest)
	if err != nil || pm.Revision != res.Revision {
		return res, fmt.Errorf("pull record of %s does not describe this image (revision %s); pull it again", path, res.Revision)
	}
	res.Pulled, res.Ref, res.Digest = true, rec.Ref, rec.Digest
	res.Trust, err = CheckTrust(cfg, rec.Name, rec.Digest, rec.Manifest, rec.Signatures)
	return res, err
}

// readRecord returns the pull record of the image whose SHA-256 is revision, nil when it was
// not pulled.
func readRecord(c *cache.Cache, revision string) (*Record, error) {
	b, err := c.ReadRecord(recordName(revision))
	if errors.Is(err, cache.ErrNotFound) {
		b, err = c.ReadState(recordName(revision))
	}
	if errors.Is(err, cache.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("pull record of sha256:%s: %w", revision, err)
	}
	return &rec, nil
}

// CheckPulled applies the user's trust policy to an image file about to be booted: one that
// came from a pull must still satisfy the policy for the reference it was pulled from, with
// the signatures kept from that pull (the policy may have changed since). Without a policy it
// reads nothing; an image that was not pulled (a local build) is not subject to it.
func CheckPulled(path string) error {
	cfg, err := userconfig.Load()
	if err != nil || len(cfg.File.Trust.Require) == 0 {
		return err
	}
	c, err := cache.Open()
	if err != nil {
		return err
	}
	sum, err := cache.FileSHA256(path)
	if err != nil {
		return err
	}
	rec, err := readRecord(c, sum)
	if err != nil || rec == nil {
		return err
	}
	_, err = CheckTrust(cfg, rec.Name, rec.Digest, rec.Manifest, rec.Signatures)
	return err
}

// PullRecord returns what was kept from the pull of the image whose SHA-256 is revision
// (reference, manifest, signatures), nil when it was not pulled: deploy carries it to the host,
// which applies its own trust policy to it with CheckTrust.
func PullRecord(c *cache.Cache, revision string) (*Record, error) { return readRecord(c, revision) }
