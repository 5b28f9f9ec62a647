package registry

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/spec"
)

// TestManifestMediaType: the media type of stored manifests, with and
// without the field, wherever it stands.
func TestManifestMediaType(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{`{"schemaVersion":1,"mediaType":"` + spec.MediaTypeManifest + `","config":{},"blobs":[]}`, spec.MediaTypeManifest},
		{`{"schemaVersion":1,"config":{"mediaType":"x"},"blobs":[{"mediaType":"y"}]}`, spec.MediaTypeManifest},
		{`{"schemaVersion":2,"config":{"mediaType":"x"},"layers":[],"mediaType":"` + spec.MediaTypeDockerManifest + `"}`, spec.MediaTypeDockerManifest},
		{`{"schemaVersion":2,"manifests":[{"mediaType":"` + spec.MediaTypeOCIManifest + `"}]}`, spec.MediaTypeOCIIndex},
		{`{"schemaVersion":2,"config":{"mediaType":"x"},"layers":[]}`, spec.MediaTypeOCIManifest},
		{`{"mediaType":"","blobs":[]}`, spec.MediaTypeManifest},
		{`not json`, spec.MediaTypeOCIManifest},
	} {
		if got := manifestMediaType([]byte(c.doc)); got != c.want {
			t.Errorf("%s: %q, want %q", c.doc, got, c.want)
		}
	}
}

// BenchmarkManifestMediaType: the probe of every manifest GET, on a
// manifest of 20,160 packed files (3.5 MB).
func BenchmarkManifestMediaType(b *testing.B) {
	m := spec.Manifest{SchemaVersion: 1, MediaType: spec.MediaTypeManifest, Config: spec.Descriptor{Name: "modelx.yaml", Digest: digest.FromString("c")}}
	for p := range 320 {
		d := spec.Descriptor{Name: fmt.Sprintf("pack-%04d", p), MediaType: spec.MediaTypePack, Digest: digest.FromString(fmt.Sprint(p))}
		for i := range 63 {
			d.Files = append(d.Files, spec.PackedFile{Name: fmt.Sprintf("data/d%02d/item-%05d.json", p%20, p*63+i), Digest: digest.FromString(fmt.Sprint(p, i)), Size: 1000})
		}
		m.Blobs = append(m.Blobs, d)
	}
	data, _ := json.Marshal(m)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if manifestMediaType(data) != spec.MediaTypeManifest {
			b.Fatal("wrong type")
		}
	}
}

// TestImageLayerRecordFits: the record of the image form's layer of small
// files, the largest derived record, stays within maxDerivedRecord for
// any manifest modelxd accepts: short names make it largest relative to
// the manifest.
func TestImageLayerRecordFits(t *testing.T) {
	m := spec.Manifest{SchemaVersion: 1, MediaType: spec.MediaTypeManifest, Config: spec.Descriptor{Name: "modelx.yaml", Digest: digest.FromString("c")}}
	for p := range 40 {
		d := spec.Descriptor{Name: fmt.Sprintf("p%d", p), MediaType: spec.MediaTypePack, Digest: digest.FromString(fmt.Sprint(p))}
		for i := range 250 {
			d.Files = append(d.Files, spec.PackedFile{Name: fmt.Sprintf("%x", p*250+i), Digest: digest.FromString(fmt.Sprint(p, i)), Size: 1 << 20, Mode: 0o755, Offset: 1 << 30, Length: 1 << 20})
		}
		m.Blobs = append(m.Blobs, d)
	}
	manifest, _ := json.Marshal(m)
	layers, err := imageLayers(&m)
	if err != nil {
		t.Fatal(err)
	}
	record, _ := json.Marshal(derivedBlob{Digest: digest.FromString("layer"), Size: 1 << 40, Layer: layers[len(layers)-1]})
	if ratio := float64(len(record)) / float64(len(manifest)); ratio*spec.MaxManifestSize > maxDerivedRecord {
		t.Fatalf("a layer record is %.2f times its manifest: one from a manifest of %d bytes would pass the %d-byte bound", ratio, spec.MaxManifestSize, maxDerivedRecord)
	}
}
