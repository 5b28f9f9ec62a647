package registry_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"modelx.io/modelx/client"
	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/spec"
)

// tarOf is a tar archive of files (path → content), compressed as
// compression says ("", "gzip" or "zstd").
func tarOf(t *testing.T, compression string, files map[string][]byte) []byte {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for name, data := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o640, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	// A symlink and a whiteout, which modelx leaves out.
	_ = tw.WriteHeader(&tar.Header{Name: "link", Linkname: "elsewhere", Typeflag: tar.TypeSymlink})
	_ = tw.WriteHeader(&tar.Header{Name: ".wh.gone", Typeflag: tar.TypeReg})
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	switch compression {
	case "gzip":
		zw := gzip.NewWriter(&out)
		_, _ = zw.Write(raw.Bytes())
		_ = zw.Close()
	case "zstd":
		zw, _ := zstd.NewWriter(&out)
		_, _ = zw.Write(raw.Bytes())
		_ = zw.Close()
	default:
		return raw.Bytes()
	}
	return out.Bytes()
}

// modelxPull pulls ref from h with the modelx client into a new directory.
func modelxPull(t *testing.T, h *harness, ref string) string {
	t.Helper()
	r, err := client.ParseReference(h.url+"/"+ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if _, err := client.New(client.Options{}).Pull(context.Background(), r, dst, client.PullOptions{}); err != nil {
		t.Fatalf("modelx pull %s: %v", ref, err)
	}
	return dst
}

// TestModelxPullsOCIArtifacts: artifacts pushed by the real oras and
// crane CLIs — files, a directory, a ModelPack model with tar layers (as
// modctl lays them out) and a container image — are pulled by modelx as
// the files they hold, byte for byte.
func TestModelxPullsOCIArtifacts(t *testing.T) {
	all := backends(t)
	for _, b := range []backend{all[0], all[2]} {
		t.Run(b.name, func(t *testing.T) {
			h := newHarness(t, b, registry.Options{})
			host := strings.TrimPrefix(h.url, "http://")
			random := seededBytes(3)

			t.Run("oras files and a directory", func(t *testing.T) {
				files := map[string][]byte{
					"weights.bin":         random(300 << 10),
					"notes.txt":           []byte("pushed by oras\n"),
					"docs/guide.md":       []byte("# guide\n"),
					"docs/img/figure.bin": random(5 << 10),
				}
				src := t.TempDir()
				writeTree(t, src, files)
				out, err := testenv.OrasIn(t, src, nil, "push", "--plain-http", "--artifact-type", "application/vnd.example.model",
					host+"/oras/files:v1", "weights.bin", "notes.txt", "docs")
				if err != nil {
					t.Fatalf("oras push: %v\n%s", err, out)
				}
				dst := modelxPull(t, h, "oras/files:v1")
				cfg, err := os.ReadFile(filepath.Join(dst, spec.ConfigFileName))
				if err != nil || !strings.Contains(string(cfg), "application/vnd.example.model") {
					t.Fatalf("synthesized %s: %q %v", spec.ConfigFileName, cfg, err)
				}
				files[spec.ConfigFileName] = cfg
				requireTree(t, dst, files)
			})

			t.Run("ModelPack tar layers", func(t *testing.T) {
				weights := map[string][]byte{"model/weights.safetensors": random(700 << 10), "model/config.json": []byte(`{"layers": 2}`)}
				docs := map[string][]byte{"README.md": []byte("# packed model\n")}
				src := t.TempDir()
				writeTree(t, src, map[string][]byte{
					"weights.tar":    tarOf(t, "", weights),
					"docs.tar.zst":   tarOf(t, "zstd", docs),
					"modelx.yaml":    []byte("description: a ModelPack model\n"),
					"modelpack.json": []byte(`{"descriptor":{},"modelfs":{"type":"layers","diffIds":[]},"config":{}}`),
				})
				out, err := testenv.OrasIn(t, src, nil, "push", "--plain-http", "--artifact-type", "application/vnd.cncf.model.manifest.v1+json",
					"--config", "modelpack.json:application/vnd.cncf.model.config.v1+json", host+"/pack/model:v1",
					"weights.tar:application/vnd.cncf.model.weight.v1.tar", "docs.tar.zst:application/vnd.cncf.model.doc.v1.tar+zstd",
					"modelx.yaml:application/vnd.cncf.model.weight.config.v1.raw")
				if err != nil {
					t.Fatalf("oras push: %v\n%s", err, out)
				}
				dst := modelxPull(t, h, "pack/model:v1")
				want := map[string][]byte{spec.ConfigFileName: []byte("description: a ModelPack model\n")}
				for name, data := range weights {
					want[name] = data
				}
				for name, data := range docs {
					want[name] = data
				}
				requireTree(t, dst, want)
				// The view is stored: the same digest every time, and a pull
				// by that digest reads it.
				first := h.do(http.MethodGet, "/pack/model/manifests/v1", nil, nil).header.Get(spec.DigestHeader)
				again := h.do(http.MethodGet, "/pack/model/manifests/v1", nil, nil).header.Get(spec.DigestHeader)
				if first == "" || first != again {
					t.Fatalf("modelx view digest %q then %q", first, again)
				}
				requireTree(t, modelxPull(t, h, "pack/model@"+first), want)
				// modelx tag names the view's files again, made or not yet.
				tagged, err := client.ParseReference(h.url+"/pack/model:v1", nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := client.New(client.Options{}).Tag(context.Background(), tagged, "v1-copy"); err != nil {
					t.Fatalf("modelx tag: %v", err)
				}
				requireTree(t, modelxPull(t, h, "pack/model:v1-copy"), want)
				// By the OCI manifest's own digest, the bytes are the OCI
				// manifest, and modelx says how to pull it.
				oci := h.do(http.MethodHead, "/v2/pack/model/manifests/v1", nil, nil).header.Get(spec.OCIDigestHeader)
				r, err := client.ParseReference(h.url+"/pack/model@"+oci, nil)
				if err != nil {
					t.Fatal(err)
				}
				_, err = client.New(client.Options{}).Pull(context.Background(), r, t.TempDir(), client.PullOptions{})
				if err == nil || !strings.Contains(err.Error(), "is an OCI manifest") || !strings.Contains(err.Error(), "pull it by tag") {
					t.Fatalf("pull by the OCI digest: %v", err)
				}
			})

			t.Run("crane image", func(t *testing.T) {
				layer := map[string][]byte{"app/run.sh": []byte("#!/bin/sh\necho hi\n"), "app/data.bin": random(64 << 10)}
				src := t.TempDir()
				writeTree(t, src, map[string][]byte{"layer.tar.gz": tarOf(t, "gzip", layer)})
				if out, err := testenv.Crane(t, nil, "append", "--insecure", "-f", filepath.Join(src, "layer.tar.gz"), "-t", host+"/img/app:v1"); err != nil {
					t.Fatalf("crane append: %v\n%s", err, out)
				}
				// modelx tag, before anything was pulled, names files of the
				// view not made yet: the registry makes them.
				tagged, err := client.ParseReference(h.url+"/img/app:v1", nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := client.New(client.Options{}).Tag(context.Background(), tagged, "v1-copy"); err != nil {
					t.Fatalf("modelx tag: %v", err)
				}
				dst := modelxPull(t, h, "img/app:v1-copy")
				cfg, err := os.ReadFile(filepath.Join(dst, spec.ConfigFileName))
				if err != nil {
					t.Fatal(err)
				}
				layer[spec.ConfigFileName] = cfg
				requireTree(t, dst, layer)
			})
		})
	}
}

// TestUIShowsOCIArtifacts: the web UI shows an artifact an OCI client
// pushed as its files, with the README of its tar layer rendered.
func TestUIShowsOCIArtifacts(t *testing.T) {
	h := newHarness(t, backends(t)[0], registry.Options{})
	const model = "oci/ui"
	config := h.ociPushBlob(model, []byte("{}"))
	layer := h.ociPushBlob(model, tarOf(t, "", map[string][]byte{"README.md": []byte("# Seen in the UI\n"), "w.bin": {1, 2, 3}}))
	layer.MediaType = "application/vnd.cncf.model.weight.v1.tar"
	h.ociPushManifest(model, "v1", ociImage(config, layer))
	r := h.do(http.MethodGet, "/-/ui/"+model+"/v1", nil, http.Header{"Accept": {"text/html"}})
	h.expect(r, http.StatusOK, "")
	for _, want := range []string{"Seen in the UI", "w.bin", spec.ConfigFileName} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("the version page lacks %q", want)
		}
	}
}

// TestModelxViewOfClashingFiles: an artifact whose files cannot all be
// written (a file and a directory of the same name) is refused with
// MANIFEST_INVALID, saying which artifact and which paths.
func TestModelxViewOfClashingFiles(t *testing.T) {
	h := newHarness(t, backends(t)[0], registry.Options{})
	const model = "oci/clash"
	config := h.ociPushBlob(model, []byte("{}"))
	layer := h.ociPushBlob(model, tarOf(t, "", map[string][]byte{"a": []byte("file"), "a/b": []byte("file under a")}))
	layer.MediaType = "application/vnd.oci.image.layer.v1.tar"
	h.ociPushManifest(model, "v1", ociImage(config, layer))
	r := h.do(http.MethodGet, "/"+model+"/manifests/v1", nil, nil)
	h.expect(r, http.StatusBadRequest, spec.ErrorManifestInvalid)
	if msg := r.apiError(t).Message; !strings.Contains(msg, "cannot be a modelx version") || !strings.Contains(msg, `"a/b"`) {
		t.Fatalf("message %q should say the artifact's files cannot be a version, and which", msg)
	}
}
