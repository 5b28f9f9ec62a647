package storage

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// TestComposeEveryCombination: for each set of capabilities, the composed
// store has exactly those.
func TestComposeEveryCombination(t *testing.T) {
	w := &wrapped{backend: nil, obs: noObserver{}}
	for mask := range 16 {
		want := [4]bool{mask&1 != 0, mask&2 != 0, mask&4 != 0, mask&8 != 0}
		s := compose(w, want[0], want[1], want[2], want[3])
		_, cw := s.(ConditionalWriter)
		_, cr := s.(ConditionalReader)
		_, cp := s.(Copier)
		_, ps := s.(Presigner)
		if got := [4]bool{cw, cr, cp, ps}; got != want {
			t.Errorf("compose(%v) has %v", want, got)
		}
		if Unwrap(s) != nil || Unwrap(Wrap(s, nil)) != nil {
			t.Errorf("compose(%v) does not unwrap to its backend", want)
		}
	}
}

// everything is a backend with every capability that records its calls.
type everything struct{ calls []string }

func (e *everything) call(ctx context.Context, op string) error {
	if ctx.Value(ctxKey{}) != "from Begin" {
		return errors.New(op + " did not get the observer's context")
	}
	e.calls = append(e.calls, op)
	if op == "stat" {
		return ErrNotFound
	}
	return nil
}
func (e *everything) Stat(ctx context.Context, key string) (Info, error) {
	return Info{}, e.call(ctx, "stat")
}
func (e *everything) Reader(ctx context.Context, key string, offset, length int64) (io.ReadCloser, Info, error) {
	return io.NopCloser(strings.NewReader("")), Info{}, e.call(ctx, "read")
}
func (e *everything) Put(ctx context.Context, key string, r io.Reader, size int64, sha256sum []byte) error {
	return e.call(ctx, "put")
}
func (e *everything) List(ctx context.Context, prefix string, fn func(Info) error) error {
	return e.call(ctx, "list")
}
func (e *everything) Delete(ctx context.Context, key string) error { return e.call(ctx, "delete") }
func (e *everything) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	return e.call(ctx, "put_if_absent")
}
func (e *everything) PutIfMatch(ctx context.Context, key string, data []byte, etag string) error {
	return e.call(ctx, "put_if_match")
}
func (e *everything) ReaderIfChanged(ctx context.Context, key, etag string) (io.ReadCloser, Info, error) {
	return nil, Info{}, e.call(ctx, "read_if_changed")
}
func (e *everything) Copy(ctx context.Context, src, dst string) error { return e.call(ctx, "copy") }
func (e *everything) PresignGet(ctx context.Context, key string, expires time.Duration) (PresignedRequest, error) {
	return PresignedRequest{}, e.call(ctx, "presign_get")
}
func (e *everything) PresignPut(ctx context.Context, key string, size int64, sha256sum []byte, expires time.Duration) (PresignedRequest, error) {
	return PresignedRequest{}, e.call(ctx, "presign_put")
}

type ctxKey struct{}

// recorder is an Observer that writes down what it is told.
type recorder struct{ seen []string }

func (r *recorder) Begin(ctx context.Context, op, key string) (context.Context, func(error)) {
	return context.WithValue(ctx, ctxKey{}, "from Begin"), func(err error) {
		s := op + " " + key
		if err != nil {
			s += ": " + err.Error()
		}
		r.seen = append(r.seen, s)
	}
}

// TestWrapObservesAndValidates: every operation is reported with its key
// and error and runs with the observer's context; an invalid key reaches
// neither the backend nor the observer.
func TestWrapObservesAndValidates(t *testing.T) {
	ctx := context.Background()
	backend, obs := &everything{}, &recorder{}
	s := Wrap(backend, obs)
	_, _ = s.Stat(ctx, "a/b")
	_, _, _ = s.Reader(ctx, "a/b", 0, -1)
	_ = s.Put(ctx, "a/b", strings.NewReader(""), 0, nil)
	_ = s.List(ctx, "a/", func(Info) error { return nil })
	_ = s.Delete(ctx, "a/b")
	_ = s.(ConditionalWriter).PutIfAbsent(ctx, "a/b", nil)
	_ = s.(ConditionalWriter).PutIfMatch(ctx, "a/b", nil, "e")
	_, _, _ = s.(ConditionalReader).ReaderIfChanged(ctx, "a/b", "e")
	_ = s.(Copier).Copy(ctx, "a/b", "a/c")
	_, _ = s.(Presigner).PresignGet(ctx, "a/b", time.Minute)
	_, _ = s.(Presigner).PresignPut(ctx, "a/b", 0, nil, time.Minute)
	want := []string{"stat a/b: object not found", "read a/b", "put a/b", "list a/", "delete a/b", "put_if_absent a/b",
		"put_if_match a/b", "read_if_changed a/b", "copy a/c", "presign_get a/b", "presign_put a/b"}
	if strings.Join(obs.seen, "\n") != strings.Join(want, "\n") {
		t.Errorf("observed:\n%s\nwant:\n%s", strings.Join(obs.seen, "\n"), strings.Join(want, "\n"))
	}
	if len(backend.calls) != len(want) {
		t.Errorf("backend calls: %v", backend.calls)
	}

	backend.calls, obs.seen = nil, nil
	if _, err := s.Stat(ctx, "../x"); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Stat(../x) = %v", err)
	}
	if err := s.(Copier).Copy(ctx, "a", "/b"); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Copy to /b = %v", err)
	}
	if err := s.List(ctx, "a/../", func(Info) error { return nil }); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("List(a/../) = %v", err)
	}
	if err := s.List(ctx, "", func(Info) error { return nil }); err != nil {
		t.Errorf("List of everything: %v", err)
	}
	if len(backend.calls) != 1 || len(obs.seen) != 1 {
		t.Errorf("invalid keys reached the backend (%v) or the observer (%v)", backend.calls, obs.seen)
	}
}
