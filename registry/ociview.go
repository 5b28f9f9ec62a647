package registry

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/client/pack"
	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
)

// Views: the same version in the other API's terms. This file holds the
// OCI view of a modelx version and what both kinds of view share (stored
// views, derived layers); modelxview.go holds the modelx view of an OCI
// artifact.
//
// The OCI view of a modelx version (docs/oci.md). A GET of a modelx
// version through /v2/ answers a CNCF ModelPack manifest: artifactType
// application/vnd.cncf.model.manifest.v1+json, a ModelPack config, and one
// raw layer per file (modelx.yaml included), titled with the file's path.
//
// Nothing is uploaded again. A file stored whole is its own layer. A file
// in a pack or cut into chunks becomes a layer whose digest is the file's
// sha256: known from the manifest for a packed file, computed once, by
// reading the chunks, for a chunked one. Such a layer is derived: a record
// under the model (derived/sha256/HEX) says how to make it, and the first
// GET of it makes the blob from the pack's frame or the chunks, verifies
// it against its digest, stores it and links it to the model, as any
// upload. The view manifest itself is built on its first GET and stored
// as a manifest of the model, with a record (views/sha256/SOURCE/VIEW)
// that keeps it as long as the modelx manifest it shows, so its digest
// never changes.

// Media types and annotations of the CNCF ModelPack specification.
const (
	modelPackArtifactType  = "application/vnd.cncf.model.manifest.v1+json"
	modelPackConfigType    = "application/vnd.cncf.model.config.v1+json"
	modelPackWeightRaw     = "application/vnd.cncf.model.weight.v1.raw"
	modelPackWeightConfig  = "application/vnd.cncf.model.weight.config.v1.raw"
	modelPackDocRaw        = "application/vnd.cncf.model.doc.v1.raw"
	modelPackCodeRaw       = "application/vnd.cncf.model.code.v1.raw"
	modelPackWeightTarGzip = "application/vnd.cncf.model.weight.v1.tar+gzip"
	annotationFilepath     = "org.cncf.model.filepath"
	annotationFileMetadata = "org.cncf.model.file.metadata+json"
	annotationTitle        = "org.opencontainers.image.title"
	// annotationViewOf names, on a view, the manifest it shows.
	annotationViewOf = "io.modelx.manifest.digest"
)

// derivedBlob is the record of a layer the OCI view names but the model
// does not store as such: how to make it.
type derivedBlob struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
	// Pack and File locate a packed file: its frame in the pack blob.
	Pack digest.Digest    `json:"pack,omitempty"`
	File *spec.PackedFile `json:"file,omitempty"`
	// Chunks are a chunked file's chunk blobs, in order.
	Chunks []spec.Chunk `json:"chunks,omitempty"`
	// Tar, Compression and Offset locate an entry of a tar layer: its
	// bytes start at Offset of the layer's decompressed stream.
	Tar         digest.Digest `json:"tar,omitempty"`
	Compression string        `json:"compression,omitempty"`
	Offset      int64         `json:"offset,omitempty"`
	// Blob is a blob the model stores, as is: a file stored whole, inside
	// an image layer.
	Blob digest.Digest `json:"blob,omitempty"`
	// Layer lists the files of an image layer (imageview.go), a tar archive
	// of them.
	Layer []layerFile `json:"layer,omitempty"`
}

// fileMetadata is the value of annotationFileMetadata.
type fileMetadata struct {
	Name     string    `json:"name"`
	Mode     uint32    `json:"mode"`
	UID      uint32    `json:"uid"`
	GID      uint32    `json:"gid"`
	Size     int64     `json:"size"`
	ModTime  time.Time `json:"mtime"`
	Typeflag byte      `json:"typeflag"`
}

// modelPackConfig is the ModelPack config blob of a view.
type modelPackConfig struct {
	Descriptor struct {
		Description string `json:"description,omitempty"`
	} `json:"descriptor"`
	ModelFS struct {
		Type    string          `json:"type"`
		DiffIDs []digest.Digest `json:"diffIds"`
	} `json:"modelfs"`
	Config struct {
		Format string `json:"format,omitempty"`
	} `json:"config"`
}

// viewRecordPrefix lists the view of the model's manifest source.
func viewRecordPrefix(repo, name string, source digest.Digest) string {
	return modelPrefix(repo, name) + viewsDir + "sha256/" + source.Encoded() + "/"
}

func derivedKey(repo, name string, d digest.Digest) string {
	return modelPrefix(repo, name) + derivedDir + "sha256/" + d.Encoded()
}

// ociView returns the digest and bytes of the OCI view of the model's
// modelx manifest source (of bytes data), building and storing it the first
// time.
func (reg *Registry) ociView(ctx context.Context, repo, name string, source digest.Digest, data []byte) (digest.Digest, []byte, error) {
	return reg.view(ctx, repo, name, "oci", viewRecordPrefix(repo, name, source), func(ctx context.Context) (digest.Digest, []byte, error) {
		m, err := spec.ParseManifest(data)
		if err != nil {
			return "", nil, err
		}
		return reg.buildView(ctx, repo, name, source, m)
	})
}

// view returns the view of a kind ("oci", "modelx", "image") that the
// model stores under the record prefix, or builds it (buildOnce).
func (reg *Registry) view(ctx context.Context, repo, name, kind, prefix string, build func(context.Context) (digest.Digest, []byte, error)) (digest.Digest, []byte, error) {
	if d, data, ok, err := reg.storedRecordView(ctx, repo, name, prefix); err != nil || ok {
		return d, data, err
	}
	return reg.buildOnce(ctx, kind+" "+prefix, build)
}

// builtView is what a view build returns.
type builtView struct {
	digest digest.Digest
	data   []byte
}

// buildOnce runs build once at a time per key in this process, detached
// from the request: a client that gives up (a kubelet's timeout, say)
// leaves the build to finish, and its retry joins the build or finds the
// view stored.
func (reg *Registry) buildOnce(ctx context.Context, key string, build func(context.Context) (digest.Digest, []byte, error)) (digest.Digest, []byte, error) {
	ch := reg.builds.DoChan(key, func() (any, error) {
		d, data, err := build(context.WithoutCancel(ctx))
		return builtView{d, data}, err
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return "", nil, res.Err
		}
		v := res.Val.(builtView)
		return v.digest, v.data, nil
	case <-ctx.Done():
		return "", nil, ctx.Err()
	}
}

// storedRecordView returns the manifest a view record under prefix names,
// if the model stores it.
func (reg *Registry) storedRecordView(ctx context.Context, repo, name, prefix string) (digest.Digest, []byte, bool, error) {
	var view digest.Digest
	err := reg.store.List(ctx, prefix, func(info storage.Info) error {
		view = digest.NewDigestFromEncoded(digest.SHA256, path.Base(info.Key))
		return nil
	})
	if err != nil {
		return "", nil, false, internal("list views", err)
	}
	if view.Validate() != nil {
		return "", nil, false, nil
	}
	_, data, err := reg.readManifest(ctx, repo, name, spec.Reference{Digest: view})
	var apiErr *spec.Error
	if errors.As(err, &apiErr) && apiErr.Code == spec.ErrorManifestUnknown {
		return "", nil, false, nil // collected or deleted: built again, to the same bytes
	}
	return view, data, err == nil, err
}

// saveView stores a view's bytes as a manifest of the model, recorded
// under prefix (viewRecordPrefix, imageRecordPrefix) as the view of its
// source, and returns its digest.
func (reg *Registry) saveView(ctx context.Context, repo, name, prefix string, data []byte) (digest.Digest, error) {
	d, err := reg.putManifestBytes(ctx, repo, name, data)
	if err != nil {
		return "", err
	}
	if err := reg.store.Put(ctx, prefix+d.Encoded(), bytes.NewReader(nil), 0, nil); err != nil {
		return "", internal("record view", err)
	}
	return d, nil
}

// putManifestBytes stores bytes the registry made as a manifest of the model.
func (reg *Registry) putManifestBytes(ctx context.Context, repo, name string, data []byte) (digest.Digest, error) {
	d := digest.FromBytes(data)
	sum, _ := digestSum(d)
	if err := reg.store.Put(ctx, manifestKey(repo, name, d), bytes.NewReader(data), int64(len(data)), sum); err != nil {
		return "", internal("store manifest", err)
	}
	return d, nil
}

// buildView builds, stores and returns the OCI view of modelx manifest m.
func (reg *Registry) buildView(ctx context.Context, repo, name string, source digest.Digest, m *spec.Manifest) (digest.Digest, []byte, error) {
	var layers []spec.OCIDescriptor
	var derived []derivedBlob
	addFile := func(filePath string, d digest.Digest, size int64, mode os.FileMode) {
		meta, _ := json.Marshal(fileMetadata{Name: filePath, Mode: uint32(modeOr644(mode)), Size: size, ModTime: epoch, Typeflag: '0'})
		layers = append(layers, spec.OCIDescriptor{MediaType: modelPackMediaType(filePath), Digest: d, Size: size,
			Annotations: map[string]string{annotationFilepath: filePath, annotationTitle: filePath, annotationFileMetadata: string(meta)}})
	}
	addFile(cmp.Or(m.Config.Name, spec.ConfigFileName), m.Config.Digest, m.Config.Size, m.Config.Mode)
	for _, b := range m.Blobs {
		switch b.MediaType {
		case spec.MediaTypePack:
			for _, f := range b.Files {
				addFile(f.Name, f.Digest, f.Size, f.Mode)
				derived = append(derived, derivedBlob{Digest: f.Digest, Size: f.Size, Pack: b.Digest, File: &f})
			}
		case spec.MediaTypeChunkedFile:
			d, err := reg.chunkedFileDigest(ctx, b.Chunks)
			if err != nil {
				return "", nil, err
			}
			addFile(b.Name, d, b.Size, b.Mode)
			derived = append(derived, derivedBlob{Digest: d, Size: b.Size, Chunks: b.Chunks})
		case spec.MediaTypeDirectoryTarGz:
			layers = append(layers, spec.OCIDescriptor{MediaType: modelPackWeightTarGzip, Digest: b.Digest, Size: b.Size,
				Annotations: map[string]string{annotationFilepath: b.Name, annotationTitle: b.Name}})
		default:
			addFile(b.Name, b.Digest, b.Size, b.Mode)
		}
	}
	var cfg modelPackConfig
	cfg.ModelFS.Type = "layers"
	for _, l := range layers {
		cfg.ModelFS.DiffIDs = append(cfg.ModelFS.DiffIDs, l.Digest)
	}
	if data, _, err := storage.ReadAll(ctx, reg.store, blobKey(m.Config.Digest), spec.MaxConfigSize); err == nil {
		if mc, err := spec.ParseModelConfig(data); err == nil {
			cfg.Descriptor.Description, cfg.Config.Format = mc.Description, mc.Framework
		}
	}
	cfgData, err := json.Marshal(cfg)
	if err != nil {
		return "", nil, err
	}
	cfgDesc := spec.OCIDescriptor{MediaType: modelPackConfigType, Digest: digest.FromBytes(cfgData), Size: int64(len(cfgData))}
	if err := reg.putSmallBlob(ctx, repo, name, cfgDesc.Digest, cfgData); err != nil {
		return "", nil, err
	}
	for _, db := range derived {
		if err := reg.writeRecord(ctx, derivedKey(repo, name, db.Digest), db); err != nil {
			return "", nil, err
		}
	}
	view := spec.OCIManifest{SchemaVersion: 2, MediaType: spec.MediaTypeOCIManifest, ArtifactType: modelPackArtifactType,
		Config: &cfgDesc, Layers: layers, Annotations: map[string]string{annotationViewOf: string(source)}}
	viewData, err := json.Marshal(view)
	if err != nil {
		return "", nil, err
	}
	d, err := reg.saveView(ctx, repo, name, viewRecordPrefix(repo, name, source), viewData)
	return d, viewData, err
}

// modelPackMediaType is the ModelPack layer type of a file, by its name:
// documentation, code, configuration of the weights, or weights.
func modelPackMediaType(filePath string) string {
	base := strings.ToLower(path.Base(filePath))
	switch ext := path.Ext(base); {
	case strings.HasPrefix(base, "readme") || strings.HasPrefix(base, "license") || ext == ".md":
		return modelPackDocRaw
	case ext == ".py" || ext == ".sh" || ext == ".ipynb" || ext == ".js":
		return modelPackCodeRaw
	case ext == ".json" || ext == ".yaml" || ext == ".yml" || ext == ".toml" || ext == ".txt" || ext == ".model" || ext == ".tiktoken":
		return modelPackWeightConfig
	default:
		return modelPackWeightRaw
	}
}

// chunkedFileDigest is the sha256 of a chunked file: its chunks read in order.
func (reg *Registry) chunkedFileDigest(ctx context.Context, chunks []spec.Chunk) (digest.Digest, error) {
	h := sha256.New()
	r := reg.chunksReader(ctx, chunks)
	defer r.Close()
	if _, err := io.Copy(h, r); err != nil {
		return "", internal("read chunks", err)
	}
	return digest.NewDigest(digest.SHA256, h), nil
}

// chunksReader reads the blobs of chunks one after another.
func (reg *Registry) chunksReader(ctx context.Context, chunks []spec.Chunk) *partsReader {
	parts := make([]storage.Info, len(chunks))
	for i, c := range chunks {
		parts[i] = storage.Info{Key: blobKey(c.Digest), Size: c.Size}
	}
	return &partsReader{ctx: ctx, store: reg.store, parts: parts}
}

// putSmallBlob stores data, which the registry made, as blob d of the
// model, unless the model links it already.
func (reg *Registry) putSmallBlob(ctx context.Context, repo, name string, d digest.Digest, data []byte) error {
	size := int64(len(data))
	if ok, err := reg.linked(ctx, repo, name, d, size); err != nil || ok {
		return err
	}
	if stored, err := reg.blobStored(ctx, d, size); err != nil {
		return err
	} else if !stored {
		sum, _ := digestSum(d)
		if err := reg.store.Put(ctx, blobKey(d), bytes.NewReader(data), size, sum); err != nil {
			return internal("store blob", err)
		}
	}
	return reg.writeLink(ctx, repo, name, d, size)
}

// writeRecord stores v as JSON at key.
func (reg *Registry) writeRecord(ctx context.Context, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	if err := reg.store.Put(ctx, key, bytes.NewReader(data), int64(len(data)), sum[:]); err != nil {
		return internal("write record", err)
	}
	return nil
}

// maxDerivedRecord bounds a derived record read back. The largest is the
// image form's layer of small files, which lists each packed file with its
// source: up to 2.8 times the manifest's bytes for it (the name and digest
// twice, and the pack's digest), so 4 times the largest manifest.
const maxDerivedRecord = 4 * spec.MaxManifestSize

// materialize makes blob d of the model from its derived record, if the
// model has one: the bytes are made from the pack frame, the chunks or
// the tar entry, verified against d, stored and linked. It returns the
// blob's size and whether it linked d.
func (reg *Registry) materialize(ctx context.Context, repo, name string, d digest.Digest) (int64, bool, error) {
	data, _, err := storage.ReadAll(ctx, reg.store, derivedKey(repo, name, d), maxDerivedRecord)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, false, nil // not derived
	}
	if err != nil {
		return 0, false, internal("read derived record", err)
	}
	var db derivedBlob
	if err := json.Unmarshal(data, &db); err != nil || db.Digest != d {
		return 0, false, fmt.Errorf("derived record of %s in %s/%s is corrupt: %v", d, repo, name, err)
	}
	if err := reg.makeDerived(ctx, db); err != nil {
		return 0, false, err
	}
	if err := reg.writeLink(context.WithoutCancel(ctx), repo, name, d, db.Size); err != nil {
		return 0, false, err
	}
	return db.Size, true, nil
}

// makeDerived stores the blob of a derived record, unless it is stored:
// its bytes, verified against its digest.
func (reg *Registry) makeDerived(ctx context.Context, db derivedBlob) error {
	if stored, err := reg.blobStored(ctx, db.Digest, db.Size); err != nil || stored {
		return err
	}
	rc, err := reg.derivedReader(ctx, db)
	if err != nil {
		return err
	}
	defer rc.Close()
	sum, _ := digestSum(db.Digest)
	if err := reg.store.Put(ctx, blobKey(db.Digest), rc, db.Size, sum); err != nil {
		return internal("store derived blob "+string(db.Digest), err)
	}
	return nil
}

// derivedReader opens the bytes of a derived record: a packed file's
// decoded frame, a chunked file's chunks, a tar entry, a stored blob, or
// an image layer (imageview.go) written as it is read.
func (reg *Registry) derivedReader(ctx context.Context, db derivedBlob) (io.ReadCloser, error) {
	switch {
	case db.File != nil:
		rc, _, err := reg.store.Reader(ctx, blobKey(db.Pack), db.File.Offset, db.File.Length)
		if err != nil {
			return nil, internal("read pack", err)
		}
		frame, err := io.ReadAll(io.LimitReader(rc, db.File.Length))
		rc.Close()
		if err != nil {
			return nil, internal("read pack", err)
		}
		file, err := pack.Decode(frame, *db.File)
		if err != nil {
			return nil, internal("decode packed file", err)
		}
		return io.NopCloser(bytes.NewReader(file)), nil
	case db.Tar != "":
		rc, err := reg.tarEntryReader(ctx, db)
		if err != nil {
			return nil, internal("read tar layer", err)
		}
		return rc, nil
	case db.Blob != "":
		rc, _, err := reg.store.Reader(ctx, blobKey(db.Blob), 0, -1)
		if err != nil {
			return nil, internal("read blob", err)
		}
		return rc, nil
	case db.Layer != nil:
		return reg.imageLayerReader(ctx, db.Layer), nil
	default:
		return reg.chunksReader(ctx, db.Chunks), nil
	}
}

// withDerived serves a blob read with h; a blob the model does not hold
// but a view of it names (a derived layer) is made first, then served.
func (reg *Registry) withDerived(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		err := h(w, r)
		var apiErr *spec.Error
		if !errors.As(err, &apiErr) || apiErr.Code != spec.ErrorBlobUnknown {
			return err // h wrote nothing before a BLOB_UNKNOWN
		}
		repo, name, d, perr := blobParams(r)
		if perr != nil {
			return err
		}
		if _, made, merr := reg.materialize(r.Context(), repo, name, d); merr != nil {
			return merr
		} else if !made {
			return err
		}
		return h(w, r)
	}
}

// viewIfModelx returns the OCI view of a modelx manifest; any other
// manifest is returned as is.
func (reg *Registry) viewIfModelx(ctx context.Context, repo, name string, d digest.Digest, data []byte) (digest.Digest, []byte, error) {
	if manifestMediaType(data) != spec.MediaTypeManifest {
		return d, data, nil
	}
	return reg.ociView(ctx, repo, name, d, data)
}
