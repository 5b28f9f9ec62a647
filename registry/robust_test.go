package registry_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/registry"
	"modelx.io/modelx/spec"
)

// putObject writes an object straight into the harness's storage.
func (h *harness) putObject(key string, data []byte) {
	h.t.Helper()
	sum := sha256.Sum256(data)
	if err := h.store.Put(context.Background(), key, bytes.NewReader(data), int64(len(data)), sum[:]); err != nil {
		h.t.Fatal(err)
	}
}

// TestIndexBounds: what a version copies into its model's index is
// bounded, so is the index, and an index that outgrew the bounds (written
// before them) can still be shrunk and deleted.
func TestIndexBounds(t *testing.T) {
	b := backends(t)[0]
	h := newHarness(t, b, registry.Options{})
	m, _ := h.pushModel("big/model", "v1", map[string]string{"f": "file"})

	// Annotations: a few KiB, not megabytes per tag.
	fat := m
	fat.Annotations = map[string]string{"blob": strings.Repeat("x", 16<<10)}
	data, _ := json.Marshal(fat)
	r := h.do(http.MethodPut, "/big/model/manifests/fat", data, nil)
	h.expect(r, http.StatusRequestEntityTooLarge, spec.ErrorTooLarge)
	if !strings.Contains(string(r.body), "README") {
		t.Errorf("the refusal says nothing of what to do instead: %s", r.body)
	}

	// An index at its bound takes no more tags, but gives them up.
	idx := h.index("/big/model/index")
	tag := idx.Manifests[0]
	tag.Annotations = map[string]string{"pad": strings.Repeat("p", 4000)}
	tag.Name = "t00000"
	one, _ := json.Marshal(tag)
	for i := range (4<<20)/(len(one)+1) + 1 { // just past the 4 MiB bound
		tag.Name = fmt.Sprintf("t%05d", i)
		idx.Manifests = append(idx.Manifests, tag)
	}
	doc, _ := json.Marshal(idx)
	h.putObject("models/big/model/index.json", doc)
	r = h.do(http.MethodPut, "/big/model/manifests/one-more", mustJSON(&m), nil)
	h.expect(r, http.StatusRequestEntityTooLarge, spec.ErrorTooLarge)
	if !strings.Contains(string(r.body), "delete old tags") {
		t.Errorf("the refusal does not say what to do: %s", r.body)
	}
	h.expect(h.do(http.MethodDelete, "/big/model/manifests/t00001", nil, nil), http.StatusAccepted, "")
	h.expect(h.do(http.MethodDelete, "/big/model/manifests/t00002", nil, nil), http.StatusAccepted, "")
	h.putManifest("big/model", "one-more", m)
}

// TestUnreadableObjects: a model whose index or manifest is corrupt or
// oversized is reported and kept whole by garbage collection, which goes
// on with every other model; its owners can still delete it.
func TestUnreadableObjects(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			h := newHarness(t, b, registry.Options{GCGracePeriod: time.Nanosecond, MaxManifestSize: 64 << 10})
			huge, _ := h.pushModel("bad/huge", "v1", map[string]string{"h": "huge model's file"})
			h.pushModel("bad/corrupt", "v1", map[string]string{"c": "corrupt model's file"})
			_, badManifest := h.pushModel("bad/manifest", "v1", map[string]string{"m": "bad manifest's file"})
			_, old := h.pushModel("good/model", "v1", map[string]string{"g": "old"})
			h.pushModel("good/model", "v2", map[string]string{"g": "new"})
			h.expect(h.do(http.MethodDelete, "/good/model/manifests/v1", nil, nil), http.StatusAccepted, "")

			// An index over what the registry reads (as one written before
			// the bounds could be), a corrupt one, and a manifest over the
			// manifest size bound.
			h.putObject("models/bad/huge/index.json", append([]byte(`{"manifests":[`), bytes.Repeat([]byte(" "), 65<<20)...))
			h.putObject("models/bad/corrupt/index.json", []byte(`{"manifests": [{"name": "v1", "digest": `))
			h.putObject("models/bad/manifest/manifests/sha256/"+badManifest.Encoded(), bytes.Repeat([]byte("{"), 70<<10))
			h.pastGrace()

			res, err := h.reg.CollectGarbage(context.Background())
			if err != nil {
				t.Fatalf("collection with unreadable objects: %v", err)
			}
			if res.ModelsSkipped != 3 || len(res.Problems) != 3 || res.ManifestsDeleted != 1 || res.BlobsDeleted != 1 {
				t.Fatalf("collection: %+v, want 3 models skipped and reported, good/model's v1 and its blob deleted", res)
			}
			for _, p := range res.Problems {
				if !strings.HasPrefix(p, "bad/") {
					t.Errorf("problem %q names a model that is fine", p)
				}
			}
			h.expect(h.do(http.MethodGet, "/good/model/manifests/"+string(old), nil, nil), http.StatusNotFound, spec.ErrorManifestUnknown)
			// The skipped models keep their blobs.
			for _, d := range []digest.Digest{huge.Blobs[0].Digest} {
				if r := h.getBlob("bad/huge", d, nil); r.status != http.StatusOK {
					t.Fatalf("blob of a skipped model: %d", r.status)
				}
			}
			// Its owners learn what is wrong and what to do, and can delete it.
			r := h.do(http.MethodGet, "/bad/corrupt/index", nil, nil)
			h.expect(r, http.StatusInternalServerError, spec.ErrorInternal)
			if !strings.Contains(string(r.body), "DELETE /bad/corrupt/index") {
				t.Errorf("unreadable index answer: %s", r.body)
			}
			for _, model := range []string{"bad/huge", "bad/corrupt"} {
				h.expect(h.do(http.MethodDelete, "/"+model+"/index", nil, nil), http.StatusAccepted, "")
				h.expect(h.do(http.MethodGet, "/"+model+"/index", nil, nil), http.StatusNotFound, spec.ErrorIndexUnknown)
			}
			// The next collection is clean for them.
			res, err = h.reg.CollectGarbage(context.Background())
			if err != nil || res.ModelsSkipped != 1 {
				t.Fatalf("second collection: %+v %v, want only bad/manifest skipped", res, err)
			}
		})
	}
}
