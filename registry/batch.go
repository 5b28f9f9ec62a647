package registry

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"golang.org/x/sync/errgroup"

	"modelx.io/modelx/spec"
)

// batchBlobs answers a blob batch request (spec.BlobBatchRequest): for
// each blob, where to read it. Its route needs pull on the model. It answers for
// each blob what a GET of it would: a presigned URL in redirect mode, no
// URL when the registry carries the bytes, or BLOB_UNKNOWN for a blob the
// model does not link (or links with another size). The links are read
// statConcurrency at a time.
func (reg *Registry) batchBlobs(w http.ResponseWriter, r *http.Request) error {
	repo, name, err := model(r)
	if err != nil {
		return err
	}
	if r.ContentLength > spec.MaxBatchRequestSize {
		return spec.Errorf(spec.ErrorTooLarge, "the batch request is %d bytes, over the limit of %d: split it", r.ContentLength, spec.MaxBatchRequestSize)
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, spec.MaxBatchRequestSize+1))
	if err != nil {
		return spec.Errorf(spec.ErrorParameterInvalid, "reading the batch request failed: %v", err)
	}
	if len(data) > spec.MaxBatchRequestSize {
		return spec.Errorf(spec.ErrorTooLarge, "the batch request is over the limit of %d bytes: split it", spec.MaxBatchRequestSize)
	}
	req, err := spec.ParseBlobBatchRequest(data)
	if err != nil {
		return err
	}
	ctx := r.Context()
	resp := spec.BlobBatchResponse{Blobs: make([]spec.BlobLocation, len(req.Blobs))}
	expires := reg.now().Add(reg.opts.PresignExpiry).UTC()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(statConcurrency)
	for i, b := range req.Blobs {
		g.Go(func() error {
			loc := &resp.Blobs[i]
			loc.Digest, loc.Size = b.Digest, b.Size
			size, err := reg.blobLinkedTo(gctx, repo, name, b.Digest)
			if apiErr := (*spec.Error)(nil); errors.As(err, &apiErr) {
				loc.Error = apiErr
				return nil
			}
			if err != nil {
				return err
			}
			if size != b.Size {
				loc.Error = spec.Errorf(spec.ErrorSizeInvalid, "blob %s has %d bytes, not %d", b.Digest, size, b.Size)
				return nil
			}
			if reg.presign == nil {
				return nil
			}
			pr, err := reg.presign.PresignGet(gctx, blobKey(b.Digest), reg.opts.PresignExpiry)
			if err != nil {
				return internal("presign blob download", err)
			}
			loc.Href, loc.ExpiresAt = pr.URL, expires
			reg.metrics.redirects.WithLabelValues("download").Inc()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(resp)
}
