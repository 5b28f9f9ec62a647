package storage

import (
	"context"
	"io"
	"strings"
	"time"
)

// Observer is told of every operation a wrapped store passes to its
// backend, for metrics and tracing.
type Observer interface {
	// Begin is called before the operation op (stat, read, put, list,
	// delete, read_if_changed, put_if_absent, put_if_match, copy,
	// presign_get, presign_put) runs on key (a prefix for list, the
	// destination for copy). The backend is called with the context it
	// returns; the function it returns is called with the operation's
	// error once the backend returns (for reads: once the stream is open).
	Begin(ctx context.Context, op, key string) (context.Context, func(err error))
}

// Wrap returns s with what every backend needs and none should write
// itself: each key is checked with ValidateKey (a List prefix up to its
// last '/') before s sees it, and each operation is reported to obs, if
// not nil. The result has exactly the optional capabilities of s
// (ConditionalWriter, ConditionalReader, Copier, Presigner), so callers
// still discover them by type assertion. Wrapping a wrapped store wraps
// its backend afresh with obs, so a backend is only ever wrapped once.
func Wrap(s Storage, obs Observer) Storage {
	if w, ok := s.(interface{ wrappedBackend() Storage }); ok {
		s = w.wrappedBackend()
	}
	if obs == nil {
		obs = noObserver{}
	}
	w := &wrapped{backend: s, obs: obs}
	_, cw := s.(ConditionalWriter)
	_, cr := s.(ConditionalReader)
	_, cp := s.(Copier)
	_, ps := s.(Presigner)
	return compose(w, cw, cr, cp, ps)
}

// compose returns w with the capability methods of the given capabilities
// and no others: one struct type for each combination, since a type
// assertion sees the method set, never whether a method would work.
func compose(w *wrapped, cw, cr, cp, ps bool) Storage {
	type (
		W  = conditionalWriter
		R  = conditionalReader
		C  = copier
		P  = presigner
		ww = *wrapped
	)
	switch [4]bool{cw, cr, cp, ps} {
	case [4]bool{false, false, false, false}:
		return w
	case [4]bool{true, false, false, false}:
		return struct {
			ww
			W
		}{w, W{w}}
	case [4]bool{false, true, false, false}:
		return struct {
			ww
			R
		}{w, R{w}}
	case [4]bool{false, false, true, false}:
		return struct {
			ww
			C
		}{w, C{w}}
	case [4]bool{false, false, false, true}:
		return struct {
			ww
			P
		}{w, P{w}}
	case [4]bool{true, true, false, false}:
		return struct {
			ww
			W
			R
		}{w, W{w}, R{w}}
	case [4]bool{true, false, true, false}:
		return struct {
			ww
			W
			C
		}{w, W{w}, C{w}}
	case [4]bool{true, false, false, true}:
		return struct {
			ww
			W
			P
		}{w, W{w}, P{w}}
	case [4]bool{false, true, true, false}:
		return struct {
			ww
			R
			C
		}{w, R{w}, C{w}}
	case [4]bool{false, true, false, true}:
		return struct {
			ww
			R
			P
		}{w, R{w}, P{w}}
	case [4]bool{false, false, true, true}:
		return struct {
			ww
			C
			P
		}{w, C{w}, P{w}}
	case [4]bool{true, true, true, false}:
		return struct {
			ww
			W
			R
			C
		}{w, W{w}, R{w}, C{w}}
	case [4]bool{true, true, false, true}:
		return struct {
			ww
			W
			R
			P
		}{w, W{w}, R{w}, P{w}}
	case [4]bool{true, false, true, true}:
		return struct {
			ww
			W
			C
			P
		}{w, W{w}, C{w}, P{w}}
	case [4]bool{false, true, true, true}:
		return struct {
			ww
			R
			C
			P
		}{w, R{w}, C{w}, P{w}}
	default: // all four
		return struct {
			ww
			W
			R
			C
			P
		}{w, W{w}, R{w}, C{w}, P{w}}
	}
}

// Unwrap returns the backend of a store Wrap returned, and any other store
// as it is: for what only the backend's own type offers.
func Unwrap(s Storage) Storage {
	if w, ok := s.(interface{ wrappedBackend() Storage }); ok {
		return w.wrappedBackend()
	}
	return s
}

// noObserver is the Observer of a store wrapped without one.
type noObserver struct{}

func (noObserver) Begin(ctx context.Context, _, _ string) (context.Context, func(error)) {
	return ctx, func(error) {}
}

// wrapped is the Storage part of every store Wrap returns; the
// capability types below add the rest.
type wrapped struct {
	backend Storage
	obs     Observer
}

func (w *wrapped) wrappedBackend() Storage { return w.backend }

// validatePrefix checks a List prefix: the part up to its last '/' must be
// a valid key; what follows is the start of a name, so anything goes.
func validatePrefix(prefix string) error {
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		return ValidateKey(prefix[:i])
	}
	return nil
}

// Stat implements Storage.
func (w *wrapped) Stat(ctx context.Context, key string) (info Info, err error) {
	if err := ValidateKey(key); err != nil {
		return Info{}, err
	}
	ctx, end := w.obs.Begin(ctx, "stat", key)
	defer func() { end(err) }()
	return w.backend.Stat(ctx, key)
}

// Reader implements Storage.
func (w *wrapped) Reader(ctx context.Context, key string, offset, length int64) (rc io.ReadCloser, info Info, err error) {
	if err := ValidateKey(key); err != nil {
		return nil, Info{}, err
	}
	ctx, end := w.obs.Begin(ctx, "read", key)
	defer func() { end(err) }()
	return w.backend.Reader(ctx, key, offset, length)
}

// Put implements Storage.
func (w *wrapped) Put(ctx context.Context, key string, r io.Reader, size int64, sha256sum []byte) (err error) {
	if err := ValidateKey(key); err != nil {
		return err
	}
	ctx, end := w.obs.Begin(ctx, "put", key)
	defer func() { end(err) }()
	return w.backend.Put(ctx, key, r, size, sha256sum)
}

// List implements Storage.
func (w *wrapped) List(ctx context.Context, prefix string, fn func(Info) error) (err error) {
	if err := validatePrefix(prefix); err != nil {
		return err
	}
	ctx, end := w.obs.Begin(ctx, "list", prefix)
	defer func() { end(err) }()
	return w.backend.List(ctx, prefix, fn)
}

// Delete implements Storage.
func (w *wrapped) Delete(ctx context.Context, key string) (err error) {
	if err := ValidateKey(key); err != nil {
		return err
	}
	ctx, end := w.obs.Begin(ctx, "delete", key)
	defer func() { end(err) }()
	return w.backend.Delete(ctx, key)
}

// conditionalWriter is the ConditionalWriter of a wrapped store.
type conditionalWriter struct{ w *wrapped }

// PutIfAbsent implements ConditionalWriter.
func (c conditionalWriter) PutIfAbsent(ctx context.Context, key string, data []byte) (err error) {
	if err := ValidateKey(key); err != nil {
		return err
	}
	ctx, end := c.w.obs.Begin(ctx, "put_if_absent", key)
	defer func() { end(err) }()
	return c.w.backend.(ConditionalWriter).PutIfAbsent(ctx, key, data)
}

// PutIfMatch implements ConditionalWriter.
func (c conditionalWriter) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (err error) {
	if err := ValidateKey(key); err != nil {
		return err
	}
	ctx, end := c.w.obs.Begin(ctx, "put_if_match", key)
	defer func() { end(err) }()
	return c.w.backend.(ConditionalWriter).PutIfMatch(ctx, key, data, etag)
}

// conditionalReader is the ConditionalReader of a wrapped store.
type conditionalReader struct{ w *wrapped }

// ReaderIfChanged implements ConditionalReader.
func (c conditionalReader) ReaderIfChanged(ctx context.Context, key, etag string) (rc io.ReadCloser, info Info, err error) {
	if err := ValidateKey(key); err != nil {
		return nil, Info{}, err
	}
	ctx, end := c.w.obs.Begin(ctx, "read_if_changed", key)
	defer func() { end(err) }()
	return c.w.backend.(ConditionalReader).ReaderIfChanged(ctx, key, etag)
}

// copier is the Copier of a wrapped store.
type copier struct{ w *wrapped }

// Copy implements Copier.
func (c copier) Copy(ctx context.Context, src, dst string) (err error) {
	if err := ValidateKey(src); err != nil {
		return err
	}
	if err := ValidateKey(dst); err != nil {
		return err
	}
	ctx, end := c.w.obs.Begin(ctx, "copy", dst)
	defer func() { end(err) }()
	return c.w.backend.(Copier).Copy(ctx, src, dst)
}

// presigner is the Presigner of a wrapped store.
type presigner struct{ w *wrapped }

// PresignGet implements Presigner.
func (p presigner) PresignGet(ctx context.Context, key string, expires time.Duration) (req PresignedRequest, err error) {
	if err := ValidateKey(key); err != nil {
		return PresignedRequest{}, err
	}
	ctx, end := p.w.obs.Begin(ctx, "presign_get", key)
	defer func() { end(err) }()
	return p.w.backend.(Presigner).PresignGet(ctx, key, expires)
}

// PresignPut implements Presigner.
func (p presigner) PresignPut(ctx context.Context, key string, size int64, sha256sum []byte, expires time.Duration) (req PresignedRequest, err error) {
	if err := ValidateKey(key); err != nil {
		return PresignedRequest{}, err
	}
	ctx, end := p.w.obs.Begin(ctx, "presign_put", key)
	defer func() { end(err) }()
	return p.w.backend.(Presigner).PresignPut(ctx, key, size, sha256sum, expires)
}
