package registry

import (
	"archive/tar"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/spec"
)

// The image form of a version (docs/oci.md): a container image whose root
// filesystem is the version's files, so a Kubernetes image volume
// (volumes: [{image: {reference: REGISTRY/REPO/NAME/image:TAG}}]) mounts
// the model, and the container runtime pulls it once per node. It is
// served read-only under /v2/REPO/NAME/image/, by tag or by the digest of
// either the version or the image.
//
// The image is an OCI index of the same image for linux/amd64 and
// linux/arm64 (a runtime picks its own platform). Its layers are plain tar
// archives: one per file stored whole or in chunks, in the version's
// order, and one of every packed file and modelx.yaml; past
// maxImageLayers, the remaining files share the last. Entries are written
// the same way every time (root owner, the files' modes, the Unix epoch as
// time), so a layer's digest depends only on its files: an unchanged
// weight file is the same layer in every version, pulled once.
//
// Building the form reads every file once, to digest the layers; nothing
// is stored but the manifests, the two small configs and a record per
// layer. A layer's blob is written on its first GET, from the stored
// files, verified against its digest and linked to the model (a derived
// blob, as in ociview.go). The index is stored and kept with its version,
// so its digest never changes.

// maxImageLayers bounds the layers of an image form: container runtimes
// stack layers with overlay filesystems, which allow a limited number.
const maxImageLayers = 100

// annotationImageOf marks the image form of a modelx version, on its index
// and manifests: the version's manifest digest.
const annotationImageOf = "io.modelx.image.of"

// imagePlatforms are the platforms the image form is published for.
var imagePlatforms = []struct{ os, arch string }{{"linux", "amd64"}, {"linux", "arm64"}}

// layerFile is one file of an image layer: its path, mode and size, and
// where its bytes are (a stored blob, a packed file, chunks).
type layerFile struct {
	Name   string      `json:"name"`
	Mode   os.FileMode `json:"mode"`
	Size   int64       `json:"size"`
	Source derivedBlob `json:"source"`
}

// imageRecordPrefix lists the image form of the model's manifest source.
func imageRecordPrefix(repo, name string, source digest.Digest) string {
	return modelPrefix(repo, name) + imagesDir + "sha256/" + source.Encoded() + "/"
}

// ociImageManifest answers GET and HEAD of /v2/REPO/NAME/image/manifests/REF:
// the image form of the version REF names (a modelx version, or an OCI
// artifact through its modelx view), or a manifest of an image form by
// its own digest.
func (reg *Registry) ociImageManifest(w http.ResponseWriter, r *http.Request) error {
	repo, name, ref, err := manifestParams(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	d, data, err := reg.readManifest(ctx, repo, name, ref)
	if err != nil {
		return err
	}
	oci := spec.IsOCIManifestType(manifestMediaType(data))
	if !oci || !isImageForm(data) { // (a modelx manifest is never part of one)
		if oci {
			if d, data, err = reg.modelxView(ctx, repo, name, d, data); err != nil {
				return err
			}
		}
		if d, data, err = reg.imageView(ctx, repo, name, d, data); err != nil {
			return err
		}
	}
	serveManifest(w, r, d, data, ref.Tag != "")
	return nil
}

// isImageForm reports whether stored manifest bytes are part of an image form.
func isImageForm(data []byte) bool {
	var probe struct {
		Annotations map[string]string `json:"annotations"`
	}
	return json.Unmarshal(data, &probe) == nil && probe.Annotations[annotationImageOf] != ""
}

// imageView returns the digest and bytes of the image form (its index) of
// the model's modelx manifest source, building and storing it the first time.
func (reg *Registry) imageView(ctx context.Context, repo, name string, source digest.Digest, data []byte) (digest.Digest, []byte, error) {
	return reg.view(ctx, repo, name, "image", imageRecordPrefix(repo, name, source), func(ctx context.Context) (digest.Digest, []byte, error) {
		m, err := spec.ParseManifest(data)
		if err != nil {
			return "", nil, err
		}
		return reg.buildImageView(ctx, repo, name, source, m)
	})
}

// buildImageView builds, stores and returns the image form of modelx
// manifest m.
func (reg *Registry) buildImageView(ctx context.Context, repo, name string, source digest.Digest, m *spec.Manifest) (digest.Digest, []byte, error) {
	layers, err := imageLayers(m)
	if err != nil {
		return "", nil, err
	}
	var descs []spec.OCIDescriptor
	var diffIDs []digest.Digest
	for _, files := range layers {
		db, err := reg.digestImageLayer(ctx, files)
		if err != nil {
			return "", nil, err
		}
		if err := reg.writeRecord(ctx, derivedKey(repo, name, db.Digest), db); err != nil {
			return "", nil, err
		}
		descs = append(descs, spec.OCIDescriptor{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: db.Digest, Size: db.Size})
		diffIDs = append(diffIDs, db.Digest)
	}
	marker := map[string]string{annotationImageOf: string(source)}
	index := spec.OCIManifest{SchemaVersion: 2, MediaType: spec.MediaTypeOCIIndex, Annotations: marker}
	for _, p := range imagePlatforms {
		config, err := json.Marshal(map[string]any{
			"architecture": p.arch, "os": p.os, "config": map[string]any{},
			"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
		})
		if err != nil {
			return "", nil, err
		}
		cfg := spec.OCIDescriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: digest.FromBytes(config), Size: int64(len(config))}
		if err := reg.putSmallBlob(ctx, repo, name, cfg.Digest, config); err != nil {
			return "", nil, err
		}
		manifest, err := json.Marshal(spec.OCIManifest{SchemaVersion: 2, MediaType: spec.MediaTypeOCIManifest, Config: &cfg, Layers: descs, Annotations: marker})
		if err != nil {
			return "", nil, err
		}
		md, err := reg.putManifestBytes(ctx, repo, name, manifest)
		if err != nil {
			return "", nil, err
		}
		index.Manifests = append(index.Manifests, spec.OCIDescriptor{MediaType: spec.MediaTypeOCIManifest, Digest: md, Size: int64(len(manifest)),
			Platform: json.RawMessage(fmt.Sprintf(`{"architecture":%q,"os":%q}`, p.arch, p.os))})
	}
	indexData, err := json.Marshal(index)
	if err != nil {
		return "", nil, err
	}
	d, err := reg.saveView(ctx, repo, name, imageRecordPrefix(repo, name, source), indexData)
	return d, indexData, err
}

// imageLayers groups a version's files into the image form's layers: each
// file stored whole or in chunks alone, the packed files and modelx.yaml
// together last, and past maxImageLayers the rest in the last layer.
func imageLayers(m *spec.Manifest) ([][]layerFile, error) {
	var alone [][]layerFile
	small := []layerFile{{Name: cmp.Or(m.Config.Name, spec.ConfigFileName), Mode: modeOr644(m.Config.Mode), Size: m.Config.Size,
		Source: derivedBlob{Digest: m.Config.Digest, Size: m.Config.Size, Blob: m.Config.Digest}}}
	for _, b := range m.Blobs {
		switch b.MediaType {
		case spec.MediaTypePack:
			for _, f := range b.Files {
				small = append(small, layerFile{Name: f.Name, Mode: modeOr644(f.Mode), Size: f.Size,
					Source: derivedBlob{Digest: f.Digest, Size: f.Size, Pack: b.Digest, File: &f}})
			}
		case spec.MediaTypeChunkedFile:
			alone = append(alone, []layerFile{{Name: b.Name, Mode: modeOr644(b.Mode), Size: b.Size,
				Source: derivedBlob{Size: b.Size, Chunks: b.Chunks}}})
		case spec.MediaTypeDirectoryTarGz:
			return nil, spec.Errorf(spec.ErrorManifestInvalid, "the version holds %s as a directory archive, which an older modelx pushed and the image form cannot hold: push the version again with this modelx", b.Name)
		default:
			alone = append(alone, []layerFile{{Name: b.Name, Mode: modeOr644(b.Mode), Size: b.Size,
				Source: derivedBlob{Digest: b.Digest, Size: b.Size, Blob: b.Digest}}})
		}
	}
	if len(alone) >= maxImageLayers { // the rest join the last layer, the small files'
		for _, l := range alone[maxImageLayers-1:] {
			small = append(small, l...)
		}
		alone = alone[:maxImageLayers-1]
	}
	slices.SortFunc(small, func(a, b layerFile) int { return strings.Compare(a.Name, b.Name) })
	return append(alone, small), nil
}

// modeOr644 is a file's permission bits, 0644 when it records none (as
// the original modelx wrote manifests).
func modeOr644(m os.FileMode) os.FileMode {
	if m.Perm() == 0 {
		return 0o644
	}
	return m.Perm()
}

// digestImageLayer writes the tar archive of files once, to learn its
// digest and size, and returns the derived record that makes it.
func (reg *Registry) digestImageLayer(ctx context.Context, files []layerFile) (derivedBlob, error) {
	h := sha256.New()
	n, err := reg.writeImageLayer(ctx, h, files)
	if err != nil {
		return derivedBlob{}, err
	}
	return derivedBlob{Digest: digest.NewDigest(digest.SHA256, h), Size: n, Layer: files}, nil
}

// epoch is the time of every image layer entry.
var epoch = time.Unix(0, 0).UTC()

// writeImageLayer writes the tar archive of files to w: each file's
// parent directories the first time they appear, then the file, with root
// owner and the Unix epoch as time. It returns the archive's size.
func (reg *Registry) writeImageLayer(ctx context.Context, w io.Writer, files []layerFile) (int64, error) {
	counted := &countingWriter{w: w}
	tw := tar.NewWriter(counted)
	dirs := map[string]bool{}
	for _, f := range files {
		var parents []string
		for dir := path.Dir(f.Name); dir != "." && !dirs[dir]; dir = path.Dir(dir) {
			parents = append(parents, dir)
			dirs[dir] = true
		}
		for i := len(parents) - 1; i >= 0; i-- {
			hdr := &tar.Header{Typeflag: tar.TypeDir, Name: parents[i] + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}
			if err := tw.WriteHeader(hdr); err != nil {
				return 0, err
			}
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.Name, Mode: int64(f.Mode.Perm()), Size: f.Size, ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return 0, err
		}
		rc, err := reg.derivedReader(ctx, f.Source)
		if err != nil {
			return 0, err
		}
		_, err = io.CopyN(tw, rc, f.Size)
		rc.Close()
		if err != nil {
			return 0, fmt.Errorf("write %s into an image layer: %w", f.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return 0, err
	}
	return counted.n, nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// imageLayerReader streams the tar archive of an image layer's files as
// it is written.
func (reg *Registry) imageLayerReader(ctx context.Context, files []layerFile) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		_, err := reg.writeImageLayer(ctx, pw, files)
		pw.CloseWithError(err)
	}()
	return pr
}
