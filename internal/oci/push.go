package oci

import (
	"bytes"
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
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/image"
	"github.com/ukernel-dev/ukernel/internal/sign"
)

// PushOptions say what to push and how.
type PushOptions struct {
	Options
	Cache    *cache.Cache     // holds the compressed layer, so a second push compresses nothing
	Template string           // recorded in the manifest when the image is a template's revision
	Key      *sign.PrivateKey // sign the manifest with it (nil: no signature)
}

// Blob is one blob a push or pull moved, or found already there.
type Blob struct {
	MediaType string        `json:"media_type"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	Moved     bool          `json:"transferred"` // false: already there (or in the cache), or mounted from another repository
}

// PushResult is what a push did.
type PushResult struct {
	Ref       string        `json:"ref"`
	Digest    digest.Digest `json:"digest"`   // the image manifest's
	Revision  string        `json:"revision"` // sha256 of the image
	Blobs     []Blob        `json:"blobs"`
	Tagged    bool          `json:"tagged"` // the tag was moved to this manifest (false: it already named it)
	Signature *Blob         `json:"signature,omitempty"`
	KeyID     string        `json:"key_id,omitempty"`
}

// Sent is how many of the image's blobs the push transferred (the rest were there already).
func (r PushResult) Sent() int {
	n := 0
	for _, b := range r.Blobs {
		if b.Moved {
			n++
		}
	}
	return n
}

// Push checks the image at path as `inspect` does and pushes it to ref: the blobs the
// destination lacks, the manifest, the tag, and a signature when a key is given.
func Push(ctx context.Context, path, refStr string, o PushOptions) (PushResult, error) {
	ref, err := ParseRef(refStr)
	if err != nil {
		return PushResult{}, err
	}
	res, err := push(ctx, path, ref, o)
	return res, explain(err, ref)
}

func push(ctx context.Context, path string, ref Ref, o PushOptions) (PushResult, error) {
	info, layer, layerPath, err := prepare(path, o.Cache, o.Template)
	if err != nil {
		return PushResult{}, err
	}
	built, err := BuildManifest(info, layer)
	if err != nil {
		return PushResult{}, err
	}
	man, mdesc := built.Bytes, built.Desc
	if ref.IsDigest() && ref.Reference != mdesc.Digest.String() {
		return PushResult{}, fmt.Errorf("push to %s: the image's manifest is %s; push by tag, or name that digest", ref, mdesc.Digest)
	}
	s, finish, cleanup, err := o.openWrite(ctx, ref)
	if err != nil {
		return PushResult{}, err
	}
	defer cleanup()
	res := PushResult{Ref: ref.WithDigest(mdesc.Digest).String(), Digest: mdesc.Digest, Revision: info.SHA256}

	for _, b := range []struct {
		desc ocispec.Descriptor
		open func() (io.ReadCloser, error)
	}{
		{built.Config, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(info.Raw)), nil }},
		{built.Layer, func() (io.ReadCloser, error) { return os.Open(layerPath) }},
	} {
		moved, err := o.pushBlob(ctx, s, b.desc, b.open, seenIn(o.Cache, ref, b.desc.Digest))
		if err != nil {
			return res, err
		}
		if b.desc.Digest == built.Layer.Digest {
			recordSeen(o.Cache, ref, b.desc.Digest)
		}
		res.Blobs = append(res.Blobs, Blob{MediaType: b.desc.MediaType, Digest: b.desc.Digest, Size: b.desc.Size, Moved: moved})
	}
	if res.Tagged, err = o.pushManifest(ctx, s, ref, mdesc, man); err != nil {
		return res, err
	}
	if o.Key != nil {
		sb, err := o.pushSignature(ctx, s, mdesc, man, info.Manifest.Name, *o.Key)
		if err != nil {
			return res, err
		}
		res.Signature, res.KeyID = &sb, o.Key.ID.String()
	}
	return res, finish()
}

// prepare checks the image and returns its description and its compressed layer, from the cache
// when an earlier push compressed it. An image is checked as inspect checks it before it
// is compressed; one whose layer is cached was checked then (same digest, same bytes).
func prepare(path string, c *cache.Cache, template string) (ImageInfo, ocispec.Descriptor, string, error) {
	im, err := image.Open(path)
	if err != nil {
		return ImageInfo{}, ocispec.Descriptor{}, "", err
	}
	defer im.Close()
	sum, err := im.SHA256()
	if err != nil {
		return ImageInfo{}, ocispec.Descriptor{}, "", err
	}
	info := ImageInfo{SHA256: sum, Size: im.Size(), Manifest: im.Manifest(), Raw: im.RawManifest(), Template: template}
	if layer, p, ok := cachedLayer(c, sum); ok {
		return info, layer, p, nil
	}
	if err := im.Verify().Err(); err != nil {
		return ImageInfo{}, ocispec.Descriptor{}, "", fmt.Errorf("%s: %w; rebuild it before pushing", path, err)
	}
	layer, p, err := compress(c, path, sum)
	return info, layer, p, err
}

// layerRecord maps an image to its compressed layer in the cache.
type layerRecord struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
}

func layerState(sum string) string { return "oci/layers/" + sum + ".json" }

// cachedLayer returns the compressed layer an earlier push made of the image whose SHA-256 is
// sum. Its content is checked by whoever receives it (a registry or layout verifies the digest).
func cachedLayer(c *cache.Cache, sum string) (ocispec.Descriptor, string, bool) {
	b, err := c.ReadState(layerState(sum))
	if err != nil {
		return ocispec.Descriptor{}, "", false
	}
	var r layerRecord
	if json.Unmarshal(b, &r) != nil || r.Digest.Validate() != nil || r.Digest.Algorithm() != digest.SHA256 {
		return ocispec.Descriptor{}, "", false
	}
	p := c.BlobPath(r.Digest.Encoded())
	if fi, err := os.Stat(p); err != nil || fi.Size() != r.Size {
		return ocispec.Descriptor{}, "", false
	}
	return ocispec.Descriptor{MediaType: LayerMediaType, Digest: r.Digest, Size: r.Size}, p, true
}

// compress makes the zstd layer of the image at path (whose SHA-256 is sum) in the cache. The
// compression is single-threaded at a fixed level, so the same image gives the same layer
// digest, and a re-push from another cache finds its blobs in the registry.
func compress(c *cache.Cache, path, sum string) (ocispec.Descriptor, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	defer f.Close()
	pr, pw := io.Pipe()
	go func() {
		enc, err := newEncoder(pw)
		if err == nil {
			_, err = io.Copy(enc, f)
			if cerr := enc.Close(); err == nil {
				err = cerr
			}
		}
		pw.CloseWithError(err)
	}()
	csum, err := c.Put(pr, "")
	pr.CloseWithError(err)
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("compress %s: %w", path, err)
	}
	p := c.BlobPath(csum)
	fi, err := os.Stat(p)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	d := ocispec.Descriptor{MediaType: LayerMediaType, Digest: digest.NewDigestFromEncoded(digest.SHA256, csum), Size: fi.Size()}
	b, _ := json.Marshal(layerRecord{Digest: d.Digest, Size: d.Size})
	if err := c.WriteState(layerState(sum), b); err != nil {
		return ocispec.Descriptor{}, "", err
	}
	return d, p, nil
}

func newEncoder(w io.Writer) (*zstd.Encoder, error) {
	return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
}

// pushBlob pushes one blob unless the destination has it; it reports whether it moved bytes.
// from, when set, is another repository of the same registry known to hold the blob: it is
// mounted from there (no bytes sent) where the registry allows, else sent.
func (o *Options) pushBlob(ctx context.Context, s content.Storage, desc ocispec.Descriptor, open func() (io.ReadCloser, error), from string) (bool, error) {
	ok, err := s.Exists(ctx, desc)
	if err != nil {
		return false, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	if ok {
		o.logger().Debug("blob already there", "digest", desc.Digest)
		return false, nil
	}
	moved := true
	err = withRetry(ctx, o.logger(), desc.Digest.String(), func() error {
		sctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		var st *stallReader
		defer func() {
			if st != nil {
				st.timer.Stop()
			}
		}()
		body := func() (io.ReadCloser, error) {
			rc, err := open()
			if err != nil {
				return nil, err
			}
			st = &stallReader{r: rc, d: o.stall(), cancel: cancel}
			st.timer = newStallTimer(st)
			pr := &progressReader{r: st, w: o.Progress, label: "Pushing " + short(desc.Digest), total: desc.Size}
			return struct {
				io.Reader
				io.Closer
			}{pr, closerFunc(func() error { pr.end(); return rc.Close() })}, nil
		}
		if m, isM := s.(registry.Mounter); isM && from != "" {
			sent := false
			err = m.Mount(sctx, desc, from, func() (io.ReadCloser, error) { sent = true; return body() })
			moved = sent
		} else {
			var r io.ReadCloser
			if r, err = body(); err == nil {
				err = s.Push(sctx, desc, r)
				r.Close()
			}
		}
		if errors.Is(err, errdef.ErrAlreadyExists) {
			return nil
		}
		if err != nil && context.Cause(sctx) != nil && ctx.Err() == nil {
			err = context.Cause(sctx)
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("push blob %s: %w", desc.Digest, err)
	}
	if moved && !o.Progress.TTY() && desc.Size >= 4<<20 {
		o.Progress.Printf("Pushed %s (%s)", short(desc.Digest), cache.HumanSize(desc.Size))
	}
	if !moved {
		o.logger().Debug("blob mounted", "digest", desc.Digest, "from", from)
	}
	return moved, nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// seenState names where a layer was last pushed to or pulled from on a registry.
func seenState(host string, d digest.Digest) string {
	return "oci/seen/" + cache.EntryName(host) + "/" + d.Encoded()
}

// seenIn returns a repository of host that held blob d at the last push or pull, "" if none.
func seenIn(c *cache.Cache, ref Ref, d digest.Digest) string {
	if c == nil || ref.Kind != KindRegistry {
		return ""
	}
	b, err := c.ReadState(seenState(ref.Reg.Registry, d))
	if err != nil || string(b) == ref.Reg.Repository {
		return ""
	}
	return string(b)
}

// recordSeen remembers that ref's repository holds blob d (best effort: it only saves a send).
func recordSeen(c *cache.Cache, ref Ref, d digest.Digest) {
	if c != nil && ref.Kind == KindRegistry {
		_ = c.WriteState(seenState(ref.Reg.Registry, d), []byte(ref.Reg.Repository))
	}
}

func (o *Options) stall() time.Duration {
	if o.Stall > 0 {
		return o.Stall
	}
	return defaultStall
}

func short(d digest.Digest) string {
	e := d.Encoded()
	if len(e) > 12 {
		e = e[:12]
	}
	return string(d.Algorithm()) + ":" + e
}

// pushManifest pushes the manifest unless present and points the tag at it; it reports whether
// the tag moved.
func (o *Options) pushManifest(ctx context.Context, s oras.Target, ref Ref, desc ocispec.Descriptor, man []byte) (bool, error) {
	if !ref.IsDigest() {
		if cur, err := s.Resolve(ctx, ref.Reference); err == nil && cur.Digest == desc.Digest {
			return false, nil
		}
	}
	ok, err := s.Exists(ctx, desc)
	if err != nil {
		return false, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	if ref.IsDigest() {
		if !ok {
			err = s.Push(ctx, desc, bytes.NewReader(man))
		}
		return false, wrapManifest(desc, err)
	}
	if rp, isRP := s.(registry.ReferencePusher); isRP && !ok {
		return true, wrapManifest(desc, rp.PushReference(ctx, desc, bytes.NewReader(man), ref.Reference))
	}
	if !ok {
		if err := s.Push(ctx, desc, bytes.NewReader(man)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
			return false, wrapManifest(desc, err)
		}
	}
	return true, wrapManifest(desc, s.Tag(ctx, desc, ref.Reference))
}

func wrapManifest(desc ocispec.Descriptor, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("push manifest %s: %w", desc.Digest, err)
}

func readCloser(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}
