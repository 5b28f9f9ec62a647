package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// legacyManifest is shaped as the original modelx wrote manifests: decimal
// file modes, a directory blob, no schemaVersion.
const legacyManifest = `{
  "mediaType": "application/vnd.modelx.model.manifest.v1.json",
  "config": {"name": "modelx.yaml", "mediaType": "application/vnd.modelx.model.config.v1.yaml",
    "digest": "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", "size": 3,
    "mode": 420, "modified": "2023-03-01T10:00:00+08:00"},
  "blobs": [
    {"name": "model.onnx", "mediaType": "application/vnd.modelx.model.file.v1",
     "digest": "sha256:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9", "size": 3, "mode": 420,
     "modified": "2023-03-01T10:00:00+08:00"},
    {"name": "tokenizer", "mediaType": "application/vnd.modelx.model.directory.v1.tar+gz",
     "digest": "sha256:baa5a0964d3320fbc0c6a922140453c8513ea24ab8fd0577034804a967248096", "size": 3, "mode": 2147484141,
     "modified": "2023-03-01T10:00:00+08:00"}
  ],
  "annotations": {"description": "legacy"}
}`

func TestParseLegacyManifest(t *testing.T) {
	m, err := ParseManifest([]byte(legacyManifest))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Blobs) != 2 || m.Blobs[1].MediaType != MediaTypeDirectoryTarGz || !m.Blobs[1].Mode.IsDir() || m.Blobs[0].Mode.Perm() != 0o644 {
		t.Fatalf("parsed %+v", m)
	}
	// It survives a round trip through our types.
	data, _ := json.Marshal(m)
	if _, err := ParseManifest(data); err != nil {
		t.Fatalf("re-encoded manifest: %v", err)
	}
}

func TestManifestValidate(t *testing.T) {
	d := digest.FromString("x")
	file := func(name string) Descriptor {
		return Descriptor{Name: name, MediaType: MediaTypeFile, Digest: d, Size: 1}
	}
	base := func() Manifest {
		return Manifest{SchemaVersion: 1, MediaType: MediaTypeManifest,
			Config: Descriptor{Name: ConfigFileName, MediaType: MediaTypeConfig, Digest: d, Size: 1},
			Blobs:  []Descriptor{file("a/b.bin"), file("c")}}
	}
	tests := []struct {
		name   string
		mutate func(*Manifest)
		want   string // substring of the error; "" means valid
	}{
		{"valid", func(*Manifest) {}, ""},
		{"no blobs", func(m *Manifest) { m.Blobs = nil }, ""},
		{"schema 2", func(m *Manifest) { m.SchemaVersion = 2 }, "schemaVersion 2"},
		{"media type", func(m *Manifest) { m.MediaType = "application/json" }, "mediaType"},
		{"config missing", func(m *Manifest) { m.Config = Descriptor{} }, "config.name"},
		{"config media type", func(m *Manifest) { m.Config.MediaType = MediaTypeFile }, "config.mediaType"},
		{"dot-dot", func(m *Manifest) { m.Blobs[0].Name = "a/../../x" }, `".." element`},
		{"absolute", func(m *Manifest) { m.Blobs[0].Name = "/etc/passwd" }, "absolute"},
		{"empty element", func(m *Manifest) { m.Blobs[0].Name = "a//b" }, "empty element"},
		{"backslash", func(m *Manifest) { m.Blobs[0].Name = `a\b` }, "backslash"},
		{"control char", func(m *Manifest) { m.Blobs[0].Name = "a\nb" }, "control"},
		{"duplicate", func(m *Manifest) { m.Blobs[1].Name = "a/b.bin" }, "more than once"},
		{"shadows config", func(m *Manifest) { m.Blobs[1].Name = ConfigFileName }, "more than once"},
		{"file is a directory", func(m *Manifest) { m.Blobs[1].Name = "a" }, "also the directory"},
		{"deep file is a directory", func(m *Manifest) { m.Blobs[1].Name = "a/b.bin/c/d" }, "also the directory"},
		{"bad digest", func(m *Manifest) { m.Blobs[0].Digest = "sha256:abc" }, "digest"},
		{"sha512", func(m *Manifest) { m.Blobs[0].Digest = digest.Digest("sha512:" + strings.Repeat("ab", 64)) }, "digest"},
		{"negative size", func(m *Manifest) { m.Blobs[0].Size = -1 }, "negative"},
		{"unknown media type", func(m *Manifest) { m.Blobs[0].MediaType = "text/plain" }, "not supported"},
		{"pack", func(m *Manifest) { m.Blobs = append(m.Blobs, pack("p", packed("t/x", 0, 10), packed("t/y", 10, 5))) }, ""},
		{"pack traversal", func(m *Manifest) { m.Blobs = append(m.Blobs, pack("p", packed("../x", 0, 10))) }, `".." element`},
		{"pack overlap", func(m *Manifest) { m.Blobs = append(m.Blobs, pack("p", packed("x", 0, 10), packed("y", 5, 5))) }, "overlaps"},
		{"pack past end", func(m *Manifest) { m.Blobs = append(m.Blobs, pack("p", packed("x", 95, 10))) }, "outside"},
		{"pack empty", func(m *Manifest) { m.Blobs = append(m.Blobs, pack("p")) }, "at least one file"},
		{"pack names twice", func(m *Manifest) {
			m.Blobs = append(m.Blobs, pack("p", packed("x", 0, 1)), pack("p", packed("y", 0, 1)))
		}, "unique"},
		{"packed file shadows file", func(m *Manifest) { m.Blobs = append(m.Blobs, pack("p", packed("c", 0, 1))) }, "more than once"},
		{"chunked", func(m *Manifest) { m.Blobs = append(m.Blobs, chunked("big", 4, 6)) }, ""},
		{"chunked bad digest", func(m *Manifest) { b := chunked("big", 4, 6); b.Digest = d; m.Blobs = append(m.Blobs, b) }, "chunk list"},
		{"chunked bad size", func(m *Manifest) { b := chunked("big", 4, 6); b.Size = 11; m.Blobs = append(m.Blobs, b) }, "add up"},
		{"chunked zero chunk", func(m *Manifest) { m.Blobs = append(m.Blobs, chunked("big", 4, 0)) }, "not positive"},
		{"file lists chunks", func(m *Manifest) { m.Blobs[0].Chunks = []Chunk{{Digest: d, Size: 1}} }, "only chunked"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := base()
			tc.mutate(&m)
			err := m.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var apiErr *Error
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &apiErr) || apiErr.Code != ErrorManifestInvalid {
				t.Fatalf("error %v, want MANIFEST_INVALID containing %q", err, tc.want)
			}
		})
	}
}

func pack(name string, files ...PackedFile) Descriptor {
	return Descriptor{Name: name, MediaType: MediaTypePack, Digest: digest.FromString(name), Size: 100, Files: files}
}

func packed(name string, offset, length int64) PackedFile {
	return PackedFile{Name: name, Digest: digest.FromString(name), Size: length * 2, Offset: offset, Length: length}
}

func chunked(name string, sizes ...int64) Descriptor {
	var chunks []Chunk
	var total int64
	for i, s := range sizes {
		chunks = append(chunks, Chunk{Digest: digest.FromString(fmt.Sprint(name, i)), Size: s})
		total += s
	}
	return Descriptor{Name: name, MediaType: MediaTypeChunkedFile, Digest: ChunkListDigest(chunks), Size: total, Chunks: chunks}
}

func TestReferencedExpandsChunks(t *testing.T) {
	m := Manifest{Config: Descriptor{Name: ConfigFileName, Digest: digest.FromString("c"), Size: 1},
		Blobs: []Descriptor{chunked("big", 3, 4), pack("p", packed("x", 0, 1))}}
	refs := m.Referenced()
	if len(refs) != 4 || refs[1].Name != "big#0" || refs[2].Size != 4 || refs[3].MediaType != MediaTypePack {
		t.Fatalf("Referenced() = %+v", refs)
	}
}

func TestParseManifestRejectsGarbage(t *testing.T) {
	for _, in := range []string{"", "{", "[]", `{"config": 5}`, legacyManifest + "{}"} {
		if _, err := ParseManifest([]byte(in)); err == nil {
			t.Errorf("ParseManifest(%.20q) succeeded", in)
		}
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"bert", true}, {"nlp", true}, {"a1.b_c-d", true}, {"x", true},
		{"", false}, {"Bert", false}, {"-a", false}, {"a-", false}, {"a..b", false}, {"a/b", false}, {"..", false},
		{strings.Repeat("a", 128), true}, {strings.Repeat("a", 129), false},
	} {
		if err := ValidateComponent("name", tc.in); (err == nil) != tc.ok {
			t.Errorf("ValidateComponent(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func TestParseReference(t *testing.T) {
	d := digest.FromString("m")
	for _, tc := range []struct {
		in      string
		tag     string
		dig     digest.Digest
		errCode ErrorCode
	}{
		{in: "v1", tag: "v1"},
		{in: "latest", tag: "latest"},
		{in: "V1.0_rc-2", tag: "V1.0_rc-2"},
		{in: string(d), dig: d},
		{in: "-v1", errCode: ErrorReferenceInvalid},
		{in: ".hidden", errCode: ErrorReferenceInvalid},
		{in: strings.Repeat("t", 129), errCode: ErrorReferenceInvalid},
		{in: "sha256:short", errCode: ErrorDigestInvalid},
		{in: "md5:d41d8cd98f00b204e9800998ecf8427e", errCode: ErrorDigestInvalid},
	} {
		ref, err := ParseReference(tc.in)
		if tc.errCode != "" {
			var e *Error
			if !errors.As(err, &e) || e.Code != tc.errCode {
				t.Errorf("ParseReference(%q) = %v, want %s", tc.in, err, tc.errCode)
			}
			continue
		}
		if err != nil || ref.Tag != tc.tag || ref.Digest != tc.dig || ref.String() != tc.in {
			t.Errorf("ParseReference(%q) = %+v, %v", tc.in, ref, err)
		}
	}
}

func TestParseModelConfig(t *testing.T) {
	good := `
description: Awesome text generator
framework: pytorch
task: text-generation
tags: [modelx, demo]
maintainers: [maintainer]
modelFiles: [torch.bin, tf_output.h5]
config:
  inputs: {text: {type: string}}
  outputs: {}
serving:
  server: triton
  gpu: 1
`
	c, err := ParseModelConfig([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.Framework != "pytorch" || len(c.ModelFiles) != 2 || c.Serving.Server != "triton" || c.Config.Inputs["text"] == nil {
		t.Fatalf("parsed %+v", c)
	}
	for _, tc := range []struct{ in, want string }{
		{"modelFile: [a]", `unknown field "modelFile"`},
		{"tags: notalist", "tags"},
		{"modelFiles: [../secret]", "modelFiles[0]"},
		{"serving: {server: tfserving}", "serving.server"},
		{"serving: {gpu: -1}", "serving.gpu"},
		{"serving: {gpu: x}", "field serving.gpu"},
		{"description: [", "modelx.yaml"},
	} {
		_, err := ParseModelConfig([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), ConfigFileName) {
			t.Errorf("ParseModelConfig(%q) = %v, want an error naming %q", tc.in, err, tc.want)
		}
	}
}

// BenchmarkParseManifest parses and validates the manifest of a model of
// 20,160 small files in 320 packs (3.5 MB of JSON), what a registry does on
// every push and a client on every pull of such a model.
func BenchmarkParseManifest(b *testing.B) {
	m := Manifest{SchemaVersion: 1, MediaType: MediaTypeManifest, Config: Descriptor{Name: "modelx.yaml", MediaType: MediaTypeConfig, Digest: digest.FromString("c"), Size: 1}}
	for p := range 320 {
		d := Descriptor{Name: fmt.Sprintf("pack-%04d", p), MediaType: MediaTypePack, Digest: digest.FromString(fmt.Sprint(p))}
		var off int64
		for i := range 63 {
			d.Files = append(d.Files, PackedFile{Name: fmt.Sprintf("data/d%02d/s%02d/item-%05d.json", p%20, i%20, p*63+i), Digest: digest.FromString(fmt.Sprint(p, i)), Size: 1000, Mode: 0o644, Offset: off, Length: 500})
			off += 500
		}
		d.Size = off
		m.Blobs = append(m.Blobs, d)
	}
	data, _ := json.Marshal(m)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ParseManifest(data); err != nil {
			b.Fatal(err)
		}
	}
}

// largeManifest is a manifest near the 16 MiB limit: 100,000 small files
// in 400 packs, plus 10 chunked files of 128 chunks each.
func largeManifest(tb testing.TB) []byte {
	tb.Helper()
	m := Manifest{SchemaVersion: 1, MediaType: MediaTypeManifest, Config: Descriptor{Name: "modelx.yaml", MediaType: MediaTypeConfig, Digest: digest.FromString("c"), Size: 1},
		Annotations: map[string]string{"description": "large"}}
	for p := range 400 {
		d := Descriptor{Name: fmt.Sprintf("pack-%04d", p), MediaType: MediaTypePack, Digest: digest.FromString(fmt.Sprint(p))}
		var off int64
		for i := range 250 {
			d.Files = append(d.Files, PackedFile{Name: fmt.Sprintf("d%02d/%02d/%06d.bin", p%100, i%25, p*250+i),
				Digest: digest.FromString(fmt.Sprint(p, i)), Size: 1000, Mode: 0o644, Offset: off, Length: 500})
			off += 500
		}
		d.Size = off
		m.Blobs = append(m.Blobs, d)
	}
	for f := range 10 {
		var chunks []Chunk
		for c := range 128 {
			chunks = append(chunks, Chunk{Digest: digest.FromString(fmt.Sprint(f, c)), Size: 16 << 20})
		}
		m.Blobs = append(m.Blobs, Descriptor{Name: fmt.Sprintf("weights/model-%05d-of-00010.safetensors", f), MediaType: MediaTypeChunkedFile,
			Digest: ChunkListDigest(chunks), Size: 128 * 16 << 20, Mode: 0o644, Chunks: chunks})
	}
	data, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	if len(data) > MaxManifestSize {
		tb.Fatalf("the large manifest is %d bytes, over the limit", len(data))
	}
	return data
}

// BenchmarkParseManifestLarge parses a manifest near the size limit (16.5
// MB, 100,000 files), the most a registry's manifest PUT parses.
func BenchmarkParseManifestLarge(b *testing.B) {
	data := largeManifest(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseManifest(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckManifestKeys is the key check alone, on the large manifest.
func BenchmarkCheckManifestKeys(b *testing.B) {
	data := largeManifest(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := checkManifestKeys(data); err != nil {
			b.Fatal(err)
		}
	}
}

func TestErrorDetailIsReadable(t *testing.T) {
	for _, tc := range []struct {
		err  *Error
		want string
	}{
		{Errorf(ErrorInternal, "internal error").WithDetail(map[string]any{"requestId": "host/abc-000001"}),
			"INTERNAL_ERROR: internal error (request ID host/abc-000001: quote it to the registry's operator)"},
		{Errorf(ErrorInternal, "internal error").WithDetail(map[string]string{"requestId": "x-1"}),
			"INTERNAL_ERROR: internal error (request ID x-1: quote it to the registry's operator)"},
		{Errorf(ErrorManifestBlobUnknown, "blobs missing").WithDetail(map[string]any{"missing": []any{"a", "b", "c", "d", "e", "f", "g"}}),
			"MANIFEST_BLOB_UNKNOWN: blobs missing (missing: a, b, c, d, e and 2 more)"},
		{Errorf(ErrorHoldInvalid, "bad").WithDetail(map[string]any{"names": []string{"x"}, "requestId": "r"}),
			"HOLD_INVALID: bad (names: x; request ID r: quote it to the registry's operator)"},
		{Errorf(ErrorDenied, "no"), "DENIED: no"},
		{Errorf(ErrorDenied, "no").WithDetail("plain"), "DENIED: no (plain)"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}

// TestPathConflictsAgreeWithSets checks the neighbour comparison of
// checkPathConflicts against the plain definition (a set of paths, and
// each path's parent directories looked up in it) on random sets of paths
// over an alphabet that sorts on both sides of '/'.
func TestPathConflictsAgreeWithSets(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "a-./0~"
	for range 20000 {
		names := make([]string, 1+rng.IntN(6))
		for i := range names {
			b := make([]byte, 1+rng.IntN(5))
			for j := range b {
				b[j] = alphabet[rng.IntN(len(alphabet))]
			}
			names[i] = string(b)
		}
		want := false
		set := map[string]bool{}
		for _, n := range names {
			want = want || set[n]
			set[n] = true
		}
		for _, n := range names {
			for i := range len(n) {
				if n[i] == '/' && set[n[:i]] {
					want = true
				}
			}
		}
		if got := checkPathConflicts(names) != nil; got != want {
			t.Fatalf("%q: conflict %v, want %v", names, got, want)
		}
	}
}
