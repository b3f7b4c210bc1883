// Package oci moves ukernel images through OCI registries, OCI layout directories and OCI
// archives: the artifact format (this file), references and transports (ref.go, transport.go),
// push, pull and verify, and the signatures attached as referrers (signature.go).
//
// An image is an OCI image manifest (image-spec 1.1) with artifactType ArtifactType. Its config
// blob is the image's manifest.json as stored in the image (what `ukernel inspect` shows), its
// one layer the disk image compressed with zstd. An index of such manifests (one per
// architecture or variant) is followed to the manifest whose platform matches this host; a
// snapshot is a separate artifact (its own artifactType) whose `subject` is the image manifest,
// so it is listed, like a signature, among the image's referrers.
package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// Media types of the format.
const (
	ArtifactType    = "application/vnd.ukernel.image.v1"
	ConfigMediaType = "application/vnd.ukernel.image.manifest.v1+json" // the image's manifest.json
	LayerMediaType  = "application/vnd.ukernel.image.disk.v1+zstd"     // the GPT disk image, zstd
	// SignatureArtifactType is a referrer whose one layer is a minisign signature of the
	// manifest it refers to (its bytes, whose SHA-256 is the digest).
	SignatureArtifactType   = "application/vnd.ukernel.signature.v1"
	SignatureLayerMediaType = "application/vnd.ukernel.signature.minisign.v1"
)

// Annotation keys. The OCI ones are the standard keys; the rest are ukernel's.
const (
	AnnotationCreated  = ocispec.AnnotationCreated // the build's fixed time (SOURCE_DATE_EPOCH)
	AnnotationTitle    = ocispec.AnnotationTitle
	AnnotationRevision = "dev.ukernel.image.revision" // sha256:<hex> of the uncompressed image: its revision id
	AnnotationABI      = "dev.ukernel.image.abi"
	AnnotationName     = "dev.ukernel.image.name"
	AnnotationVerity   = "dev.ukernel.image.verity.root-hash" // when the root is sealed
	AnnotationTemplate = "dev.ukernel.template"               // the template pushed, with --template
	AnnotationSize     = "dev.ukernel.image.size"             // the layer's uncompressed size
	AnnotationKeyID    = "dev.ukernel.signature.key-id"       // minisign key ID of a signature
)

// Limits on what a registry may hand over before it is parsed.
const (
	maxManifestSize = 4 << 20
	maxConfigSize   = 4 << 20
	maxSigSize      = 4 << 10
)

// ImageInfo is what the format records about one image.
type ImageInfo struct {
	SHA256   string // hex of the uncompressed image (the revision id)
	Size     int64  // uncompressed size
	Manifest abi.Manifest
	Raw      []byte // manifest.json as stored in the image: the config blob
	Template string // template name, when pushed from one
}

// Descriptor returns the descriptor of a blob.
func Descriptor(mediaType string, b []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

// Built is a manifest made by BuildManifest, with the descriptors of it and its blobs.
type Built struct {
	Bytes  []byte
	Desc   ocispec.Descriptor
	Config ocispec.Descriptor
	Layer  ocispec.Descriptor
}

// BuildManifest returns the image manifest for an image whose compressed layer is layer
// (digest and size; the rest is set here). The bytes are deterministic: the same image and
// layer give the same manifest digest on any machine.
func BuildManifest(info ImageInfo, layer ocispec.Descriptor) (Built, error) {
	m := info.Manifest
	layer.MediaType = LayerMediaType
	layer.Annotations = map[string]string{
		AnnotationTitle: m.Name + ".img",
		AnnotationSize:  strconv.FormatInt(info.Size, 10),
	}
	ann := map[string]string{
		AnnotationCreated:  time.Unix(m.Build.SourceDateEpoch, 0).UTC().Format(time.RFC3339),
		AnnotationRevision: "sha256:" + info.SHA256,
		AnnotationABI:      m.ABI,
		AnnotationName:     m.Name,
	}
	if m.Root.Verity != nil {
		ann[AnnotationVerity] = m.Root.Verity.RootHash
	}
	if info.Template != "" {
		ann[AnnotationTemplate] = info.Template
	}
	man := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType,
		Config:       Descriptor(ConfigMediaType, info.Raw),
		Layers:       []ocispec.Descriptor{layer},
		Annotations:  ann,
	}
	b, err := json.Marshal(man)
	if err != nil {
		return Built{}, err
	}
	d := Descriptor(ocispec.MediaTypeImageManifest, b)
	d.ArtifactType = ArtifactType
	return Built{Bytes: b, Desc: d, Config: man.Config, Layer: layer}, nil
}

// Image is a parsed, checked image manifest.
type Image struct {
	Manifest ocispec.Manifest
	Revision string // hex SHA-256 of the uncompressed image
	Size     int64  // uncompressed size
}

// Layer returns the compressed disk image's descriptor.
func (im Image) Layer() ocispec.Descriptor { return im.Manifest.Layers[0] }

// ErrNotImage means a manifest is not a ukernel image.
var ErrNotImage = errors.New("not a ukernel image")

// ParseManifest decodes and checks an image manifest fetched from anywhere: one config blob of
// the image's manifest.json, one zstd disk layer, the revision and size annotations.
func ParseManifest(b []byte) (Image, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Image{}, fmt.Errorf("image manifest: %w", err)
	}
	if m.SchemaVersion != 2 || m.MediaType != ocispec.MediaTypeImageManifest {
		return Image{}, fmt.Errorf("%w: media type %q, schema %d (expected an OCI image manifest)", ErrNotImage, m.MediaType, m.SchemaVersion)
	}
	if m.ArtifactType != ArtifactType {
		return Image{}, fmt.Errorf("%w: artifact type %q, expected %s", ErrNotImage, m.ArtifactType, ArtifactType)
	}
	if m.Config.MediaType != ConfigMediaType || m.Config.Size <= 0 || m.Config.Size > maxConfigSize {
		return Image{}, fmt.Errorf("%w: config %s of %d bytes", ErrNotImage, m.Config.MediaType, m.Config.Size)
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != LayerMediaType || m.Layers[0].Size <= 0 {
		return Image{}, fmt.Errorf("%w: expected one layer of type %s", ErrNotImage, LayerMediaType)
	}
	for _, d := range []ocispec.Descriptor{m.Config, m.Layers[0]} {
		if err := d.Digest.Validate(); err != nil || d.Digest.Algorithm() != digest.SHA256 {
			return Image{}, fmt.Errorf("%w: blob digest %q is not a sha256 digest", ErrNotImage, d.Digest)
		}
	}
	rev := digest.Digest(m.Annotations[AnnotationRevision])
	if rev.Validate() != nil || rev.Algorithm() != digest.SHA256 {
		return Image{}, fmt.Errorf("%w: annotation %s is %q, expected sha256:<hex>", ErrNotImage, AnnotationRevision, rev)
	}
	size, err := strconv.ParseInt(m.Layers[0].Annotations[AnnotationSize], 10, 64)
	if err != nil || size <= 0 {
		return Image{}, fmt.Errorf("%w: layer annotation %s is %q, expected a size in bytes", ErrNotImage, AnnotationSize, m.Layers[0].Annotations[AnnotationSize])
	}
	return Image{Manifest: m, Revision: rev.Encoded(), Size: size}, nil
}

// pickFromIndex chooses, in an index, the ukernel image for this host: the first manifest of
// ArtifactType whose platform, when given, is this host's.
func pickFromIndex(b []byte) (ocispec.Descriptor, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("image index: %w", err)
	}
	var types []string
	for _, d := range idx.Manifests {
		if d.ArtifactType != ArtifactType || d.MediaType != ocispec.MediaTypeImageManifest {
			types = append(types, d.ArtifactType)
			continue
		}
		if p := d.Platform; p != nil && (p.Architecture != runtime.GOARCH || p.OS != "" && p.OS != "linux") {
			continue
		}
		return d, nil
	}
	return ocispec.Descriptor{}, fmt.Errorf("%w: the index lists no %s manifest for linux/%s (artifact types: %q)", ErrNotImage, ArtifactType, runtime.GOARCH, types)
}
