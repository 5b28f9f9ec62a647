package storagetest

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"modelx.io/modelx/storage"
)

// RunFull checks a backend whose space ends at capacity bytes (a small
// real filesystem under it): a write that does not fit fails with
// storage.ErrInsufficientStorage and stores nothing, objects stored before
// are intact, and a write that fits succeeds afterwards.
func RunFull(t *testing.T, s storage.Storage, capacity int64) {
	ctx := context.Background()
	put(t, s, "kept", "stored before the disk filled")

	big := bytes.Repeat([]byte("0123456789abcdef"), int(2*capacity/16))
	err := s.Put(ctx, "big", bytes.NewReader(big), int64(len(big)), sum(big))
	if !errors.Is(err, storage.ErrInsufficientStorage) {
		t.Fatalf("Put over capacity: %v, want ErrInsufficientStorage", err)
	}
	requireNotFound(t, s, "big")
	if got, _ := read(t, s, "kept", 0, -1); got != "stored before the disk filled" {
		t.Fatalf("object stored before: %q", got)
	}
	if cw, ok := s.(storage.ConditionalWriter); ok {
		doc := bytes.Repeat([]byte("i"), int(2*capacity))
		if err := cw.PutIfAbsent(ctx, "index", doc); !errors.Is(err, storage.ErrInsufficientStorage) {
			t.Fatalf("PutIfAbsent over capacity: %v, want ErrInsufficientStorage", err)
		}
		requireNotFound(t, s, "index")
	}
	put(t, s, "after", "the failed write left its space free")
}
