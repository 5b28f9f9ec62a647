package storagetest

import (
	"slices"
	"testing"

	"modelx.io/modelx/storage"
)

// Capabilities lists the optional capabilities s has, by interface name.
func Capabilities(s storage.Storage) []string {
	var caps []string
	if _, ok := s.(storage.ConditionalWriter); ok {
		caps = append(caps, "ConditionalWriter")
	}
	if _, ok := s.(storage.ConditionalReader); ok {
		caps = append(caps, "ConditionalReader")
	}
	if _, ok := s.(storage.Copier); ok {
		caps = append(caps, "Copier")
	}
	if _, ok := s.(storage.Presigner); ok {
		caps = append(caps, "Presigner")
	}
	return caps
}

// CheckWrap checks that storage.Wrap keeps exactly the optional
// capabilities of backend, that wrapping again adds no layer, and that
// Unwrap returns backend.
func CheckWrap(t *testing.T, backend storage.Storage) {
	t.Helper()
	wrapped := storage.Wrap(backend, nil)
	if got, want := Capabilities(wrapped), Capabilities(backend); !slices.Equal(got, want) {
		t.Errorf("wrapped %T has capabilities %v, the backend %v", backend, got, want)
	}
	if got := storage.Unwrap(storage.Wrap(wrapped, nil)); got != backend {
		t.Errorf("Unwrap of a store wrapped twice is %T, want the backend %T", got, backend)
	}
	if got := storage.Unwrap(backend); got != backend {
		t.Errorf("Unwrap of the backend itself is %T", got)
	}
}
