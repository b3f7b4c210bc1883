package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/image"
)

// PullOptions say where a pulled image goes.
type PullOptions struct {
	Options
	Cache *cache.Cache
}

// PullResult is what a pull did.
type PullResult struct {
	Ref      string        `json:"ref"` // by digest
	Digest   digest.Digest `json:"digest"`
	Revision string        `json:"revision"`
	Name     string        `json:"name"`
	Template string        `json:"template,omitempty"` // recorded by `push --template`
	Created  time.Time     `json:"created"`            // the build's fixed time
	Path     string        `json:"path"`               // the image in the cache
	Blobs    []Blob        `json:"blobs"`
	Trust    TrustReport   `json:"trust"`
}

// Record is kept with a pulled image: where it came from, its manifest and its signatures, so
// that the trust policy can be applied again later (verify IMG, run) without a network.
type Record struct {
	Ref        string        `json:"ref"`
	Name       string        `json:"name"` // what the policy matches
	Digest     digest.Digest `json:"digest"`
	Manifest   []byte        `json:"manifest"`
	Signatures [][]byte      `json:"signatures,omitempty"`
}

// recordName names a pull record among the cache's records (an older ukernel kept it among the
// cache's state, which prune clears: read there too).
func recordName(revision string) string { return "oci/pulled/" + revision + ".json" }

// WriteRecord keeps a pull record in cache c, under the revision its manifest names. Deploy
// carries a record to another host with the image, so that host applies its own policy to the
// same signatures (CheckPulled, VerifyLocal).
func WriteRecord(c *cache.Cache, rec Record) error {
	im, err := ParseManifest(rec.Manifest)
	if err != nil {
		return fmt.Errorf("pull record: %w", err)
	}
	if digest.FromBytes(rec.Manifest) != rec.Digest {
		return fmt.Errorf("pull record: the manifest is not %s", rec.Digest)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return c.WriteRecord(recordName(im.Revision), b)
}

// remoteImage is a resolved, checked image manifest with its signatures under the policy.
type remoteImage struct {
	ref   Ref
	desc  ocispec.Descriptor
	raw   []byte
	image Image
	sigs  [][]byte
	trust TrustReport
}

// resolve finds ref's image manifest (through an index when ref names one), checks it and
// applies the trust policy before any large blob is read.
func (o *Options) resolve(ctx context.Context, s oras.ReadOnlyGraphTarget, ref Ref) (remoteImage, error) {
	desc, err := s.Resolve(ctx, ref.Reference)
	if err != nil {
		return remoteImage{}, fmt.Errorf("%s: %w", ref, err)
	}
	if ref.IsDigest() && desc.Digest.String() != ref.Reference {
		return remoteImage{}, fmt.Errorf("%s resolved to %s", ref, desc.Digest)
	}
	raw, err := o.fetchSmall(ctx, s, desc, maxManifestSize)
	if err != nil {
		return remoteImage{}, err
	}
	if desc.MediaType == ocispec.MediaTypeImageIndex {
		if desc, err = pickFromIndex(raw); err != nil {
			return remoteImage{}, fmt.Errorf("%s: %w", ref, err)
		}
		if raw, err = o.fetchSmall(ctx, s, desc, maxManifestSize); err != nil {
			return remoteImage{}, err
		}
	}
	im, err := ParseManifest(raw)
	if err != nil {
		return remoteImage{}, fmt.Errorf("%s (%s): %w", ref, desc.Digest, err)
	}
	ri := remoteImage{ref: ref, desc: desc, raw: raw, image: im}
	if ri.sigs, err = o.signatures(ctx, s, desc); err != nil {
		return ri, err
	}
	ri.trust, err = CheckTrust(o.Config, ref.Name(), desc.Digest, raw, ri.sigs)
	return ri, err
}

// fetchSmall reads a manifest or config blob whole, verifying size and digest.
func (o *Options) fetchSmall(ctx context.Context, s oras.ReadOnlyTarget, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	if desc.Size > limit || desc.Size < 0 {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d a %s may have", desc.Digest, desc.Size, limit, desc.MediaType)
	}
	var b []byte
	err := o.fetch(ctx, s, desc, "", func(r io.Reader) (err error) {
		b, err = content.ReadAll(r, desc)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", desc.Digest, err)
	}
	return b, nil
}

// fetch reads a blob into read, retried whole when the transfer breaks and cancelled when no
// byte moves for the stall bound; label, when set, names its progress bar.
func (o *Options) fetch(ctx context.Context, s oras.ReadOnlyTarget, desc ocispec.Descriptor, label string, read func(io.Reader) error) error {
	return withRetry(ctx, o.logger(), desc.Digest.String(), func() error {
		sctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		rc, err := s.Fetch(sctx, desc)
		if err != nil {
			return err
		}
		defer rc.Close()
		st := &stallReader{r: rc, d: o.stall(), cancel: cancel}
		st.timer = newStallTimer(st)
		defer st.timer.Stop()
		var r io.Reader = st
		if label != "" {
			pr := &progressReader{r: st, w: o.Progress, label: label, total: desc.Size}
			defer pr.end()
			r = pr
		}
		err = read(r)
		if err != nil && context.Cause(sctx) != nil && ctx.Err() == nil {
			err = context.Cause(sctx)
		}
		return err
	})
}

// Pull fetches ref into the cache: every blob verified against its digest as it streams, the
// image checked as `inspect` checks it, nothing stored when a check fails.
func Pull(ctx context.Context, refStr string, o PullOptions) (PullResult, error) {
	ref, err := ParseRef(refStr)
	if err != nil {
		return PullResult{}, err
	}
	res, err := pull(ctx, ref, o)
	return res, explain(err, ref)
}

func pull(ctx context.Context, ref Ref, o PullOptions) (PullResult, error) {
	s, err := o.openRead(ctx, ref)
	if err != nil {
		return PullResult{}, err
	}
	ri, err := o.resolve(ctx, s, ref)
	if err != nil {
		return PullResult{}, err
	}
	im := ri.image
	res := PullResult{Ref: ref.WithDigest(ri.desc.Digest).String(), Digest: ri.desc.Digest, Revision: im.Revision,
		Name: im.Manifest.Annotations[AnnotationName], Template: im.Manifest.Annotations[AnnotationTemplate], Created: createdAt(im.Manifest.Annotations), Trust: ri.trust}
	config, err := o.fetchSmall(ctx, s, im.Manifest.Config, maxConfigSize)
	if err != nil {
		return res, err
	}
	res.Blobs = append(res.Blobs, Blob{MediaType: ConfigMediaType, Digest: im.Manifest.Config.Digest, Size: im.Manifest.Config.Size, Moved: true})
	layer := im.Layer()
	moved := false
	if _, err := o.Cache.Path(im.Revision); err != nil {
		if err := o.fetchLayer(ctx, s, im, func(r io.Reader) error { _, err := o.Cache.Put(r, im.Revision); return err }); err != nil {
			return res, err
		}
		moved = true
	}
	res.Blobs = append(res.Blobs, Blob{MediaType: layer.MediaType, Digest: layer.Digest, Size: layer.Size, Moved: moved})
	recordSeen(o.Cache, ref, layer.Digest)
	res.Path = o.Cache.BlobPath(im.Revision)
	if err := checkImage(res.Path, config); err != nil {
		os.Remove(res.Path)
		return res, fmt.Errorf("%s: %w; removed from the cache", res.Ref, err)
	}
	return res, WriteRecord(o.Cache, Record{Ref: res.Ref, Name: ref.Name(), Digest: ri.desc.Digest, Manifest: ri.raw, Signatures: ri.sigs})
}

// checkImage checks a pulled image as inspect does, and that its manifest is the config blob.
func checkImage(path string, config []byte) error {
	im, err := image.Open(path)
	if err != nil {
		return err
	}
	defer im.Close()
	if err := im.Verify().Err(); err != nil {
		return err
	}
	if string(im.RawManifest()) != string(config) {
		return errors.New("the image's manifest.json is not the artifact's config blob")
	}
	return nil
}

// ErrDamaged is wrapped when a blob does not match its digest.
var ErrDamaged = errors.New("does not match its digest: the copy in the registry is damaged or was altered")

// fetchLayer streams the compressed layer into sink, decompressed: its compressed bytes are
// checked against the layer digest, its size against the manifest's, and sink is expected to
// check the uncompressed digest (the revision) before keeping anything.
func (o *Options) fetchLayer(ctx context.Context, s oras.ReadOnlyTarget, im Image, sink func(io.Reader) error) error {
	layer := im.Layer()
	err := o.fetch(ctx, s, layer, "Pulling "+short(layer.Digest), func(r io.Reader) error {
		vr := content.NewVerifyReader(r, layer)
		dec, err := zstd.NewReader(vr, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(1<<27))
		if err != nil {
			return err
		}
		defer dec.Close()
		return sink(&layerStream{dec: dec, vr: vr, size: im.Size})
	})
	if err != nil {
		return fmt.Errorf("layer %s: %w", layer.Digest, err)
	}
	if !o.Progress.TTY() && layer.Size >= 4<<20 {
		o.Progress.Printf("Pulled %s (%s)", short(layer.Digest), cache.HumanSize(layer.Size))
	}
	return nil
}

// layerStream is the decompressed layer. At its end the compressed stream is read to its end
// and checked against the digest; a decompression error is reported as a digest mismatch when
// that is what it was.
type layerStream struct {
	dec  *zstd.Decoder
	vr   *content.VerifyReader
	size int64
	n    int64
}

func (l *layerStream) Read(p []byte) (int, error) {
	n, err := l.dec.Read(p)
	l.n += int64(n)
	if l.n > l.size {
		return n, fmt.Errorf("decompresses to more than the %d bytes the manifest declares", l.size)
	}
	if err == nil {
		return n, nil
	}
	if _, cerr := io.Copy(io.Discard, l.vr); cerr != nil && !errors.Is(cerr, content.ErrMismatchedDigest) && err == io.EOF {
		return n, cerr
	}
	if verr := l.vr.Verify(); errors.Is(verr, content.ErrMismatchedDigest) || errors.Is(verr, content.ErrTrailingData) {
		return n, ErrDamaged
	}
	if err == io.EOF && l.n != l.size {
		return n, fmt.Errorf("decompresses to %d bytes, the manifest declares %d", l.n, l.size)
	}
	return n, err
}
