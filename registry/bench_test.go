package registry_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/registry"
	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage/fs"
)

// benchRegistry serves a registry on the local filesystem holding one
// model, team/model:v1, with 40 files, and returns its handler, the
// manifest and one blob digest. Requests go straight to the handler, so
// a benchmark measures the registry's own CPU per request, with every
// middleware of production (request log, metrics, tracing, deadlines).
func benchRegistry(b *testing.B) (http.Handler, digest.Digest) {
	b.Helper()
	st, err := fs.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	reg, err := registry.New(st, registry.Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	h := reg.Handler()
	put := func(path string, body []byte) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, path, bytes.NewReader(body)))
		if rec.Code != http.StatusCreated {
			b.Fatalf("PUT %s: %d %s", path, rec.Code, rec.Body)
		}
	}
	blob := func(data []byte) spec.Descriptor {
		d := digest.FromBytes(data)
		put("/team/model/blobs/"+string(d), data)
		return spec.Descriptor{MediaType: spec.MediaTypeFile, Digest: d, Size: int64(len(data))}
	}
	cfg := blob([]byte("description: benchmark model\n"))
	cfg.Name, cfg.MediaType = spec.ConfigFileName, spec.MediaTypeConfig
	m := spec.Manifest{SchemaVersion: 1, MediaType: spec.MediaTypeManifest, Config: cfg}
	for i := range 40 {
		desc := blob(fmt.Appendf(nil, "file %d\n", i))
		desc.Name = fmt.Sprintf("weights/part-%02d.bin", i)
		m.Blobs = append(m.Blobs, desc)
	}
	data, err := json.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	put("/team/model/manifests/v1", data)
	return h, m.Blobs[0].Digest
}

func benchRequests(b *testing.B, h http.Handler, method, path string) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
			if rec.Code != http.StatusOK {
				b.Errorf("%s %s: %d %s", method, path, rec.Code, rec.Body)
				return
			}
		}
	})
}

// BenchmarkGetManifestByTag is the request a pull starts with.
func BenchmarkGetManifestByTag(b *testing.B) {
	h, _ := benchRegistry(b)
	benchRequests(b, h, http.MethodGet, "/team/model/manifests/v1")
}

// BenchmarkHeadBlob is the request a push makes per blob it may skip.
func BenchmarkHeadBlob(b *testing.B) {
	h, d := benchRegistry(b)
	benchRequests(b, h, http.MethodHead, "/team/model/blobs/"+string(d))
}
