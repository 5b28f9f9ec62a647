package registry

import (
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

// DigestHeader carries the digest of a blob or manifest in responses.
const DigestHeader = "Modelx-Content-Digest"

func blobParams(r *http.Request) (digest.Digest, error) {
	if _, _, err := model(r); err != nil {
		return "", err
	}
	d := digest.Digest(chi.URLParam(r, "digest"))
	if err := spec.ValidateDigest(d); err != nil {
		return "", err
	}
	return d, nil
}

func (reg *Registry) statBlob(r *http.Request, d digest.Digest) (storage.Info, error) {
	info, err := reg.store.Stat(r.Context(), blobKey(d))
	if errors.Is(err, storage.ErrNotFound) {
		return info, blobUnknown(d)
	}
	if err != nil {
		return info, internal("stat blob", err)
	}
	return info, nil
}

func blobUnknown(d digest.Digest) error {
	return spec.Errorf(spec.ErrorBlobUnknown, "blob %s is not in the registry", d)
}

func setBlobHeaders(h http.Header, d digest.Digest) {
	h.Set(DigestHeader, string(d))
	h.Set("ETag", `"`+string(d)+`"`)
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Type", "application/octet-stream")
}

// headBlob answers 200 with the blob's size, never a redirect, so the
// client's "skip what exists" costs one request.
func (reg *Registry) headBlob(w http.ResponseWriter, r *http.Request) error {
	d, err := blobParams(r)
	if err != nil {
		return err
	}
	info, err := reg.statBlob(r, d)
	if err != nil {
		return err
	}
	setBlobHeaders(w.Header(), d)
	w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
	w.WriteHeader(http.StatusOK)
	reg.metrics.dedup.WithLabelValues("head").Inc()
	return nil
}

func (reg *Registry) getBlob(w http.ResponseWriter, r *http.Request) error {
	d, err := blobParams(r)
	if err != nil {
		return err
	}
	info, err := reg.statBlob(r, d)
	if err != nil {
		return err
	}
	if reg.presign != nil {
		pr, err := reg.presign.PresignGet(r.Context(), blobKey(d), reg.opts.PresignExpiry)
		if err != nil {
			return internal("presign blob download", err)
		}
		w.Header().Set(DigestHeader, string(d))
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Location", pr.URL)
		w.WriteHeader(http.StatusFound)
		reg.metrics.redirects.WithLabelValues("download").Inc()
		return nil
	}
	offset, length, partial, err := parseRange(r.Header.Get("Range"), info.Size)
	if err != nil {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", info.Size))
		return err
	}
	rc, info, err := reg.store.Reader(r.Context(), blobKey(d), offset, length)
	if errors.Is(err, storage.ErrNotFound) { // deleted since the stat
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

// putBlob stores a blob. Through the registry the bytes are verified against
// the digest and length before they are committed; in redirect mode the
// answer is a presigned PUT whose signature binds the length and sha256, so
// the object store itself refuses any other bytes.
func (reg *Registry) putBlob(w http.ResponseWriter, r *http.Request) error {
	d, err := blobParams(r)
	if err != nil {
		return err
	}
	size := r.ContentLength
	if size < 0 {
		return spec.Errorf(spec.ErrorSizeInvalid, "the Content-Length header is required: send the blob with its length")
	}
	key := blobKey(d)
	sum, _ := digestSum(d)
	if info, err := reg.store.Stat(r.Context(), key); err == nil && info.Size == size {
		// Already stored; the body is not needed.
		reg.metrics.dedup.WithLabelValues("put").Inc()
		return blobCreated(w, r, d)
	} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return internal("stat blob", err)
	}
	if reg.presign != nil {
		pr, err := reg.presign.PresignPut(r.Context(), key, size, sum, reg.opts.PresignExpiry)
		if err != nil {
			return internal("presign blob upload", err)
		}
		w.Header().Set(DigestHeader, string(d))
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Location", pr.URL)
		w.WriteHeader(http.StatusFound)
		reg.metrics.redirects.WithLabelValues("upload").Inc()
		return nil
	}
	release, err := reg.uploads.acquire(w, r)
	if err != nil {
		return err
	}
	defer release()
	err = reg.store.Put(r.Context(), key, countingReader{r.Body, reg.metrics.blobBytes.WithLabelValues("in")}, size, sum)
	switch {
	case errors.Is(err, storage.ErrChecksumMismatch):
		return spec.Errorf(spec.ErrorDigestInvalid, "the uploaded bytes do not match digest %s; nothing was stored", d)
	case errors.Is(err, storage.ErrSizeMismatch):
		return spec.Errorf(spec.ErrorSizeInvalid, "the body length does not match Content-Length %d; nothing was stored", size)
	case err != nil:
		return internal("store blob", err)
	}
	return blobCreated(w, r, d)
}

func blobCreated(w http.ResponseWriter, r *http.Request, d digest.Digest) error {
	w.Header().Set(DigestHeader, string(d))
	w.Header().Set("Location", r.URL.Path)
	w.WriteHeader(http.StatusCreated)
	return nil
}

// digestSum returns the raw sha256 of a validated sha256 digest.
func digestSum(d digest.Digest) ([]byte, error) {
	return hex.DecodeString(d.Encoded())
}
