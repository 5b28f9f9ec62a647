package registry_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/registry"
	"modelx.io/modelx/spec"
)

// ociPushBlob uploads data to model through the OCI API in one request.
func (h *harness) ociPushBlob(model string, data []byte) spec.OCIDescriptor {
	h.t.Helper()
	return spec.OCIDescriptor{MediaType: "application/octet-stream", Digest: h.ociPushBlobAs("", model, data), Size: int64(len(data))}
}

// ociPushManifest stores doc as a manifest of model under ref (a tag or
// "" for its digest) and returns its descriptor.
func (h *harness) ociPushManifest(model, ref string, doc any) spec.OCIDescriptor {
	h.t.Helper()
	data, err := json.Marshal(doc)
	if err != nil {
		h.t.Fatal(err)
	}
	d := digest.FromBytes(data)
	if ref == "" {
		ref = string(d)
	}
	mediaType := spec.MediaTypeOCIManifest
	if m, ok := doc.(spec.OCIManifest); ok && m.MediaType != "" {
		mediaType = m.MediaType
	}
	h.expect(h.do(http.MethodPut, "/v2/"+model+"/manifests/"+ref, data, http.Header{"Content-Type": {mediaType}}), http.StatusCreated, "")
	return spec.OCIDescriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}
}

// ociImage is an image manifest of one config and the layers.
func ociImage(config spec.OCIDescriptor, layers ...spec.OCIDescriptor) spec.OCIManifest {
	config.MediaType = spec.MediaTypeOCIEmpty
	return spec.OCIManifest{SchemaVersion: 2, MediaType: spec.MediaTypeOCIManifest, Config: &config, Layers: layers}
}

// TestGCKeepsOCIGraphs: garbage collection keeps what a kept OCI manifest
// holds — an index's manifests and the artifacts that refer to a kept
// manifest, all pushed untagged — with their blobs, and collects an
// untagged OCI manifest nothing holds, its referrers, its blobs and old
// upload sessions.
func TestGCKeepsOCIGraphs(t *testing.T) {
	for _, b := range backends(t)[:2] {
		t.Run(b.name, func(t *testing.T) {
			h := newHarness(t, b, registry.Options{GCGracePeriod: time.Minute})
			const model = "oci/graph"
			config := h.ociPushBlob(model, []byte("{}"))
			amd64 := h.ociPushManifest(model, "", ociImage(config, h.ociPushBlob(model, []byte("amd64 layer"))))
			arm64 := h.ociPushManifest(model, "", ociImage(config, h.ociPushBlob(model, []byte("arm64 layer"))))
			index := h.ociPushManifest(model, "v1", spec.OCIManifest{SchemaVersion: 2, MediaType: spec.MediaTypeOCIIndex, Manifests: []spec.OCIDescriptor{amd64, arm64}})
			sigLayer := h.ociPushBlob(model, []byte("signature of v1"))
			sig := ociImage(config, sigLayer)
			sig.ArtifactType, sig.Subject = "application/vnd.example.signature", &index
			signature := h.ociPushManifest(model, "", sig)

			lone := h.ociPushManifest(model, "", ociImage(config, h.ociPushBlob(model, []byte("nobody holds this layer"))))
			loneSig := ociImage(config, h.ociPushBlob(model, []byte("signature of the lone manifest")))
			loneSig.ArtifactType, loneSig.Subject = "application/vnd.example.signature", &lone
			loneSignature := h.ociPushManifest(model, "", loneSig)
			session := h.do(http.MethodPost, "/v2/"+model+"/blobs/uploads/", nil, nil)
			h.expect(session, http.StatusAccepted, "")
			h.expect(h.do(http.MethodPatch, session.header.Get("Location"), []byte("abandoned chunk"), http.Header{"Content-Range": {"0-14"}}), http.StatusAccepted, "")

			h.pastGrace()
			res, err := h.reg.CollectGarbage(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if res.ModelsSkipped != 0 || res.ManifestsDeleted != 2 || res.ManifestsKept != 4 || res.BlobsDeleted != 2 {
				t.Fatalf("GC result %+v, want the lone manifest and its signature deleted (and their 2 layers), 4 manifests kept, no model skipped", res)
			}
			for _, d := range []digest.Digest{index.Digest, amd64.Digest, arm64.Digest, signature.Digest} {
				h.expect(h.do(http.MethodGet, "/v2/"+model+"/manifests/"+string(d), nil, nil), http.StatusOK, "")
			}
			for _, d := range []digest.Digest{lone.Digest, loneSignature.Digest} {
				h.expect(h.do(http.MethodGet, "/v2/"+model+"/manifests/"+string(d), nil, nil), http.StatusNotFound, spec.ErrorManifestUnknown)
			}
			h.expect(h.do(http.MethodGet, "/v2/"+model+"/blobs/"+string(sigLayer.Digest), nil, nil), http.StatusOK, "")
			var referrers spec.OCIManifest
			r := h.do(http.MethodGet, "/v2/"+model+"/referrers/"+string(index.Digest), nil, nil)
			h.expect(r, http.StatusOK, "")
			if err := json.Unmarshal(r.body, &referrers); err != nil || len(referrers.Manifests) != 1 || referrers.Manifests[0].Digest != signature.Digest {
				t.Fatalf("referrers of v1 after GC: %s %v", r.body, err)
			}
			r = h.do(http.MethodGet, "/v2/"+model+"/referrers/"+string(lone.Digest), nil, nil)
			if err := json.Unmarshal(r.body, &referrers); err != nil || len(referrers.Manifests) != 0 {
				t.Fatalf("referrers of a collected manifest: %s %v", r.body, err)
			}
			h.expect(h.do(http.MethodGet, session.header.Get("Location"), nil, nil), http.StatusNotFound, spec.ErrorBlobUploadUnknown)
			for key := range h.snapshot() {
				if strings.Contains(key, "/referrers/") && strings.Contains(key, lone.Digest.Encoded()) || strings.Contains(key, "/sessions/") {
					t.Errorf("GC left %s", key)
				}
			}
		})
	}
}

// TestGCKeepsTheSourceOfAHeldView: a deployment pins and holds the modelx
// view of an OCI artifact; after the artifact's tag is deleted and
// garbage collected, the view still pulls, its files made from the
// artifact's tar layer, which the view kept.
func TestGCKeepsTheSourceOfAHeldView(t *testing.T) {
	h := newHarness(t, backends(t)[0], registry.Options{GCGracePeriod: time.Minute})
	const model = "oci/held"
	files := map[string][]byte{"weights/a.bin": seededBytes(9)(70 << 10), "b.txt": []byte("b\n")}
	config := h.ociPushBlob(model, []byte("{}"))
	layer := h.ociPushBlob(model, tarOf(t, "gzip", files))
	layer.MediaType = "application/vnd.oci.image.layer.v1.tar+gzip"
	h.ociPushManifest(model, "v1", ociImage(config, layer))
	view := h.do(http.MethodGet, "/"+model+"/manifests/v1", nil, nil).header.Get(spec.DigestHeader)
	h.putHold(model, "ctl:prod:ns:held", holdBody("24h", digest.Digest(view)), http.StatusCreated)
	h.expect(h.do(http.MethodDelete, "/"+model+"/manifests/v1", nil, nil), http.StatusAccepted, "")

	h.pastGrace()
	if res, err := h.reg.CollectGarbage(context.Background()); err != nil || res.ManifestsDeleted != 0 || res.BlobsDeleted != 0 {
		t.Fatalf("GC: %+v %v", res, err)
	}
	dst := modelxPull(t, h, model+"@"+view)
	cfg, err := os.ReadFile(filepath.Join(dst, spec.ConfigFileName))
	if err != nil {
		t.Fatal(err)
	}
	files[spec.ConfigFileName] = cfg
	requireTree(t, dst, files)
}
