package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/registry"
	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
	"modelx.io/modelx/storage/fs"
)

// The tests here run with a grace period of 1 ns and do not wait before a
// collection: fs stamps objects from a clock that never runs ahead of
// time.Now, so all stored before it is old. Nor do they move the
// registry's clock: writes racing the collection must stay young, as in
// production.

// gatedStore calls hook before every read, Put, Delete and conditional
// write ("cas"), so a test can stop a request or a collection at an exact
// point, or learn that it got there.
type gatedStore struct {
	registry.Backend
	hook func(op, key string)
}

func (g *gatedStore) Reader(ctx context.Context, key string, offset, length int64) (io.ReadCloser, storage.Info, error) {
	g.hook("read", key)
	return g.Backend.Reader(ctx, key, offset, length)
}

func (g *gatedStore) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	g.hook("cas", key)
	return g.Backend.PutIfAbsent(ctx, key, data)
}

func (g *gatedStore) PutIfMatch(ctx context.Context, key string, data []byte, etag string) error {
	g.hook("cas", key)
	return g.Backend.PutIfMatch(ctx, key, data, etag)
}

func (g *gatedStore) Put(ctx context.Context, key string, r io.Reader, size int64, sum []byte) error {
	g.hook("put", key)
	return g.Backend.Put(ctx, key, r, size, sum)
}

func (g *gatedStore) Delete(ctx context.Context, key string) error {
	g.hook("delete", key)
	return g.Backend.Delete(ctx, key)
}

// TestGCDuringManifestPush runs a collection in the middle of a manifest
// push that reuses old unreferenced blobs: once between the push's blob
// check and its manifest store, once with the push arriving while the
// collection sweeps, and once with the push sending the garbage blobs'
// bytes again (which links the stored blobs) just before the sweep deletes
// them. The push must fail cleanly, leaving no manifest that names a
// deleted blob and no link to one, and succeed once the blobs are uploaded
// again.
func TestGCDuringManifestPush(t *testing.T) {
	for _, stage := range []string{"gc-between-check-and-store", "push-during-sweep", "relink-during-sweep"} {
		t.Run(stage, func(t *testing.T) {
			base, err := fs.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var hook func(op, key string)
			store := &gatedStore{Backend: base, hook: func(op, key string) {
				mu.Lock()
				h := hook
				mu.Unlock()
				if h != nil {
					h(op, key)
				}
			}}
			b := backend{name: "fs-gated", open: func(*testing.T) registry.Backend { return store }}
			h := newHarness(t, b, registry.Options{GCGracePeriod: time.Nanosecond})

			// Old blobs no manifest names: garbage, until a push reuses them.
			cfg := h.pushBlob("gc/race", []byte("description: race\n"))
			weights := h.pushBlob("gc/race", bytes.Repeat([]byte("w"), 4096))
			cfg.Name, cfg.MediaType = spec.ConfigFileName, spec.MediaTypeConfig
			weights.Name, weights.MediaType = "weights.bin", spec.MediaTypeFile
			m := spec.Manifest{SchemaVersion: spec.SchemaVersion, MediaType: spec.MediaTypeManifest, Config: cfg, Blobs: []spec.Descriptor{weights}}
			data, _ := json.Marshal(m)
			md := digest.FromBytes(data)

			manifestStored := make(chan struct{})
			release := make(chan struct{})
			held := make(chan struct{})        // the collection is stopped at its first delete
			pushWaiting := make(chan struct{}) // the push, its manifest stored, reads the sweep's state
			var stored atomic.Bool
			var once, deleteOnce, waitOnce sync.Once
			mu.Lock()
			hook = func(op, key string) {
				switch {
				case stage == "gc-between-check-and-store" && op == "put" && strings.Contains(key, "/manifests/"):
					once.Do(func() { close(manifestStored); <-release })
				case (stage == "push-during-sweep" || stage == "relink-during-sweep") && op == "put" && strings.Contains(key, "/manifests/"):
					once.Do(func() { stored.Store(true); close(manifestStored) })
				case (stage == "push-during-sweep" || stage == "relink-during-sweep") && op == "read" && key == "gc/state.json" && stored.Load():
					// After its manifest, the push reads this only to wait
					// for the sweep (the lease is renewed only every 10 s).
					waitOnce.Do(func() { close(pushWaiting) })
				case stage == "relink-during-sweep" && op == "delete" && strings.HasPrefix(key, "blobs/"):
					// The first blob the sweep deletes: its links are gone.
					deleteOnce.Do(func() { close(held); <-release })
				case stage == "push-during-sweep" && op == "delete" && strings.HasPrefix(key, "models/gc/race/blobs/"):
					// The first link the sweep deletes (links go before blobs).
					deleteOnce.Do(func() { close(held); <-release })
				}
			}
			mu.Unlock()

			type answer struct {
				status int
				body   string
			}
			pushed := make(chan answer, 1)
			put := func() answer {
				req, _ := http.NewRequest(http.MethodPut, h.url+"/gc/race/manifests/v1", bytes.NewReader(data))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return answer{body: err.Error()}
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				return answer{resp.StatusCode, string(body)}
			}
			gcDone := make(chan error, 1)
			switch stage {
			case "gc-between-check-and-store":
				go func() { pushed <- put() }()
				<-manifestStored
				res, err := h.reg.CollectGarbage(context.Background())
				if err != nil || res.BlobsDeleted != 2 {
					t.Fatalf("collection during the push: %+v, %v", res, err)
				}
				close(release)
			case "push-during-sweep":
				go func() {
					res, err := h.reg.CollectGarbage(context.Background())
					if err == nil && res.BlobsDeleted != 2 {
						t.Errorf("collection deleted %d blobs, want 2", res.BlobsDeleted)
					}
					gcDone <- err
				}()
				<-held
				go func() { pushed <- put() }()
				<-pushWaiting
				close(release)
				if err := <-gcDone; err != nil {
					t.Fatal(err)
				}
			case "relink-during-sweep":
				// The sweep has listed the links and is about to delete the
				// blobs no link keeps; the push sends their bytes again,
				// which links the stored blobs, then stores its manifest.
				go func() {
					res, err := h.reg.CollectGarbage(context.Background())
					if err == nil && res.BlobsDeleted != 2 {
						t.Errorf("collection deleted %d blobs, want 2", res.BlobsDeleted)
					}
					gcDone <- err
				}()
				<-held
				h.pushBlob("gc/race", []byte("description: race\n"))
				h.pushBlob("gc/race", bytes.Repeat([]byte("w"), 4096))
				go func() { pushed <- put() }()
				<-pushWaiting
				close(release)
				if err := <-gcDone; err != nil {
					t.Fatal(err)
				}
			}
			a := <-pushed
			if a.status != http.StatusBadRequest || !strings.Contains(a.body, string(spec.ErrorManifestBlobUnknown)) {
				t.Fatalf("push whose blobs a collection deleted: %d %s", a.status, a.body)
			}
			mu.Lock()
			hook = nil
			mu.Unlock()
			// Nothing names the deleted blobs: no manifest, no tag.
			h.expect(h.do(http.MethodGet, "/gc/race/manifests/"+string(md), nil, nil), http.StatusNotFound, spec.ErrorManifestUnknown)
			if r := h.do(http.MethodGet, "/gc/race/manifests/v1", nil, nil); r.status != http.StatusNotFound {
				t.Fatalf("tag v1 exists after a failed push: %d", r.status)
			}
			// The client's way out: upload the missing blobs, push again.
			h.pushBlob("gc/race", []byte("description: race\n"))
			h.pushBlob("gc/race", bytes.Repeat([]byte("w"), 4096))
			if got := h.putManifest("gc/race", "v1", m); got != md {
				t.Fatalf("manifest digest %s, want %s", got, md)
			}
			if r := h.getBlob("gc/race", weights.Digest, nil); r.status != http.StatusOK {
				t.Fatalf("blob after the second push: %d", r.status)
			}
		})
	}
}

// TestGCDuringHoldPut puts a hold on an old untagged version while a
// collection runs: with the collection stopped just before it deletes the
// version (after its last reading of the holds), the hold PUT must fail
// naming the version and leave no hold on it; with the collection stopped
// before its sweep, the hold must keep the version and its blobs. Many
// unstaged races end either way, never with a hold on a deleted version.
func TestGCDuringHoldPut(t *testing.T) {
	for _, stage := range []string{"hold-during-sweep", "hold-before-sweep"} {
		t.Run(stage, func(t *testing.T) {
			base, err := fs.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var hook func(op, key string)
			store := &gatedStore{Backend: base, hook: func(op, key string) {
				mu.Lock()
				h := hook
				mu.Unlock()
				if h != nil {
					h(op, key)
				}
			}}
			h := newHarness(t, backend{name: "fs-gated", open: func(*testing.T) registry.Backend { return store }}, registry.Options{GCGracePeriod: time.Nanosecond})
			const model = "gc/held"
			old := h.movedVersion(model, "race")
			cur := h.index("/" + model + "/index").Manifests[0].Digest

			stopped, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			mu.Lock()
			hook = func(op, key string) {
				switch {
				case stage == "hold-during-sweep" && op == "delete" && strings.HasSuffix(key, "/manifests/sha256/"+old.Encoded()):
					once.Do(func() { close(stopped); <-release })
				case stage == "hold-before-sweep" && op == "cas" && key == "gc/state.json":
					once.Do(func() { close(stopped); <-release })
				}
			}
			mu.Unlock()
			type result struct {
				res spec.GCResult
				err error
			}
			gcDone := make(chan result, 1)
			go func() {
				res, err := h.reg.CollectGarbage(context.Background())
				gcDone <- result{res, err}
			}()
			<-stopped
			put := make(chan response, 1)
			go func() { put <- h.do(http.MethodPut, "/"+model+"/holds/ctl", holdBody("1h", old, cur), nil) }()
			switch stage {
			case "hold-during-sweep":
				// The PUT writes its hold, then waits for the sweep.
				for !slices.ContainsFunc(h.holds(model), func(x spec.Hold) bool { return x.Holder == "ctl" }) {
					time.Sleep(5 * time.Millisecond)
				}
				close(release)
				r := <-put
				h.expect(r, http.StatusNotFound, spec.ErrorManifestUnknown)
				if msg := r.apiError(t).Message; !strings.Contains(msg, string(old)) || !strings.Contains(msg, "garbage collection") {
					t.Errorf("the refusal does not name the deleted version: %s", msg)
				}
				g := <-gcDone
				if g.err != nil || g.res.ManifestsDeleted != 1 || g.res.BlobsDeleted == 0 {
					t.Fatalf("collection: %+v %v", g.res, g.err)
				}
				// The hold keeps what exists, and names nothing deleted.
				got := h.holds(model)
				if len(got) != 1 || !slices.Equal(got[0].Digests, []digest.Digest{cur}) {
					t.Fatalf("holds after the race: %+v, want ctl on %s only", got, cur)
				}
			case "hold-before-sweep":
				r := <-put // completes while the collection waits to sweep
				h.expect(r, http.StatusCreated, "")
				close(release)
				g := <-gcDone
				if g.err != nil || g.res.ManifestsDeleted != 0 || g.res.ManifestsHeld != 1 || g.res.BlobsDeleted != 0 {
					t.Fatalf("collection: %+v %v, want the held version kept", g.res, g.err)
				}
				if !h.versionReadable(model, old) {
					t.Fatal("the held version or a blob of it is gone")
				}
			}
			if !h.versionReadable(model, cur) {
				t.Fatal("the tagged version or a blob of it is gone")
			}
		})
	}
	t.Run("unstaged", func(t *testing.T) {
		h := newHarness(t, backend{name: "fs", open: func(t *testing.T) registry.Backend {
			st, err := fs.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return st
		}}, registry.Options{GCGracePeriod: time.Nanosecond})
		outcomes := map[int]int{}
		for i := range 12 {
			model := fmt.Sprintf("gc/race%d", i)
			old := h.movedVersion(model, model)
			gcDone := make(chan error, 1)
			go func() {
				_, err := h.reg.CollectGarbage(context.Background())
				gcDone <- err
			}()
			// The interleaving itself: the PUT starts 0 to 3 ms into the
			// collection, so rounds land on different phases of it.
			time.Sleep(time.Duration(i%4) * time.Millisecond)
			r := h.do(http.MethodPut, "/"+model+"/holds/ctl", holdBody("1h", old), nil)
			if err := <-gcDone; err != nil {
				t.Fatal(err)
			}
			outcomes[r.status]++
			switch r.status {
			case http.StatusCreated:
				if !h.versionReadable(model, old) {
					t.Fatalf("round %d: the hold was put, yet the version or a blob of it is gone", i)
				}
				h.collect()
				if !h.versionReadable(model, old) {
					t.Fatalf("round %d: the next collection deleted a held version", i)
				}
			case http.StatusNotFound:
				h.expect(r, http.StatusNotFound, spec.ErrorManifestUnknown)
				if got := h.holds(model); len(got) != 0 {
					t.Fatalf("round %d: the hold PUT failed, yet holds %+v", i, got)
				}
			default:
				t.Fatalf("round %d: hold PUT answered %d %s", i, r.status, r.body)
			}
		}
		t.Logf("hold PUT outcomes by status: %v", outcomes)
	})
}
