package spec

import (
	"time"

	"github.com/opencontainers/go-digest"

	jsonv2 "github.com/go-json-experiment/json"
)

// The blob batch endpoint, POST /REPOSITORY/NAME/blobs/batch, answers for
// many blobs in one request what a blob GET or PUT answers for one: where
// to read it, or whether and where to send it. A registry on S3 with
// redirects hands a presigned URL for each, so a pull or push moves bytes
// to and from the object store straight away instead of asking the
// registry blob by blob: on a network that saves a round trip to the
// registry and one or two from the registry to the store a blob. A
// registry that carries the bytes itself answers without URLs, and the
// client goes through it as before.
const (
	// BatchOperationDownload asks where to read each blob.
	BatchOperationDownload = "download"
	// BatchOperationUpload offers each blob, as a blob PUT without a body
	// does: the answer says it is present, or where to send it.
	BatchOperationUpload = "upload"
	// MaxBatchBlobs bounds the blobs of one batch request.
	MaxBatchBlobs = 1000
	// MaxBatchRequestSize bounds the body of a batch request.
	MaxBatchRequestSize = 256 << 10
)

// BlobBatchRequest is the body of a blob batch request.
type BlobBatchRequest struct {
	Operation string    `json:"operation"`
	Blobs     []BlobRef `json:"blobs"`
	// From, for an upload, names a model ("REPOSITORY/NAME") to mount the
	// blobs from, as a blob PUT's ?from= does.
	From string `json:"from,omitempty"`
}

// BlobRef names a blob and its size.
type BlobRef struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
}

// BlobBatchResponse answers a BlobBatchRequest: one entry for each blob it
// listed, in the same order.
type BlobBatchResponse struct {
	Blobs []BlobLocation `json:"blobs"`
}

// BlobLocation answers for one blob of a batch.
//
// For a download, Href, when set, is a URL to GET the blob from (Range
// requests work), valid until ExpiresAt; without it, the blob is read
// through the registry (GET …/blobs/DIGEST).
//
// For an upload, Present says the model holds the blob now (linked
// already, mounted, or a completed upload committed): nothing is to be
// sent. Mounted says it was mounted from the request's From just now. Else Href, when set, is a URL to PUT the bytes to, with Header and
// Content-Length, valid until ExpiresAt; the model gets the blob when a
// manifest names it. Without either, the bytes go through the registry
// (PUT …/blobs/DIGEST).
//
// Error, when set, is why the blob cannot be read or offered, as a blob
// GET or PUT would answer it (BLOB_UNKNOWN for a blob the model does not
// link).
type BlobLocation struct {
	Digest    digest.Digest     `json:"digest"`
	Size      int64             `json:"size"`
	Present   bool              `json:"present,omitempty"`
	Mounted   bool              `json:"mounted,omitempty"`
	Href      string            `json:"href,omitempty"`
	Header    map[string]string `json:"header,omitempty"`
	ExpiresAt time.Time         `json:"expiresAt,omitzero"`
	Error     *Error            `json:"error,omitempty"`
}

// ParseBlobBatchRequest decodes and checks a batch request: a known
// operation, from only for an upload, 1 to MaxBatchBlobs blobs, each a
// valid digest and a size that is not negative.
func ParseBlobBatchRequest(data []byte) (*BlobBatchRequest, error) {
	var req BlobBatchRequest
	if err := jsonv2.Unmarshal(data, &req); err != nil {
		return nil, Errorf(ErrorParameterInvalid, "the batch request is not valid JSON: %v", err)
	}
	if req.Operation != BatchOperationDownload && req.Operation != BatchOperationUpload {
		return nil, Errorf(ErrorParameterInvalid, "batch operation %q is not supported: use %q or %q", req.Operation, BatchOperationDownload, BatchOperationUpload)
	}
	if req.From != "" && req.Operation != BatchOperationUpload {
		return nil, Errorf(ErrorParameterInvalid, "from names a model to mount from, which only an %q batch does", BatchOperationUpload)
	}
	if len(req.Blobs) == 0 || len(req.Blobs) > MaxBatchBlobs {
		return nil, Errorf(ErrorParameterInvalid, "a batch request lists 1 to %d blobs, not %d: split it", MaxBatchBlobs, len(req.Blobs))
	}
	for i, b := range req.Blobs {
		if err := ValidateDigest(b.Digest); err != nil {
			return nil, Errorf(ErrorDigestInvalid, "blobs[%d]: %s", i, err.(*Error).Message)
		}
		if b.Size < 0 {
			return nil, Errorf(ErrorSizeInvalid, "blobs[%d] (%s): size %d is negative", i, b.Digest, b.Size)
		}
	}
	return &req, nil
}
