package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/client"
	"modelx.io/modelx/client/chunker"
	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/spec"
)

// writeTree writes files (path → content) under dir.
func writeTree(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// seededBytes returns a source of pseudo-random bytes, the same for a seed
// on every run: random(n) returns the next n.
func seededBytes(seed uint64) func(n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	return func(n int) []byte {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		return data
	}
}

// requireTree checks that dir holds exactly files, byte for byte.
func requireTree(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	found := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		name := filepath.ToSlash(rel)
		if strings.HasPrefix(name, ".modelx/") {
			return nil // modelx's own state of a pulled directory
		}
		found[name] = true
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if want, ok := files[name]; !ok {
			t.Errorf("unexpected file %s", name)
		} else if !bytes.Equal(data, want) {
			t.Errorf("%s: %d bytes differ from the %d pushed", name, len(data), len(want))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name := range files {
		if !found[name] {
			t.Errorf("%s is missing", name)
		}
	}
}

// TestOCIViewOfModelxVersion: a version pushed by modelx — whole files,
// packed small files and a chunked large file — is pulled by the real oras
// CLI as a ModelPack artifact, byte for byte, and its manifest digest
// stays the same on every request and after garbage collection.
func TestOCIViewOfModelxVersion(t *testing.T) {
	all := backends(t)
	for _, b := range []backend{all[0], all[2]} {
		t.Run(b.name, func(t *testing.T) {
			h := newHarness(t, b, registry.Options{GCGracePeriod: 1})
			random := seededBytes(1)
			files := map[string][]byte{
				"modelx.yaml":           []byte("description: a model seen through OCI\nframework: pytorch\n"),
				"README.md":             []byte("# the model\n"),
				"tokenizer/vocab.txt":   []byte("a\nb\nc\n"),
				"tokenizer/config.json": []byte(`{"lower": true}`),
				"empty.txt":             {},
				"whole.bin":             random(40 << 10),  // one chunk: stored whole
				"weights/big.bin":       random(600 << 10), // several chunks
			}
			src := t.TempDir()
			writeTree(t, src, files)
			c := client.New(client.Options{SmallFileThreshold: 32 << 10, Chunker: chunker.Params{Min: 64 << 10, Avg: 128 << 10, Max: 256 << 10}})
			ref, err := client.ParseReference(h.url+"/view/model:v1", nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Push(context.Background(), ref, src); err != nil {
				t.Fatal(err)
			}
			kinds := map[string]bool{}
			for _, blob := range h.manifest("view/model", "v1").Blobs {
				kinds[blob.MediaType] = true
			}
			if !kinds[spec.MediaTypePack] || !kinds[spec.MediaTypeChunkedFile] || !kinds[spec.MediaTypeFile] {
				t.Fatalf("the version should hold packs, chunked and whole files: %v", kinds)
			}

			r := h.do(http.MethodGet, "/v2/view/model/manifests/v1", nil, nil)
			h.expect(r, http.StatusOK, "")
			view := r.header.Get("Docker-Content-Digest")
			if r.header.Get("Content-Type") != spec.MediaTypeOCIManifest || digest.FromBytes(r.body).String() != view {
				t.Fatalf("view: Content-Type %q, digest header %s, body digest %s", r.header.Get("Content-Type"), view, digest.FromBytes(r.body))
			}
			var m spec.OCIManifest
			if err := json.Unmarshal(r.body, &m); err != nil {
				t.Fatal(err)
			}
			if m.ArtifactType != "application/vnd.cncf.model.manifest.v1+json" || m.Config.MediaType != "application/vnd.cncf.model.config.v1+json" || len(m.Layers) != len(files) {
				t.Fatalf("view manifest: artifactType %q, config %q, %d layers for %d files", m.ArtifactType, m.Config.MediaType, len(m.Layers), len(files))
			}
			for _, l := range m.Layers {
				name := l.Annotations["org.cncf.model.filepath"]
				if want := digest.FromBytes(files[name]); l.Digest != want || l.Annotations["org.opencontainers.image.title"] != name {
					t.Errorf("layer %q: digest %s, want the file's sha256 %s", name, l.Digest, want)
				}
			}

			host := strings.TrimPrefix(h.url, "http://")
			pull := func() {
				t.Helper()
				dst := t.TempDir()
				if out, err := testenv.Oras(t, nil, "pull", "--plain-http", "-o", dst, host+"/view/model:v1"); err != nil {
					t.Fatalf("oras pull: %v\n%s", err, out)
				}
				requireTree(t, dst, files)
			}
			pull()
			if out, err := testenv.Crane(t, nil, "digest", "--insecure", host+"/view/model:v1"); err != nil || strings.TrimSpace(out) != view {
				t.Fatalf("crane digest: %q %v, want %s", out, err, view)
			}
			h.expect(h.do(http.MethodHead, "/v2/view/model/manifests/"+view, nil, nil), http.StatusOK, "")
			// By the version's own digest, /v2/ answers the bytes stored.
			version := h.do(http.MethodGet, "/view/model/manifests/v1", nil, nil).header.Get(spec.DigestHeader)
			r = h.do(http.MethodGet, "/v2/view/model/manifests/"+version, nil, nil)
			if r.header.Get("Content-Type") != spec.MediaTypeManifest || digest.FromBytes(r.body).String() != version {
				t.Fatalf("by the version's digest: %s, digest %s, want the modelx manifest %s", r.header.Get("Content-Type"), digest.FromBytes(r.body), version)
			}

			// Collected past the grace period, the view stays what it was.
			h.pastGrace()
			if res, err := h.reg.CollectGarbage(context.Background()); err != nil || res.ManifestsDeleted != 0 || res.BlobsDeleted != 0 || res.ModelsSkipped != 0 {
				t.Fatalf("GC: %+v %v", res, err)
			}
			r = h.do(http.MethodGet, "/v2/view/model/manifests/v1", nil, nil)
			if got := r.header.Get("Docker-Content-Digest"); got != view {
				t.Fatalf("view digest after GC %s, was %s", got, view)
			}
			pull()
		})
	}
}
