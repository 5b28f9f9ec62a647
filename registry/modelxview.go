package registry

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"sigs.k8s.io/yaml"

	"modelx.io/modelx/spec"
)

// The modelx view of an OCI artifact (docs/oci.md): the other way round
// from ociview.go. A GET of an OCI image manifest through modelx's own
// API answers a modelx manifest of the same files, so `modelx pull` (and
// everything built on it: the controller's init containers, KServe's
// storage container) reads what oras, modctl or crane pushed:
//
//   - a layer named by org.opencontainers.image.title or
//     org.cncf.model.filepath is a file of that path, stored whole: the
//     layer's blob itself;
//   - a tar layer (plain, gzip or zstd; ModelPack's weight.v1.tar, an
//     image layer, a directory oras pushed) gives one file per regular
//     entry, at the entry's path, each a derived blob made from the layer
//     on first GET (ociview.go);
//   - a layer named modelx.yaml is the version's config; without one the
//     view writes a modelx.yaml that describes the artifact.
//
// Later layers win over earlier ones for the same path, as in an image.
// Entries that are not regular files (links, devices, whiteouts) are left
// out. Like the OCI view, the modelx view is built once, stored and kept
// with its source, so its digest never changes.

// Annotations OCI clients put on layers and manifests.
const (
	annotationDescription = "org.opencontainers.image.description"
	// annotationArtifactType records, in a synthesized modelx.yaml, the
	// artifact type of the OCI manifest it describes.
	annotationArtifactType = "io.modelx.oci.artifactType"
)

// Bounds of a tar layer read to build a view: the entries it may list and
// how far a compressed layer may expand.
const (
	maxTarEntries   = 100_000
	maxTarExpansion = 100
	minTarExpansion = 1 << 30
)

// modelxView returns the digest and bytes of the modelx view of the
// model's OCI image manifest source (of bytes data), building and storing
// it the first time.
func (reg *Registry) modelxView(ctx context.Context, repo, name string, source digest.Digest, data []byte) (digest.Digest, []byte, error) {
	m, err := spec.ParseOCIManifest(data, "")
	if err != nil {
		return "", nil, err
	}
	if m.IsIndex() {
		var list []string
		for _, desc := range m.Manifests {
			list = append(list, string(desc.Digest))
		}
		return "", nil, spec.Errorf(spec.ErrorManifestInvalid, "%s of %s/%s is an OCI index, a list of manifests, which modelx cannot pull as one version: pull one of its manifests by digest", source, repo, name).
			WithDetail(map[string]any{"manifests": list})
	}
	return reg.view(ctx, repo, name, "modelx", viewRecordPrefix(repo, name, source), func(ctx context.Context) (digest.Digest, []byte, error) {
		return reg.buildModelxView(ctx, repo, name, source, m)
	})
}

// buildModelxView builds, stores and returns the modelx view of OCI
// manifest m.
func (reg *Registry) buildModelxView(ctx context.Context, repo, name string, source digest.Digest, m *spec.OCIManifest) (digest.Digest, []byte, error) {
	files := map[string]spec.Descriptor{}
	var derived []derivedBlob
	for i, l := range m.Layers {
		if spec.IsNondistributable(l.MediaType) {
			continue
		}
		if compression, ok := tarLayer(l); ok {
			entries, err := reg.tarEntries(ctx, l, compression)
			if err != nil {
				return "", nil, spec.Errorf(spec.ErrorManifestInvalid, "layers[%d] (%s) of %s cannot be read as a tar archive: %v", i, l.MediaType, source, err)
			}
			for _, e := range entries {
				files[e.file.Name] = e.file
				derived = append(derived, e.derived)
			}
			continue
		}
		filePath := layerPath(l)
		if filePath == "" {
			continue // a layer that names no file: nothing to write
		}
		if err := spec.ValidatePath(filePath); err != nil {
			return "", nil, spec.Errorf(spec.ErrorManifestInvalid, "layers[%d] of %s names the file %q, which modelx cannot write: %v", i, source, filePath, err)
		}
		files[filePath] = spec.Descriptor{Name: filePath, MediaType: spec.MediaTypeFile, Digest: l.Digest, Size: l.Size, Mode: layerMode(l)}
	}
	config, ok := files[spec.ConfigFileName]
	if ok {
		delete(files, spec.ConfigFileName)
	} else {
		data, err := describeArtifact(m)
		if err != nil {
			return "", nil, err
		}
		config = spec.Descriptor{Name: spec.ConfigFileName, Digest: digest.FromBytes(data), Size: int64(len(data)), Mode: 0o644}
		if err := reg.putSmallBlob(ctx, repo, name, config.Digest, data); err != nil {
			return "", nil, err
		}
	}
	config.MediaType = spec.MediaTypeConfig
	view := spec.Manifest{SchemaVersion: spec.SchemaVersion, MediaType: spec.MediaTypeManifest, Config: config,
		Blobs: make([]spec.Descriptor, 0, len(files)), Annotations: map[string]string{annotationViewOf: string(source)}}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		view.Blobs = append(view.Blobs, files[name])
	}
	viewData, err := json.Marshal(view)
	if err != nil {
		return "", nil, err
	}
	if _, err := spec.ParseManifest(viewData); err != nil {
		// Paths each valid alone may still clash (a file "a" and "a/b").
		var apiErr *spec.Error
		if errors.As(err, &apiErr) {
			err = errors.New(apiErr.Message)
		}
		return "", nil, spec.Errorf(spec.ErrorManifestInvalid, "the files of %s cannot be a modelx version: %v", source, err)
	}
	for _, db := range derived {
		if err := reg.writeRecord(ctx, derivedKey(repo, name, db.Digest), db); err != nil {
			return "", nil, err
		}
	}
	d, err := reg.saveView(ctx, repo, name, viewRecordPrefix(repo, name, source), viewData)
	return d, viewData, err
}

// describeArtifact is the modelx.yaml of an artifact that has none: its
// description annotation, or its type.
func describeArtifact(m *spec.OCIManifest) ([]byte, error) {
	artifactType := m.ArtifactTypeOf()
	cfg := spec.ModelConfig{Description: m.Annotations[annotationDescription]}
	if cfg.Description == "" {
		cfg.Description = "OCI artifact"
		if artifactType != "" {
			cfg.Description += " of type " + artifactType
		}
	}
	if artifactType != "" {
		cfg.Annotations = map[string]string{annotationArtifactType: artifactType}
	}
	return yaml.Marshal(cfg)
}

// layerPath is the file path a layer's annotations give it, cleaned.
func layerPath(l spec.OCIDescriptor) string {
	p := l.Annotations[annotationFilepath]
	if p == "" {
		p = l.Annotations[annotationTitle]
	}
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

// layerMode is the permission bits of a layer's file metadata annotation,
// or 0644.
func layerMode(l spec.OCIDescriptor) os.FileMode {
	var meta fileMetadata
	if json.Unmarshal([]byte(l.Annotations[annotationFileMetadata]), &meta) == nil && meta.Mode != 0 {
		return os.FileMode(meta.Mode).Perm()
	}
	return 0o644
}

// annotationUnpack marks a layer oras made of a directory: a tar+gzip
// archive to unpack.
const annotationUnpack = "io.deis.oras.content.unpack"

// tarLayer reports whether a layer is a tar archive whose entries are the
// files, and its compression ("", "gzip" or "zstd"): a directory oras
// pushed, a ModelPack tar layer, or an image layer (which names no file).
// A layer that names its file is that file, whatever its type: oras gives
// every file it pushes the image layer type.
func tarLayer(l spec.OCIDescriptor) (compression string, ok bool) {
	t := l.MediaType
	switch {
	case strings.HasSuffix(t, "+gzip"), strings.HasSuffix(t, ".gzip"), strings.HasSuffix(t, ".tar.gz"):
		compression = "gzip"
	case strings.HasSuffix(t, "+zstd"), strings.HasSuffix(t, ".zstd"):
		compression = "zstd"
	case strings.HasSuffix(t, ".tar"), strings.HasSuffix(t, ".tar.v1"):
	default:
		return "", false
	}
	modelPackTar := strings.HasPrefix(t, "application/vnd.cncf.model.")
	return compression, l.Annotations[annotationUnpack] == "true" || modelPackTar || layerPath(l) == ""
}

// tarEntry is a regular file of a tar layer: its modelx descriptor and how
// to make its blob.
type tarEntry struct {
	file    spec.Descriptor
	derived derivedBlob
}

// tarEntries reads tar layer l once and returns its regular files with
// their sha256s and where their bytes sit in the (decompressed) stream.
func (reg *Registry) tarEntries(ctx context.Context, l spec.OCIDescriptor, compression string) ([]tarEntry, error) {
	rc, _, err := reg.store.Reader(ctx, blobKey(l.Digest), 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	stream, err := decompress(rc, compression)
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	budget := max(int64(minTarExpansion), l.Size*maxTarExpansion)
	counted := &countingStream{r: io.LimitReader(stream, budget)}
	tr := tar.NewReader(counted)
	var out []tarEntry
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(out) >= maxTarEntries {
			return nil, fmt.Errorf("more than %d entries", maxTarEntries)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		rel := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		if strings.HasPrefix(path.Base(rel), ".wh.") || spec.ValidatePath(rel) != nil {
			continue // a whiteout, or a name modelx cannot write
		}
		offset := counted.n
		h := sha256.New()
		if _, err := io.Copy(h, tr); err != nil {
			return nil, err
		}
		d := digest.NewDigest(digest.SHA256, h)
		out = append(out, tarEntry{
			file:    spec.Descriptor{Name: rel, MediaType: spec.MediaTypeFile, Digest: d, Size: hdr.Size, Mode: os.FileMode(hdr.Mode).Perm()},
			derived: derivedBlob{Digest: d, Size: hdr.Size, Tar: l.Digest, Compression: compression, Offset: offset},
		})
	}
}

// decompress returns r decompressed as compression says.
func decompress(r io.Reader, compression string) (io.ReadCloser, error) {
	switch compression {
	case "gzip":
		return gzip.NewReader(r)
	case "zstd":
		dec, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return dec.IOReadCloser(), nil
	default:
		return io.NopCloser(r), nil
	}
}

// countingStream counts the bytes read through it.
type countingStream struct {
	r io.Reader
	n int64
}

func (c *countingStream) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// tarEntryReader opens the bytes of a derived tar entry: straight from the
// blob at its offset when the layer is not compressed, else by reading the
// decompressed stream up to it.
func (reg *Registry) tarEntryReader(ctx context.Context, db derivedBlob) (io.ReadCloser, error) {
	if db.Compression == "" {
		rc, _, err := reg.store.Reader(ctx, blobKey(db.Tar), db.Offset, db.Size)
		return rc, err
	}
	rc, _, err := reg.store.Reader(ctx, blobKey(db.Tar), 0, -1)
	if err != nil {
		return nil, err
	}
	stream, err := decompress(rc, db.Compression)
	if err != nil {
		rc.Close()
		return nil, err
	}
	if _, err := io.CopyN(io.Discard, stream, db.Offset); err != nil {
		stream.Close()
		rc.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(stream, db.Size), closers{stream, rc}}, nil
}

// closers closes each of its closers.
type closers []io.Closer

func (cs closers) Close() error {
	var first error
	for _, c := range cs {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
