package client_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"modelx.io/modelx/client"
	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/registry"
	fsstore "modelx.io/modelx/storage/fs"
)

// hookedStore runs hook before every Put.
type hookedStore struct {
	registry.Backend
	hook func(key string)
}

func (h *hookedStore) Put(ctx context.Context, key string, r io.Reader, size int64, sum []byte) error {
	h.hook(key)
	return h.Backend.Put(ctx, key, r, size, sum)
}

// TestPushSurvivesGarbageCollection pushes a model whose blobs the registry
// already stores, unreferenced, and runs a garbage collection just before
// the registry stores the manifest: the collection deletes the blobs the
// push relied on, the registry refuses the manifest, and the push uploads
// them and completes.
func TestPushSurvivesGarbageCollection(t *testing.T) {
	base, err := fsstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var reg *registry.Registry
	var once sync.Once
	var armed bool
	var mu sync.Mutex
	store := &hookedStore{Backend: base, hook: func(key string) {
		mu.Lock()
		fire := armed && strings.Contains(key, "/manifests/")
		mu.Unlock()
		if fire {
			once.Do(func() {
				if res, err := reg.CollectGarbage(context.Background()); err != nil || res.BlobsDeleted == 0 {
					t.Errorf("collection before the manifest store: %+v, %v", res, err)
				}
			})
		}
	}}
	clock := &testenv.Clock{}
	reg, err = registry.New(store, registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), GCGracePeriod: time.Nanosecond, Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()
	e := env{name: "fs-gc", url: srv.URL}
	ctx := context.Background()
	src := basicModel(t)
	c := newClient(client.Options{})
	if _, err := c.Push(ctx, ref(t, e, "first/model:v1"), src); err != nil {
		t.Fatal(err)
	}
	if err := c.API(e.url).DeleteManifest(ctx, "first", "model", "v1"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second) // past the grace period: the first push's blobs are garbage
	mu.Lock()
	armed = true
	mu.Unlock()
	res, err := c.Push(ctx, ref(t, e, "second/model:v1"), src)
	if err != nil {
		t.Fatalf("push across a garbage collection: %v", err)
	}
	if res.BlobsTransferred == 0 {
		t.Fatalf("no blob re-sent after the collection deleted them: %+v", res)
	}
	dst := t.TempDir()
	if _, err := c.Pull(ctx, ref(t, e, "second/model:v1"), dst, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(src, ".git"))
	os.Remove(filepath.Join(src, "ignored.tmp"))
	sameTree(t, src, dst)
}
