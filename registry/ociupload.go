package registry

import (
	"bytes"
	"context"
	"crypto/rand"
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

// OCI blob uploads. A monolithic upload (POST or PUT with ?digest= and the
// whole body) streams into the blob store as modelx's proxied PUT does:
// verified against the digest and length before anything is committed. A
// chunked upload is a session: the registry keeps nothing in memory, so
// any replica serves any request of it. Each chunk (PATCH) is stored as a
// part under the model, models/REPO/NAME/sessions/ID/part-OFFSET, next to
// a start marker; the closing PUT streams the parts, in order, into the
// blob store through the same verification, then deletes them. Chunks
// must come in order: one that does not start where the upload ends is
// refused with 416 and the upload's Range, and the client resumes. Old
// sessions are removed by garbage collection.

const (
	// sessionStart marks a session that exists, parts or not.
	sessionStart = "start"
	// partPrefix names the part objects; the offset is zero-padded, so
	// parts list in order.
	partPrefix = "part-"
	// maxSessionParts bounds the chunks of one upload.
	maxSessionParts = 10000
	// streamPartSize is how much of a chunk sent without a length
	// (chunked transfer encoding) is held in memory and stored as one part.
	streamPartSize = 8 << 20
)

// uploadSession is an OCI upload session as stored: its parts, which
// follow each other from offset 0.
type uploadSession struct {
	repo, name, id string
	parts          []storage.Info
	size           int64
}

// location is the session's URL.
func (s *uploadSession) location() string {
	return "/v2/" + s.repo + "/" + s.name + "/blobs/uploads/" + s.id
}

// setHeaders sets what every answer about the session carries: where it
// is and how many bytes it holds.
func (s *uploadSession) setHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Location", s.location())
	h.Set("Docker-Upload-UUID", s.id)
	h.Set("Range", fmt.Sprintf("0-%d", max(s.size-1, 0)))
}

func partKey(repo, name, id string, offset int64) string {
	return sessionPrefix(repo, name, id) + fmt.Sprintf("%s%020d", partPrefix, offset)
}

// validSessionID reports whether id is one the registry makes: 32 hex digits.
func validSessionID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// openSession reads the session the request's path names, or answers
// BLOB_UPLOAD_UNKNOWN.
func (reg *Registry) openSession(ctx context.Context, r *http.Request) (*uploadSession, error) {
	repo, name, err := model(r)
	if err != nil {
		return nil, err
	}
	id := chi.URLParam(r, "session")
	unknown := spec.Errorf(spec.ErrorBlobUploadUnknown, "upload %q of %s/%s is unknown: it finished, was cancelled or expired; start a new upload with POST /v2/%s/%s/blobs/uploads/", id, repo, name, repo, name)
	if !validSessionID(id) {
		return nil, unknown
	}
	s := &uploadSession{repo: repo, name: name, id: id}
	started := false
	prefix := sessionPrefix(repo, name, id)
	err = reg.store.List(ctx, prefix, func(info storage.Info) error {
		rest := strings.TrimPrefix(info.Key, prefix)
		if rest == sessionStart {
			started = true
			return nil
		}
		offset, err := strconv.ParseInt(strings.TrimPrefix(rest, partPrefix), 10, 64)
		if err != nil || !strings.HasPrefix(rest, partPrefix) {
			return nil
		}
		if offset == s.size { // parts follow each other; a stray one is ignored
			s.parts = append(s.parts, info)
			s.size += info.Size
		}
		return nil
	})
	if err != nil {
		return nil, internal("list upload session", err)
	}
	if !started {
		return nil, unknown
	}
	return s, nil
}

// ociStartUpload answers POST /v2/REPO/NAME/blobs/uploads/: a mount
// (?mount=DIGEST&from=REPO/NAME) of a blob another model holds, which
// needs pull rights on that model; a monolithic upload (?digest=DIGEST with
// the body); or a new session for chunks. A mount that cannot be done
// starts a session, as OCI clients expect.
func (reg *Registry) ociStartUpload(w http.ResponseWriter, r *http.Request) error {
	repo, name, err := model(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	q := r.URL.Query()
	if mount := q.Get("mount"); mount != "" {
		d := digest.Digest(mount)
		if err := spec.ValidateDigest(d); err != nil {
			return err
		}
		if size, ok, err := reg.readLink(ctx, repo, name, d); err != nil {
			return err
		} else if ok {
			return ociBlobCreated(w, repo, name, d, size)
		}
		if from := q.Get("from"); from != "" {
			if srcRepo, srcName, err := parseModelName(from); err == nil {
				size, ok, err := reg.readLink(ctx, srcRepo, srcName, d)
				if err != nil {
					return err
				}
				if ok {
					if mounted, err := reg.mount(ctx, repo, name, from, d, size); err != nil {
						return err
					} else if mounted {
						return ociBlobCreated(w, repo, name, d, size)
					}
				}
			}
		}
	}
	if dg := q.Get("digest"); dg != "" {
		d := digest.Digest(dg)
		if err := spec.ValidateDigest(d); err != nil {
			return err
		}
		if r.ContentLength < 0 {
			return spec.Errorf(spec.ErrorSizeInvalid, "a monolithic upload needs Content-Length; send the body with its length, or upload in chunks")
		}
		if err := reg.ingestBlob(w, r, repo, name, d, r.Body, r.ContentLength); err != nil {
			return err
		}
		return ociBlobCreated(w, repo, name, d, r.ContentLength)
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	s := &uploadSession{repo: repo, name: name, id: hex.EncodeToString(raw[:])}
	if err := reg.store.Put(ctx, sessionPrefix(repo, name, s.id)+sessionStart, bytes.NewReader(nil), 0, nil); err != nil {
		return internal("start upload session", err)
	}
	s.setHeaders(w)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// ociUploadStatus answers GET on a session: how many bytes it holds.
func (reg *Registry) ociUploadStatus(w http.ResponseWriter, r *http.Request) error {
	s, err := reg.openSession(r.Context(), r)
	if err != nil {
		return err
	}
	s.setHeaders(w)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ociPatchUpload appends a chunk to a session.
func (reg *Registry) ociPatchUpload(w http.ResponseWriter, r *http.Request) error {
	s, err := reg.openSession(r.Context(), r)
	if err != nil {
		return err
	}
	if err := reg.appendChunk(w, r, s); err != nil {
		return err
	}
	s.setHeaders(w)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// ociFinishUpload closes a session (PUT ?digest=DIGEST, with an optional
// last chunk): the parts become the blob, verified against the digest,
// and the model links it. A digest that does not match keeps the session,
// so the client can send the right one.
func (reg *Registry) ociFinishUpload(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	s, err := reg.openSession(ctx, r)
	if err != nil {
		return err
	}
	d := digest.Digest(r.URL.Query().Get("digest"))
	if d == "" {
		return spec.Errorf(spec.ErrorDigestInvalid, "closing an upload needs ?digest=sha256:… of the whole blob")
	}
	if err := spec.ValidateDigest(d); err != nil {
		return err
	}
	if r.ContentLength != 0 {
		if len(s.parts) == 0 && r.Header.Get("Content-Range") == "" && r.ContentLength > 0 {
			// The whole blob in the closing PUT: straight to the store.
			if err := reg.ingestBlob(w, r, s.repo, s.name, d, r.Body, r.ContentLength); err != nil {
				return err
			}
			reg.dropSession(ctx, s)
			return ociBlobCreated(w, s.repo, s.name, d, r.ContentLength)
		}
		if err := reg.appendChunk(w, r, s); err != nil {
			return err
		}
	}
	body := &partsReader{ctx: ctx, store: reg.store, parts: s.parts}
	defer body.Close()
	if err := reg.ingestBlob(w, r, s.repo, s.name, d, body, s.size); err != nil {
		return err
	}
	reg.dropSession(ctx, s)
	return ociBlobCreated(w, s.repo, s.name, d, s.size)
}

// ociCancelUpload deletes a session and its parts.
func (reg *Registry) ociCancelUpload(w http.ResponseWriter, r *http.Request) error {
	s, err := reg.openSession(r.Context(), r)
	if err != nil {
		return err
	}
	reg.dropSession(r.Context(), s)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// dropSession deletes a session's objects; one left behind is garbage
// collection's.
func (reg *Registry) dropSession(ctx context.Context, s *uploadSession) {
	ctx = context.WithoutCancel(ctx)
	for _, p := range s.parts {
		if err := reg.store.Delete(ctx, p.Key); err != nil {
			reg.log.WarnContext(ctx, "upload session part not deleted; garbage collection will", "key", p.Key, "error", err)
		}
	}
	if err := reg.store.Delete(ctx, sessionPrefix(s.repo, s.name, s.id)+sessionStart); err != nil {
		reg.log.WarnContext(ctx, "upload session not deleted; garbage collection will", "session", s.id, "error", err)
	}
}

// appendChunk stores the request's body as the next part(s) of s. A
// Content-Range ("START-END") must start where the upload ends, or the
// answer is 416 with the upload's Range, so the client can resume.
func (reg *Registry) appendChunk(w http.ResponseWriter, r *http.Request, s *uploadSession) error {
	size := r.ContentLength
	if cr := r.Header.Get("Content-Range"); cr != "" {
		start, end, ok := parseContentRange(cr)
		if !ok {
			return spec.Errorf(spec.ErrorBlobUploadInvalid, "Content-Range %q is not START-END", cr)
		}
		if start != s.size {
			s.setHeaders(w)
			return spec.Errorf(spec.ErrorRangeInvalid, "the chunk starts at byte %d, but the upload holds %d bytes: send the chunk that starts at %d", start, s.size, s.size)
		}
		if size >= 0 && end-start+1 != size {
			return spec.Errorf(spec.ErrorSizeInvalid, "Content-Range %q is %d bytes, Content-Length %d", cr, end-start+1, size)
		}
		size = end - start + 1
	}
	release, err := reg.uploads.acquire(w, r)
	if err != nil {
		return err
	}
	defer release()
	body := countingReader{r.Body, reg.metrics.blobBytes.WithLabelValues("in")}
	var buf []byte // for a body without a length; each piece is stored before the next is read
	for {
		if len(s.parts) >= maxSessionParts {
			return spec.Errorf(spec.ErrorBlobUploadInvalid, "the upload has %d chunks, the most one upload may have: send larger chunks", maxSessionParts)
		}
		var part io.Reader = body
		n := size
		last := size >= 0
		if !last { // no length: store what arrives, a bounded piece at a time
			if buf == nil {
				buf = make([]byte, streamPartSize)
			}
			m, err := io.ReadFull(body, buf)
			if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
				return uploadBodyError(err)
			}
			last = m < len(buf)
			part, n = bytes.NewReader(buf[:m]), int64(m)
		}
		if n > 0 {
			key := partKey(s.repo, s.name, s.id, s.size)
			switch err := reg.store.Put(r.Context(), key, part, n, nil); {
			case errors.Is(err, storage.ErrSizeMismatch):
				return spec.Errorf(spec.ErrorSizeInvalid, "the chunk is not the %d bytes announced; nothing of it was stored", n)
			case err != nil:
				return uploadBodyError(err)
			}
			s.parts = append(s.parts, storage.Info{Key: key, Size: n})
			s.size += n
		}
		if last {
			return nil
		}
	}
}

// uploadBodyError is the answer to a chunk whose body failed: too slow (429,
// retry), or a store failure.
func uploadBodyError(err error) error {
	if errors.Is(err, errUploadTooSlow) {
		return err
	}
	return internal("store upload chunk", err)
}

// parseContentRange parses the "START-END" of a chunk upload (also with a
// "bytes " prefix, which some clients send).
func parseContentRange(s string) (start, end int64, ok bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "bytes ")
	a, b, found := strings.Cut(s, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, false
	}
	return start, end, true
}

// ingestBlob stores size bytes of body as blob d and links it to the
// model: the bytes are verified against d and size before anything is
// committed. A blob the model holds already costs nothing; a blob stored
// for other models is verified and linked, and the stored copy stays.
func (reg *Registry) ingestBlob(w http.ResponseWriter, r *http.Request, repo, name string, d digest.Digest, body io.Reader, size int64) error {
	if ok, err := reg.linked(r.Context(), repo, name, d, size); err != nil {
		return err
	} else if ok {
		reg.metrics.dedup.WithLabelValues("put").Inc()
		return nil
	}
	return reg.storeBlob(w, r, repo, name, d, body, size)
}

// storeBlob is ingestBlob for a blob the model does not link yet.
func (reg *Registry) storeBlob(w http.ResponseWriter, r *http.Request, repo, name string, d digest.Digest, body io.Reader, size int64) error {
	ctx := r.Context()
	stored, err := reg.blobStored(ctx, d, size)
	if err != nil {
		return err
	}
	fromRequest := body == r.Body
	release, err := reg.uploads.acquire(w, r) // puts the rate floor on r.Body
	if err != nil {
		return err
	}
	defer release()
	sum, _ := digestSum(d)
	if fromRequest {
		body = countingReader{r.Body, reg.metrics.blobBytes.WithLabelValues("in")}
	}
	if stored {
		// The bytes prove the pusher has the blob; the stored copy stays.
		_, err = io.Copy(io.Discard, storage.NewVerifyingReader(body, size, sum))
	} else {
		if reg.presign != nil {
			// Another model's presigned upload of d may be under way: take
			// its claim over, so its commit cannot link these bytes.
			if _, err := reg.claimUpload(ctx, repo+"/"+name, d, true); err != nil {
				return err
			}
		}
		err = reg.store.Put(ctx, blobKey(d), body, size, sum)
	}
	switch {
	case errors.Is(err, storage.ErrChecksumMismatch):
		return spec.Errorf(spec.ErrorDigestInvalid, "the uploaded bytes do not match digest %s; nothing was stored", d)
	case errors.Is(err, storage.ErrSizeMismatch):
		return spec.Errorf(spec.ErrorSizeInvalid, "the body length does not match its declared length %d; nothing was stored", size)
	case err != nil:
		return internal("store blob", err)
	}
	// The bytes are stored: the link must follow even if the client has
	// gone, or a retry would have to send them again.
	return reg.writeLink(context.WithoutCancel(ctx), repo, name, d, size)
}

// ociBlobCreated answers 201 for a blob the model now holds.
func ociBlobCreated(w http.ResponseWriter, repo, name string, d digest.Digest, size int64) error {
	h := w.Header()
	h.Set("Location", "/v2/"+repo+"/"+name+"/blobs/"+string(d))
	h.Set(spec.OCIDigestHeader, string(d))
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// partsReader reads a session's parts one after another, opening each
// when the one before it is done.
type partsReader struct {
	ctx   context.Context
	store storage.Storage
	parts []storage.Info
	cur   io.ReadCloser
}

func (p *partsReader) Read(b []byte) (int, error) {
	for {
		if p.cur == nil {
			if len(p.parts) == 0 {
				return 0, io.EOF
			}
			rc, _, err := p.store.Reader(p.ctx, p.parts[0].Key, 0, -1)
			if err != nil {
				return 0, fmt.Errorf("open upload part: %w", err)
			}
			p.cur, p.parts = rc, p.parts[1:]
		}
		n, err := p.cur.Read(b)
		if errors.Is(err, io.EOF) {
			p.cur.Close()
			p.cur = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

// Close closes the part being read.
func (p *partsReader) Close() error {
	if p.cur != nil {
		return p.cur.Close()
	}
	return nil
}
