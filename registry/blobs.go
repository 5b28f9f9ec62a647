package registry

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
)

func blobParams(r *http.Request) (repo, name string, d digest.Digest, err error) {
	if repo, name, err = model(r); err != nil {
		return "", "", "", err
	}
	d = digest.Digest(chi.URLParam(r, "digest"))
	if err := spec.ValidateDigest(d); err != nil {
		return "", "", "", err
	}
	return repo, name, d, nil
}

func blobUnknown(d digest.Digest) error {
	return spec.Errorf(spec.ErrorBlobUnknown, "blob %s is not in the registry", d)
}

func setBlobHeaders(h http.Header, d digest.Digest) {
	h.Set(spec.DigestHeader, string(d))
	h.Set(spec.OCIDigestHeader, string(d))
	h.Set("ETag", `"`+string(d)+`"`)
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Type", "application/octet-stream")
}

// requestedBlob returns the blob a read request names and its size, or
// BLOB_UNKNOWN when the request's model does not link it.
func (reg *Registry) requestedBlob(r *http.Request) (digest.Digest, int64, error) {
	repo, name, d, err := blobParams(r)
	if err != nil {
		return "", 0, err
	}
	size, err := reg.blobLinkedTo(r.Context(), repo, name, d)
	return d, size, err
}

// headBlob answers 200 with the blob's size when the model links the blob,
// never a redirect.
func (reg *Registry) headBlob(w http.ResponseWriter, r *http.Request) error {
	// No link outlives its blob (see writeLink): the link answers for
	// the blob, as a redirect does.
	d, size, err := reg.requestedBlob(r)
	if err != nil {
		return err
	}
	setBlobHeaders(w.Header(), d)
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	reg.metrics.dedup.WithLabelValues("head").Inc()
	return nil
}

// getBlob answers a blob the model links: its bytes (with Range), or a
// redirect to a presigned URL.
func (reg *Registry) getBlob(w http.ResponseWriter, r *http.Request) error {
	d, size, err := reg.requestedBlob(r)
	if err != nil {
		return err
	}
	if reg.presign != nil {
		pr, err := reg.presign.PresignGet(r.Context(), blobKey(d), reg.opts.PresignExpiry)
		if err != nil {
			return internal("presign blob download", err)
		}
		reg.redirect(w, d, pr, "download")
		return nil
	}
	offset, length, partial, err := parseRange(r.Header.Get("Range"), size)
	if err != nil {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		return err
	}
	rc, info, err := reg.store.Reader(r.Context(), blobKey(d), offset, length)
	if errors.Is(err, storage.ErrNotFound) { // collected since it was linked
		return blobUnknown(d)
	}
	if err != nil {
		return internal("open blob", err)
	}
	defer rc.Close()
	h := w.Header()
	setBlobHeaders(h, d)
	h.Set("Content-Length", strconv.FormatInt(length, 10))
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", offset, offset+length-1, info.Size))
	}
	w.WriteHeader(status)
	n, err := io.Copy(w, rc)
	reg.metrics.blobBytes.WithLabelValues("out").Add(float64(n))
	if err != nil {
		// The status is sent; the short body tells the client.
		reg.log.WarnContext(r.Context(), "blob download interrupted", "digest", d, "error", err)
	}
	return nil
}

// parseRange parses a single-range "bytes=" header against size and
// returns the offset and length to send. No header, or a multi-range one,
// means the whole blob.
func parseRange(header string, size int64) (offset, length int64, partial bool, err error) {
	if header == "" {
		return 0, size, false, nil
	}
	invalid := spec.Errorf(spec.ErrorRangeInvalid, "range %q cannot be satisfied for a blob of %d bytes", header, size)
	ranges, ok := strings.CutPrefix(header, "bytes=")
	if !ok || strings.Contains(ranges, ",") {
		return 0, size, false, nil
	}
	first, last, ok := strings.Cut(strings.TrimSpace(ranges), "-")
	if !ok {
		return 0, 0, false, invalid
	}
	switch {
	case first == "": // suffix: the last N bytes
		n, perr := strconv.ParseInt(last, 10, 64)
		if perr != nil || n <= 0 {
			return 0, 0, false, invalid
		}
		n = min(n, size)
		if n == 0 {
			return 0, 0, false, invalid
		}
		return size - n, n, true, nil
	default:
		start, perr := strconv.ParseInt(first, 10, 64)
		if perr != nil || start < 0 || start >= size {
			return 0, 0, false, invalid
		}
		end := size - 1
		if last != "" {
			e, perr := strconv.ParseInt(last, 10, 64)
			if perr != nil || e < start {
				return 0, 0, false, invalid
			}
			end = min(e, size-1)
		}
		return start, end - start + 1, true, nil
	}
}

// putBlob stores a blob and links it to the model (see links.go). A blob
// the model links already, or one it can mount from a model the caller may
// pull (?from=REPO/NAME), costs no body: the client asks with Expect:
// 100-continue and gets 201 at once. Otherwise the pusher proves it has
// the bytes by sending them: through the registry, which verifies them
// against the digest and length before anything is committed; or, in
// redirect mode, to a presigned PUT whose signature binds the length and
// sha256, so the object store itself refuses other bytes. A redirected
// upload is linked when the blob is offered again or named by a manifest.
func (reg *Registry) putBlob(w http.ResponseWriter, r *http.Request) error {
	repo, name, d, err := blobParams(r)
	if err != nil {
		return err
	}
	size := r.ContentLength
	if size < 0 {
		return spec.Errorf(spec.ErrorSizeInvalid, "the Content-Length header is required: send the blob with its length")
	}
	offer, err := reg.offerBlob(r.Context(), repo, name, d, size, r.URL.Query().Get("from"))
	switch {
	case err != nil:
		return err
	case offer.present:
		return blobCreated(w, r, d)
	case offer.upload != nil:
		reg.redirect(w, d, *offer.upload, "upload")
		return nil
	}
	if err := reg.storeBlob(w, r, repo, name, d, r.Body, size); err != nil {
		return err
	}
	return blobCreated(w, r, d)
}

// blobOffer is what a pusher who offers a blob must do: nothing (present),
// send the bytes to a presigned URL (upload, in redirect mode), or else
// send them through the registry.
type blobOffer struct {
	present bool
	mounted bool // present through a mount from another model
	upload  *storage.PresignedRequest
}

// offerBlob decides what the pusher of blob d, of size bytes, into the
// model must do (see putBlob): nothing if the model links it, if it can be
// mounted from the model from ("REPO/NAME", or ""), or if a redirected
// upload of it has completed, which this commits; else send the bytes.
func (reg *Registry) offerBlob(ctx context.Context, repo, name string, d digest.Digest, size int64, from string) (blobOffer, error) {
	st, err := reg.readUploadState(ctx, repo, name, d, size, false)
	if err != nil {
		return blobOffer{}, err
	}
	if st.linked && st.linkSize == size {
		reg.metrics.dedup.WithLabelValues("put").Inc()
		return blobOffer{present: true}, nil
	}
	if from != "" {
		if ok, err := reg.mount(ctx, repo, name, from, d, size); err != nil || ok {
			return blobOffer{present: ok, mounted: ok}, err
		}
	}
	if reg.presign == nil {
		return blobOffer{}, nil
	}
	if from != "" {
		// Read before the mount was tried: whether the blob is stored may
		// have changed since.
		if st.stored, err = reg.blobStored(ctx, d, size); err != nil {
			return blobOffer{}, err
		}
	}
	return reg.redirectOffer(ctx, repo, name, d, size, st)
}

// redirectOffer is offerBlob in redirect mode: a presigned PUT to the
// blob's key under an upload claim when the blob is not stored and no
// other model's claim stands; else present if an upload through this
// model has completed (a client may offer a blob again after sending it);
// else a presigned PUT to the model's staging key.
func (reg *Registry) redirectOffer(ctx context.Context, repo, name string, d digest.Digest, size int64, st uploadState) (blobOffer, error) {
	key := stagedKey(repo, name, d)
	claimed := false
	if !st.stored {
		// The common case, a new blob, costs one write: the claim.
		var err error
		if claimed, err = reg.claimUpload(ctx, repo+"/"+name, d, false); err != nil {
			return blobOffer{}, err
		}
	}
	if claimed {
		key = blobKey(d)
	} else if ok, err := reg.commitUpload(ctx, repo, name, d, size, st); err != nil || ok {
		return blobOffer{present: ok}, err
	}
	sum, _ := digestSum(d)
	pr, err := reg.presign.PresignPut(ctx, key, size, sum, reg.opts.PresignExpiry)
	if err != nil {
		return blobOffer{}, internal("presign blob upload", err)
	}
	return blobOffer{upload: &pr}, nil
}

// redirect answers 302 to a presigned URL for blob d and counts it by
// direction (upload, download).
func (reg *Registry) redirect(w http.ResponseWriter, d digest.Digest, pr storage.PresignedRequest, direction string) {
	w.Header().Set(spec.DigestHeader, string(d))
	w.Header().Set(spec.OCIDigestHeader, string(d))
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", pr.URL)
	w.WriteHeader(http.StatusFound)
	reg.metrics.redirects.WithLabelValues(direction).Inc()
}

func blobCreated(w http.ResponseWriter, r *http.Request, d digest.Digest) error {
	w.Header().Set(spec.DigestHeader, string(d))
	w.Header().Set("Location", r.URL.Path)
	w.WriteHeader(http.StatusCreated)
	return nil
}

// digestSum returns the raw sha256 of a validated sha256 digest.
func digestSum(d digest.Digest) ([]byte, error) {
	return hex.DecodeString(d.Encoded())
}
