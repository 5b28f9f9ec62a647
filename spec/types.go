package spec

import (
	"fmt"
	"os"
	"time"

	"github.com/opencontainers/go-digest"
)

// Media types of modelx documents and blobs. The first four are the ones the
// original modelx wrote, so manifests pushed by it keep parsing.
const (
	// MediaTypeManifest is the media type of a Manifest document.
	MediaTypeManifest = "application/vnd.modelx.model.manifest.v1.json"
	// MediaTypeConfig is the media type of the modelx.yaml config blob.
	MediaTypeConfig = "application/vnd.modelx.model.config.v1.yaml"
	// MediaTypeFile is a blob that holds one whole file.
	MediaTypeFile = "application/vnd.modelx.model.file.v1"
	// MediaTypeDirectoryTarGz is a legacy blob that holds a directory as a gzipped tar.
	MediaTypeDirectoryTarGz = "application/vnd.modelx.model.directory.v1.tar+gz"
	// MediaTypeIndex is the media type of an Index document (a model's tags or the global index).
	MediaTypeIndex = "application/vnd.modelx.model.index.v1.json"
	// MediaTypePack is a blob that holds many small files, each its own zstd
	// frame, concatenated; Descriptor.Files says where each one sits.
	MediaTypePack = "application/vnd.modelx.model.pack.v1+zstd"
	// MediaTypeChunkedFile is a large file stored as content-defined chunk
	// blobs; Descriptor.Chunks lists them in order and the descriptor's
	// digest is ChunkListDigest of that list.
	MediaTypeChunkedFile = "application/vnd.modelx.model.chunked.v1"
)

// DigestHeader is the response header carrying the digest of a blob or
// manifest that the registry serves, stores or redirects to.
const DigestHeader = "Modelx-Content-Digest"

// AnnotationModelSize is set by the registry on each tag of a model index:
// the total size in bytes of the version's files (decimal).
const AnnotationModelSize = "io.modelx.model.size"

// AnnotationImmutableTag is set to "true" by the registry, in the answers
// to a model index request, on tags its policy makes immutable: they can be
// neither moved nor deleted.
const AnnotationImmutableTag = "io.modelx.tag.immutable"

// SchemaVersion is the schemaVersion written into new index and manifest documents.
const SchemaVersion = 1

// ConfigFileName is the file name of the model config inside a model directory.
const ConfigFileName = "modelx.yaml"

// Descriptor points at content: a blob, a manifest or a model, by name and digest.
type Descriptor struct {
	// Name is a file path relative to the model root (blobs), a tag (model
	// index) or "repository/name" (global index).
	Name        string            `json:"name"`
	MediaType   string            `json:"mediaType,omitempty"`
	Digest      digest.Digest     `json:"digest,omitempty"`
	Size        int64             `json:"size"`
	Mode        os.FileMode       `json:"mode,omitempty"`
	Modified    time.Time         `json:"modified,omitzero"`
	URLs        []string          `json:"urls,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Files lists the files inside a pack blob.
	Files []PackedFile `json:"files,omitempty"`
	// Chunks lists, in order, the chunk blobs of a chunked file.
	Chunks []Chunk `json:"chunks,omitempty"`
}

// PackedFile is one file inside a pack: its metadata and where its zstd
// frame sits in the pack blob, so it can be fetched with one Range request
// and verified alone.
type PackedFile struct {
	Name   string        `json:"name"`
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
	Mode   os.FileMode   `json:"mode,omitempty"`
	// Offset and Length locate the file's zstd frame in the pack blob.
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`
}

// Chunk is one content-defined piece of a chunked file, stored as a blob.
type Chunk struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
}

// ChunkListDigest is the identity of a chunked file: the sha256 of one line
// "DIGEST SIZE\n" per chunk, in order. It needs no second pass over the file.
func ChunkListDigest(chunks []Chunk) digest.Digest {
	d := digest.SHA256.Digester()
	for _, c := range chunks {
		fmt.Fprintf(d.Hash(), "%s %d\n", c.Digest, c.Size)
	}
	return d.Digest()
}

// Index lists the tags of one model, or every model in the global index.
type Index struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType,omitempty"`
	Manifests     []Descriptor      `json:"manifests"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// Manifest describes one version of a model: its config blob and its content blobs.
type Manifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType,omitempty"`
	Config        Descriptor        `json:"config"`
	Blobs         []Descriptor      `json:"blobs"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// NewIndex returns an empty index document with schema version and media type set.
func NewIndex() Index {
	return Index{SchemaVersion: SchemaVersion, MediaType: MediaTypeIndex, Manifests: []Descriptor{}}
}

// Find returns the position of the descriptor called name, or -1.
func (idx *Index) Find(name string) int {
	for i := range idx.Manifests {
		if idx.Manifests[i].Name == name {
			return i
		}
	}
	return -1
}

// GCResult reports what one garbage collection did.
type GCResult struct {
	// Scope is "registry" for a collection of the whole registry, or the
	// "REPOSITORY/NAME" of the one model collected.
	Scope            string `json:"scope,omitempty"`
	ManifestsKept    int    `json:"manifestsKept"`
	ManifestsDeleted int    `json:"manifestsDeleted"`
	// ManifestsHeld counts the manifests kept (within ManifestsKept) only
	// because a hold names them; HoldsExpired counts the expired holds
	// dropped.
	ManifestsHeld int `json:"manifestsHeld,omitempty"`
	HoldsExpired  int `json:"holdsExpired,omitempty"`
	// LinksKept and LinksDeleted count links of models to blobs.
	LinksKept    int `json:"linksKept"`
	LinksDeleted int `json:"linksDeleted"`
	// BlobsKept and BlobsDeleted count blobs; only a collection of the
	// whole registry deletes blobs.
	BlobsKept    int   `json:"blobsKept"`
	BlobsDeleted int   `json:"blobsDeleted"`
	BytesFreed   int64 `json:"bytesFreed"`
	// ModelsSkipped counts models kept whole because an index or manifest
	// of theirs could not be read; Problems says which and why (the first
	// ones; the registry log has all).
	ModelsSkipped int      `json:"modelsSkipped,omitempty"`
	Problems      []string `json:"problems,omitempty"`
	// ManifestsYoung, LinksYoung and BlobsYoung count what was kept (within
	// the Kept counts) only because it is younger than the grace period,
	// GracePeriodSeconds: it would have been deleted otherwise. BytesYoung
	// is the size of those blobs. Registries before these fields send none.
	ManifestsYoung     int     `json:"manifestsYoung,omitempty"`
	LinksYoung         int     `json:"linksYoung,omitempty"`
	BlobsYoung         int     `json:"blobsYoung,omitempty"`
	BytesYoung         int64   `json:"bytesYoung,omitempty"`
	GracePeriodSeconds float64 `json:"gracePeriodSeconds,omitempty"`
	DurationSeconds    float64 `json:"durationSeconds"`
}
