package registry

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5/middleware"

	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
)

// statusOf is the one table that maps each API error code to its HTTP status.
var statusOf = map[spec.ErrorCode]int{
	spec.ErrorBlobUnknown:         http.StatusNotFound,
	spec.ErrorBlobUploadUnknown:   http.StatusNotFound,
	spec.ErrorBlobUploadInvalid:   http.StatusBadRequest,
	spec.ErrorDigestInvalid:       http.StatusBadRequest,
	spec.ErrorSizeInvalid:         http.StatusBadRequest,
	spec.ErrorManifestInvalid:     http.StatusBadRequest,
	spec.ErrorManifestBlobUnknown: http.StatusBadRequest,
	spec.ErrorManifestUnknown:     http.StatusNotFound,
	spec.ErrorNameInvalid:         http.StatusBadRequest,
	spec.ErrorReferenceInvalid:    http.StatusBadRequest,
	spec.ErrorParameterInvalid:    http.StatusBadRequest,
	spec.ErrorIndexUnknown:        http.StatusNotFound,
	spec.ErrorHoldUnknown:         http.StatusNotFound,
	spec.ErrorHoldInvalid:         http.StatusBadRequest,
	spec.ErrorRangeInvalid:        http.StatusRequestedRangeNotSatisfiable,
	spec.ErrorTooLarge:            http.StatusRequestEntityTooLarge,
	spec.ErrorUnauthorized:        http.StatusUnauthorized,
	spec.ErrorDenied:              http.StatusForbidden,
	spec.ErrorUnsupported:         http.StatusMethodNotAllowed,
	spec.ErrorConflict:            http.StatusConflict,
	spec.ErrorUnavailable:         http.StatusServiceUnavailable,
	spec.ErrorTooManyRequests:     http.StatusTooManyRequests,
	spec.ErrorInternal:            http.StatusInternalServerError,
	spec.ErrorInsufficientStorage: http.StatusInsufficientStorage,
}

// StatusOf returns the HTTP status the registry answers an error code with.
func StatusOf(code spec.ErrorCode) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// handlerFunc is a handler that returns its error for handle to write.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// handle adapts a handlerFunc: an *spec.Error is written as its JSON
// envelope with the status from the table; any other error is logged and
// answered 500 without its text, which may name internals.
func (reg *Registry) handle(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if apiErr := reg.apiError(r, h(w, r)); apiErr != nil {
			writeError(w, apiErr)
		}
	}
}

// apiError turns a handler's error into the API error to answer, logging
// what the client is not told; nil means nothing is to be written (no
// error, or a client that went away).
func (reg *Registry) apiError(r *http.Request, err error) *spec.Error {
	if err == nil {
		return nil
	}
	var apiErr *spec.Error
	var unreadable *unreadableIndexError
	if errors.As(err, &unreadable) {
		reg.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		apiErr = unreadable.apiError()
	}
	if apiErr == nil && errors.Is(err, storage.ErrInsufficientStorage) {
		reg.log.ErrorContext(r.Context(), "storage full",
			"method", r.Method, "path", r.URL.Path, "request_id", middleware.GetReqID(r.Context()), "error", err)
		apiErr = spec.Errorf(spec.ErrorInsufficientStorage,
			"the registry's storage is full, so nothing was stored; its operator must free space (modelx gc) or grow the storage, then run the command again").
			WithDetail(map[string]string{"requestId": middleware.GetReqID(r.Context())})
		drainBody(r)
	}
	if apiErr == nil && !errors.As(err, &apiErr) {
		reg.log.ErrorContext(r.Context(), "request failed",
			"method", r.Method, "path", r.URL.Path, "request_id", middleware.GetReqID(r.Context()), "error", err)
		apiErr = &spec.Error{Code: spec.ErrorInternal, Message: "internal error; the registry log has details", Detail: map[string]string{"requestId": middleware.GetReqID(r.Context())}}
		if r.Context().Err() != nil {
			return nil // the client went away; nobody reads the answer
		}
	}
	return apiErr
}

// maxDrain bounds how much of an unread request body drainBody reads: a
// blob is at most a 64 MiB chunk or pack, a little more with headroom.
const maxDrain = 80 << 20

// drainBody reads what is left of a request body, up to maxDrain, before
// an error answer: a client still sending would otherwise see its
// connection reset instead of the answer. Beyond maxDrain the server
// closes the connection.
func drainBody(r *http.Request) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxDrain))
	}
}

func writeError(w http.ResponseWriter, e *spec.Error) { writeErrorEnvelope(w, e, e) }

// writeErrorEnvelope answers e's status with envelope, the JSON body that
// carries e in the API's form.
func writeErrorEnvelope(w http.ResponseWriter, e *spec.Error, envelope any) {
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(StatusOf(e.Code))
	_ = json.NewEncoder(w).Encode(envelope)
}

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
	return nil
}

// requestLogger logs one line per request: method, path, status, bytes,
// duration. It never logs headers or query strings, which may carry secrets.
func requestLogger(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			start := time.Now()
			next.ServeHTTP(ww, r)
			log.LogAttrs(r.Context(), slog.LevelInfo, "request",
				slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", ww.Status()),
				slog.Int("bytes_out", ww.BytesWritten()), slog.Int64("bytes_in", r.ContentLength),
				slog.Int64("duration_ms", time.Since(start).Milliseconds()),
				slog.String("request_id", middleware.GetReqID(r.Context())))
		})
	}
}
