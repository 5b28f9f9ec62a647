package spec

import (
	"time"

	"github.com/opencontainers/go-digest"

	jsonv2 "github.com/go-json-experiment/json"
)

// The blob batch endpoint, POST /REPOSITORY/NAME/blobs/batch, answers for
// many blobs in one request what a blob GET answers for one: where to read
// it. A registry on S3 with redirects hands a presigned URL for each blob
// the model links, so a pull reads the object store straight away instead
// of asking the registry blob by blob: on a network that saves two round
// trips a blob (client to registry, registry to store). A registry that
// carries the bytes itself answers without URLs, and the client reads
// through it as before.
const (
	// BatchOperationDownload asks where to read each blob.
	BatchOperationDownload = "download"
	// MaxBatchBlobs bounds the blobs of one batch request.
	MaxBatchBlobs = 1000
	// MaxBatchRequestSize bounds the body of a batch request.
	MaxBatchRequestSize = 256 << 10
)

// BlobBatchRequest is the body of a blob batch request.
type BlobBatchRequest struct {
	Operation string    `json:"operation"`
	Blobs     []BlobRef `json:"blobs"`
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

// BlobLocation says where to read one blob of a batch. Href, when set, is
// a URL to GET the blob from (Range requests work), valid until ExpiresAt;
// without it, the blob is read through the registry (GET
// …/blobs/DIGEST). Error, when set, is why the blob cannot be read, as a
// blob GET would answer it (BLOB_UNKNOWN for a blob the model does not
// link).
type BlobLocation struct {
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	Href      string        `json:"href,omitempty"`
	ExpiresAt time.Time     `json:"expiresAt,omitzero"`
	Error     *Error        `json:"error,omitempty"`
}

// ParseBlobBatchRequest decodes and checks a batch request: a known
// operation, 1 to MaxBatchBlobs blobs, each a valid digest and a size that
// is not negative.
func ParseBlobBatchRequest(data []byte) (*BlobBatchRequest, error) {
	var req BlobBatchRequest
	if err := jsonv2.Unmarshal(data, &req); err != nil {
		return nil, Errorf(ErrorParameterInvalid, "the batch request is not valid JSON: %v", err)
	}
	if req.Operation != BatchOperationDownload {
		return nil, Errorf(ErrorParameterInvalid, "batch operation %q is not supported: use %q", req.Operation, BatchOperationDownload)
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
