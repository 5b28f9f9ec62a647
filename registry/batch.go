package registry

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"golang.org/x/sync/errgroup"

	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/spec"
)

// batchBlobs answers a blob batch request (spec.BlobBatchRequest) for
// each blob as a GET (download) or a body-less PUT (upload) of it would,
// and needs what those need: pull, or push (and pull on the model an
// upload mounts from). A download gets a presigned URL in redirect mode,
// no URL when the registry carries the bytes, or BLOB_UNKNOWN for a blob
// the model does not link (or links with another size). An upload gets
// present, or a presigned PUT URL and its headers in redirect mode, or no
// URL. The blobs are answered statConcurrency at a time.
func (reg *Registry) batchBlobs(w http.ResponseWriter, r *http.Request) error {
	repo, name, err := model(r)
	if err != nil {
		return err
	}
	// The action needed depends on the operation, in the body: a caller
	// with neither is refused before it is read.
	if apiErr := reg.allowed(w, r, modelxAPI, repo+"/"+name, auth.Pull, auth.Push); apiErr != nil {
		return apiErr
	}
	data, err := readRequestBody(r, spec.MaxBatchRequestSize, "the batch request", spec.ErrorParameterInvalid, ": split it")
	if err != nil {
		return err
	}
	req, err := spec.ParseBlobBatchRequest(data)
	if err != nil {
		return err
	}
	action := auth.Pull
	if req.Operation == spec.BatchOperationUpload {
		action = auth.Push
	}
	if apiErr := reg.allowed(w, r, modelxAPI, repo+"/"+name, action); apiErr != nil {
		return apiErr
	}
	if req.From != "" {
		if _, _, err := parseModelName(req.From); err != nil {
			return err
		}
	}
	answer := reg.downloadLocation
	if req.Operation == spec.BatchOperationUpload {
		answer = reg.uploadLocation
	}
	ctx := r.Context()
	resp := spec.BlobBatchResponse{Blobs: make([]spec.BlobLocation, len(req.Blobs))}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(statConcurrency)
	for i, b := range req.Blobs {
		g.Go(func() error {
			loc := &resp.Blobs[i]
			loc.Digest, loc.Size = b.Digest, b.Size
			err := answer(gctx, repo, name, req.From, loc)
			if apiErr := (*spec.Error)(nil); errors.As(err, &apiErr) {
				loc.Error = apiErr
				return nil
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(resp)
}

// downloadLocation fills in where to read loc's blob, as a GET of it would
// answer.
func (reg *Registry) downloadLocation(ctx context.Context, repo, name, _ string, loc *spec.BlobLocation) error {
	size, err := reg.blobLinkedTo(ctx, repo, name, loc.Digest)
	if err != nil {
		return err
	}
	if size != loc.Size {
		return spec.Errorf(spec.ErrorSizeInvalid, "blob %s has %d bytes, not %d", loc.Digest, size, loc.Size)
	}
	if reg.presign == nil {
		return nil
	}
	pr, err := reg.presign.PresignGet(ctx, blobKey(loc.Digest), reg.opts.PresignExpiry)
	if err != nil {
		return internal("presign blob download", err)
	}
	loc.Href, loc.ExpiresAt = pr.URL, reg.now().Add(reg.opts.PresignExpiry).UTC()
	reg.metrics.redirects.WithLabelValues("download").Inc()
	return nil
}

// uploadLocation fills in what the pusher of loc's blob must do, as a
// body-less PUT of it would answer: nothing (present), send the bytes to a
// presigned URL with its headers, or send them through the registry.
func (reg *Registry) uploadLocation(ctx context.Context, repo, name, from string, loc *spec.BlobLocation) error {
	offer, err := reg.offerBlob(ctx, repo, name, loc.Digest, loc.Size, from)
	switch {
	case err != nil:
		return err
	case offer.present:
		loc.Present, loc.Mounted = true, offer.mounted
	case offer.upload != nil:
		loc.Href, loc.ExpiresAt = offer.upload.URL, reg.now().Add(reg.opts.PresignExpiry).UTC()
		loc.Header = map[string]string{}
		for k, v := range offer.upload.Header {
			if k := http.CanonicalHeaderKey(k); k != "Content-Length" && k != "Host" && len(v) > 0 {
				loc.Header[k] = v[0]
			}
		}
		reg.metrics.redirects.WithLabelValues("upload").Inc()
	}
	return nil
}
