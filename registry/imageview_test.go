package registry_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"modelx.io/modelx/client"
	"modelx.io/modelx/client/chunker"
	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/spec"
)

// filesOfTar reads the regular files of a tar archive.
func filesOfTar(t *testing.T, data []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[strings.TrimPrefix(hdr.Name, "./")] = b
		}
	}
}

// TestImageFormOfAVersion: the image form of a modelx version is a
// multi-platform image that the real crane reads as a filesystem holding
// exactly the version's files; an unchanged large file is the same layer
// in the next version; the form's digest is stable, also after garbage
// collection.
func TestImageFormOfAVersion(t *testing.T) {
	all := backends(t)
	for _, b := range []backend{all[0], all[2]} {
		t.Run(b.name, func(t *testing.T) {
			h := newHarness(t, b, registry.Options{GCGracePeriod: 1})
			host := strings.TrimPrefix(h.url, "http://")
			random := seededBytes(5)
			files := map[string][]byte{
				"modelx.yaml":           []byte("description: mounted as an image volume\n"),
				"tokenizer/vocab.txt":   []byte("a\nb\n"),
				"tokenizer/config.json": []byte(`{}`),
				"whole.bin":             random(40 << 10),
				"weights/big.bin":       random(600 << 10),
			}
			src := t.TempDir()
			writeTree(t, src, files)
			c := client.New(client.Options{SmallFileThreshold: 32 << 10, Chunker: chunker.Params{Min: 64 << 10, Avg: 128 << 10, Max: 256 << 10}})
			push := func(tag string) {
				t.Helper()
				ref, err := client.ParseReference(h.url+"/img/model:"+tag, nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.Push(context.Background(), ref, src); err != nil {
					t.Fatal(err)
				}
			}
			push("v1")
			image := host + "/img/model/image:v1"
			out, err := testenv.Crane(t, nil, "manifest", "--insecure", image)
			if err != nil {
				t.Fatalf("crane manifest: %v\n%s", err, out)
			}
			var index spec.OCIManifest
			if err := json.Unmarshal([]byte(out), &index); err != nil || index.MediaType != spec.MediaTypeOCIIndex || len(index.Manifests) != 2 {
				t.Fatalf("image form is not a two-platform index: %s %v", out, err)
			}
			export := func(ref, platform string) map[string][]byte {
				t.Helper()
				tarFile := filepath.Join(t.TempDir(), "fs.tar")
				if out, err := testenv.Crane(t, nil, "export", "--insecure", "--platform", platform, ref, tarFile); err != nil {
					t.Fatalf("crane export %s: %v\n%s", platform, err, out)
				}
				data, err := os.ReadFile(tarFile)
				if err != nil {
					t.Fatal(err)
				}
				return filesOfTar(t, data)
			}
			for _, platform := range []string{"linux/amd64", "linux/arm64"} {
				got := export(image, platform)
				dir := t.TempDir()
				writeTree(t, dir, got)
				requireTree(t, dir, files)
			}
			digestOf := func(ref string) string {
				t.Helper()
				out, err := testenv.Crane(t, nil, "digest", "--insecure", ref)
				if err != nil {
					t.Fatalf("crane digest %s: %v", ref, err)
				}
				return strings.TrimSpace(out)
			}
			first := digestOf(image)
			version := h.do(http.MethodGet, "/img/model/manifests/v1", nil, nil).header.Get(spec.DigestHeader)
			r := h.do(http.MethodHead, "/v2/img/model/image/manifests/"+version, nil, nil)
			if got := r.header.Get(spec.OCIDigestHeader); r.status != http.StatusOK || got != first {
				t.Fatalf("image form by the version's digest: %d %s, want %s", r.status, got, first)
			}
			h.expect(h.do(http.MethodPut, "/v2/img/model/image/manifests/v9", []byte("{}"), nil), http.StatusMethodNotAllowed, "")

			// A new version with one small file changed: the large files'
			// layers are the same blobs.
			writeTree(t, src, map[string][]byte{"tokenizer/vocab.txt": []byte("a\nb\nc\n")})
			files["tokenizer/vocab.txt"] = []byte("a\nb\nc\n")
			push("v2")
			layersOf := func(tag string) map[string]bool {
				t.Helper()
				out, err := testenv.Crane(t, nil, "manifest", "--insecure", "--platform", "linux/amd64", host+"/img/model/image:"+tag)
				if err != nil {
					t.Fatalf("crane manifest: %v", err)
				}
				var m spec.OCIManifest
				if err := json.Unmarshal([]byte(out), &m); err != nil {
					t.Fatal(err)
				}
				set := map[string]bool{}
				for _, l := range m.Layers {
					set[string(l.Digest)] = true
				}
				return set
			}
			v1, v2 := layersOf("v1"), layersOf("v2")
			shared := 0
			for d := range v2 {
				if v1[d] {
					shared++
				}
			}
			if len(v2) != 3 || shared != 2 {
				t.Fatalf("v2 has %d layers, %d shared with v1: want 3, the 2 large files' shared", len(v2), shared)
			}

			h.pastGrace()
			if res, err := h.reg.CollectGarbage(context.Background()); err != nil || res.ManifestsDeleted != 0 || res.ModelsSkipped != 0 {
				t.Fatalf("GC: %+v %v", res, err)
			}
			if again := digestOf(image); again != first {
				t.Fatalf("image form digest %s after GC, was %s", again, first)
			}
			dir := t.TempDir()
			writeTree(t, dir, export(host+"/img/model/image:v2", "linux/amd64"))
			requireTree(t, dir, files)
		})
	}
}
