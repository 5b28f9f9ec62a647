package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"
	"sigs.k8s.io/yaml"
)

// The properties below are restated independently of the code under test:
// a fuzz target that reused the validators' own regexps would only check
// that they agree with themselves.

var fuzzSHA256 = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// checkDigest fails t unless d is a sha256 digest that go-digest also accepts.
func checkDigest(t *testing.T, what string, d digest.Digest) {
	t.Helper()
	if !fuzzSHA256.MatchString(string(d)) || d.Validate() != nil || d.Algorithm() != digest.SHA256 {
		t.Fatalf("%s: accepted digest %q is not a valid sha256 digest", what, d)
	}
}

// checkPath fails t unless p is a clean, relative, slash-separated path that
// stays inside the directory it is joined to.
func checkPath(t *testing.T, what, p string) {
	t.Helper()
	bad := func(why string) { t.Helper(); t.Fatalf("%s: accepted path %q %s", what, p, why) }
	switch {
	case p == "":
		bad("is empty")
	case strings.HasPrefix(p, "/") || path.IsAbs(p) || filepath.IsAbs(p):
		bad("is absolute")
	case strings.Contains(p, `\`):
		bad("has a backslash")
	case strings.IndexFunc(p, unicode.IsControl) >= 0:
		bad("has a control character") // C0, DEL and C1, NUL included
	case path.Clean(p) != p:
		bad("is not clean")
	case !filepath.IsLocal(p):
		bad("is not local")
	case !strings.HasPrefix(filepath.Join("/model", p), "/model/"):
		bad("leaves the model directory")
	}
	switch {
	case !utf8.ValidString(p):
		bad("is not valid UTF-8")
	case strings.ContainsAny(p, "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"):
		bad("has a bidirectional control character")
	}
	for _, e := range strings.Split(p, "/") {
		if e == "" || e == "." || e == ".." {
			bad(fmt.Sprintf("has a %q element", e))
		}
		// What Windows and macOS would open for e: HFS+ drops
		// zero-width and format characters, NTFS a stream suffix and
		// trailing dots and spaces; both ignore case.
		opened := strings.Map(func(r rune) rune {
			if r >= 0x200c && r <= 0x200f || r >= 0x202a && r <= 0x202e || r >= 0x206a && r <= 0x206f || r == 0xfeff {
				return -1
			}
			return r
		}, e)
		opened, _, _ = strings.Cut(opened, ":")
		opened = strings.TrimRight(opened, ". ")
		for _, reserved := range []string{".git", "git~1", ".modelx", "modelx~1"} {
			if strings.EqualFold(opened, reserved) {
				bad(fmt.Sprintf("has the element %q, which opens %s", e, reserved))
			}
		}
	}
}

// FuzzValidatePath: ValidatePath never panics, and what it accepts is a
// clean relative UTF-8 path with no "..", "." or empty element, no leading
// "/", no backslash, no control or bidirectional control character, and no
// element that opens .git or .modelx on some filesystem.
func FuzzValidatePath(f *testing.F) {
	for _, s := range []string{
		"modelx.yaml", "a/b/c.bin", "ünïcode/名前.txt", "a..b", "...", ".hidden", "dir/", "",
		"/etc/passwd", "a/../b", "..", ".", "./a", "a//b", `a\b`, "a\x00b", "a\nb", "a\u0085b", "a\x7fb",
		"a/\xff\xfe", "C:/x", "a/./b",
		".git", ".GIT/config", "sub/.Git/hooks/post-checkout", ".git.", ".git ", ".git::$INDEX_ALLOCATION", "git~1", "GIT~1/x",
		".g\u200cit", ".modelx/cache.json", "a/.MODELX", "modelx~1", ".gitignore", ".github/x", ".modelxignore",
		"evil\u202etxt.exe", "a\u2066b\u2069", "\u200fx", "x\u061c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if ValidatePath(p) == nil {
			checkPath(t, "ValidatePath", p)
		}
	})
}

// FuzzNames: the name, tag, digest and manifest-reference validators never
// panic; what they accept has the documented syntax; an accepted reference
// is its own String() and parses again to the same value.
func FuzzNames(f *testing.F) {
	for _, s := range []string{
		"bert", "nlp", "a1.b_c-d", "Bert", "-a", "a-", "a..b", "a/b", "v1", "latest", "V1.0_rc-2", "_x",
		".hidden", "-v1", strings.Repeat("t", 128), strings.Repeat("t", 129),
		string(digest.FromString("m")), "sha256:short", "SHA256:" + strings.Repeat("a", 64),
		"sha256:" + strings.Repeat("A", 64), "md5:d41d8cd98f00b204e9800998ecf8427e", ":", "sha256:", "v1:x",
	} {
		f.Add(s)
	}
	component := regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*$`)
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateComponent("name", s) == nil {
			if len(s) == 0 || len(s) > MaxComponentLength || !component.MatchString(s) || ValidatePath(s) != nil {
				t.Fatalf("ValidateComponent accepted %q", s)
			}
		}
		if ValidateTag(s) == nil {
			if len(s) == 0 || len(s) > 128 || s[0] == '.' || s[0] == '-' ||
				strings.IndexFunc(s, func(r rune) bool {
					return r > unicode.MaxASCII || !(unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("_.-", r))
				}) >= 0 {
				t.Fatalf("ValidateTag accepted %q", s)
			}
		}
		if ValidateDigest(digest.Digest(s)) == nil {
			checkDigest(t, "ValidateDigest", digest.Digest(s))
		}
		ref, err := ParseReference(s)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || (e.Code != ErrorReferenceInvalid && e.Code != ErrorDigestInvalid) {
				t.Fatalf("ParseReference(%q): error %v is not a REFERENCE_INVALID or DIGEST_INVALID API error", s, err)
			}
			return
		}
		switch {
		case (ref.Tag == "") == (ref.Digest == ""):
			t.Fatalf("ParseReference(%q) = %+v: want exactly one of tag and digest", s, ref)
		case ref.Digest != "":
			checkDigest(t, "ParseReference", ref.Digest)
		case ValidateTag(ref.Tag) != nil:
			t.Fatalf("ParseReference(%q) accepted tag %q that ValidateTag refuses", s, ref.Tag)
		}
		if ref.String() != s {
			t.Fatalf("ParseReference(%q).String() = %q", s, ref.String())
		}
		again, err := ParseReference(ref.String())
		if err != nil || again != ref {
			t.Fatalf("ParseReference(%q) = %+v; parsing its String() gave %+v, %v", s, ref, again, err)
		}
	})
}

// fuzzManifests are seed manifests: every blob kind, and near misses.
func fuzzManifests() []string {
	d := digest.FromString("x")
	cfg := Descriptor{Name: ConfigFileName, MediaType: MediaTypeConfig, Digest: d, Size: 1}
	chunks := []Chunk{{Digest: digest.FromString("c0"), Size: 4}, {Digest: digest.FromString("c1"), Size: 6}}
	full := Manifest{SchemaVersion: 1, MediaType: MediaTypeManifest, Config: cfg, Blobs: []Descriptor{
		{Name: "weights/model.safetensors", MediaType: MediaTypeFile, Digest: d, Size: 3, Mode: 0o644},
		{Name: "big.bin", MediaType: MediaTypeChunkedFile, Digest: ChunkListDigest(chunks), Size: 10, Chunks: chunks},
		{Name: "pack-0000", MediaType: MediaTypePack, Digest: digest.FromString("p"), Size: 30, Files: []PackedFile{
			{Name: "tok/a.json", Digest: d, Size: 10, Offset: 0, Length: 12},
			{Name: "tok/b.json", Digest: d, Size: 0, Offset: 12, Length: 9},
		}},
		{Name: "legacy-dir", MediaType: MediaTypeDirectoryTarGz, Digest: d, Size: 3, Mode: 0o20000000755},
	}, Annotations: map[string]string{"k": "v"}}
	enc := func(m Manifest) string {
		data, err := json.Marshal(m)
		if err != nil {
			panic(err)
		}
		return string(data)
	}
	out := []string{legacyManifest, enc(full), "", "{", "[]", `{"config": 5}`, legacyManifest + "{}", "null", `{"blobs":null}`}
	mutate := func(fn func(m *Manifest)) {
		m := full
		m.Blobs = append([]Descriptor(nil), full.Blobs...)
		for i := range m.Blobs { // deep enough that no mutation reaches full
			m.Blobs[i].Files = append([]PackedFile(nil), m.Blobs[i].Files...)
			m.Blobs[i].Chunks = append([]Chunk(nil), m.Blobs[i].Chunks...)
		}
		fn(&m)
		out = append(out, enc(m))
	}
	mutate(func(m *Manifest) { m.Blobs[0].Name = "tok/a.json" })             // file shadows packed file
	mutate(func(m *Manifest) { m.Blobs[0].Name = "tok" })                    // file is a directory
	mutate(func(m *Manifest) { m.Blobs[2].Size = -1 })                       // pack size negative
	mutate(func(m *Manifest) { m.Blobs[2].Files[1].Offset = 1<<62 + 1<<61 }) // offset+length overflow
	mutate(func(m *Manifest) { m.Blobs[2].Name = "\x1b]0;title\x07" })       // pack label with escapes
	mutate(func(m *Manifest) { m.Blobs[1].Chunks[0].Size = 1 << 62 })        // chunk sizes
	mutate(func(m *Manifest) { m.Blobs[0].Modified = m.Blobs[0].Modified.AddDate(2000, 0, 0) })
	mutate(func(m *Manifest) { m.Blobs[0].Name = ".git/hooks/post-checkout" })
	mutate(func(m *Manifest) { m.Blobs[2].Files[0].Name = "sub/.GIT/config" })
	mutate(func(m *Manifest) { m.Blobs[1].Name = "git~1/config" })
	mutate(func(m *Manifest) { m.Blobs[0].Name = ".modelx/cache.json" })
	mutate(func(m *Manifest) { m.Blobs[2].Name = "pack\u202e0000" })
	mutate(func(m *Manifest) { m.Blobs[2].Files[1].Name = "tok/b\u2067.json" })
	// Documents that decoders read differently: one key twice, a key in
	// another case, invalid UTF-8, half a surrogate pair.
	doc := enc(full)
	for _, edit := range [][2]string{
		{`{"name":"weights/model.safetensors",`, `{"name":"weights/model.safetensors","name":"x",`},
		{`{"name":"weights/model.safetensors",`, `{"name":"weights/model.safetensors","NAME":"x",`},
		{`{"name":"weights/model.safetensors",`, `{"Name":"weights/model.safetensors",`},
		{`{"name":"tok/a.json",`, `{"name":"tok/a.json","n\u0061me":"x",`},
		{`"annotations":{"k":"v"}`, `"annotations":{"k":"v","K":"w"}`},
		{`"annotations":{"k":"v"}`, `"annotations":{"k":"v","k":"w"}`},
		{`"annotations":{"k":"v"}`, `"annotations":{"k":"v"},"future":{"a":1,"a":2}`},
		{`"annotations":{"k":"v"}`, `"annotations":{"k":"\ud800"}`},
		{`"annotations":{"k":"v"}`, "\"annotations\":{\"k\":\"\xff\"}"},
		{`"schemaVersion":1`, `"schemaVersion":1,"SchemaVersion":2`},
	} {
		if !strings.Contains(doc, edit[0]) {
			panic("seed edit does not apply: " + edit[0])
		}
		out = append(out, strings.Replace(doc, edit[0], edit[1], 1))
	}
	return out
}

// FuzzParseManifest: ParseManifest never panics; an accepted manifest has
// only clean, distinct, non-nested paths, sha256 digests, non-negative sizes,
// pack frames inside their pack, and chunk lists that add up to the size
// and digest; it reads alike in every decoder (checkKeysReadAlike); it
// re-marshals to bytes that parse to an equal manifest.
func FuzzParseManifest(f *testing.F) {
	for _, s := range fuzzManifests() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := checkManifestKeys(data); err != nil && json.Valid(data) && strings.Contains(err.Error(), "not valid JSON") {
			t.Fatalf("checkManifestKeys calls valid JSON invalid: %v", err)
		}
		m, err := ParseManifest(data)
		checkDecodersAgree(t, data, m, err)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code != ErrorManifestInvalid {
				t.Fatalf("error %v is not a MANIFEST_INVALID API error", err)
			}
			return
		}
		checkManifest(t, m)
		checkKeysReadAlike(t, data)

		enc, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("accepted manifest does not marshal: %v", err)
		}
		m2, err := ParseManifest(enc)
		if err != nil {
			t.Fatalf("re-marshalled manifest is refused: %v\n%s", err, enc)
		}
		enc2, _ := json.Marshal(m2)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("marshal, parse, marshal changed the manifest:\n%s\n%s", enc, enc2)
		}
		if m3, err := ParseManifest(enc2); err != nil || !reflect.DeepEqual(m2, m3) {
			t.Fatalf("re-parsed manifest differs: %+v, %v", m3, err)
		}
	})
}

// checkDecodersAgree checks ParseManifest's answer, m or err, against the
// same checks with encoding/json decoding: ParseManifest decodes with the
// v2 decoder, and every reader of a manifest must read it alike.
func checkDecodersAgree(t *testing.T, data []byte, m *Manifest, err error) {
	t.Helper()
	var v1 Manifest
	v1err := json.Unmarshal(data, &v1)
	if v1err == nil {
		v1err = checkManifestKeys(data)
	}
	if v1err == nil {
		v1err = v1.Validate()
	}
	switch {
	case (err == nil) != (v1err == nil):
		t.Fatalf("ParseManifest says %v; with encoding/json: %v", err, v1err)
	case err == nil && !reflect.DeepEqual(*m, v1):
		t.Fatalf("ParseManifest read %+v; encoding/json %+v", *m, v1)
	}
}

// manifestFields are the keys of the objects a manifest decodes into, and
// which object each key's value (or its elements) is.
var manifestFields = map[string]map[string]string{
	"manifest":   {"schemaVersion": "", "mediaType": "", "config": "descriptor", "blobs": "descriptor", "annotations": ""},
	"descriptor": {"name": "", "mediaType": "", "digest": "", "size": "", "mode": "", "modified": "", "urls": "", "annotations": "", "files": "packed", "chunks": "chunk"},
	"packed":     {"name": "", "digest": "", "size": "", "mode": "", "offset": "", "length": ""},
	"chunk":      {"digest": "", "size": ""},
}

// checkKeysReadAlike fails t unless data, an accepted manifest, reads the
// same in any JSON decoder: valid UTF-8, no object with two keys equal but
// for case (or equal), no key that is a field's but for case. It walks the
// tokens of encoding/json's Decoder, not the code under test.
func checkKeysReadAlike(t *testing.T, data []byte) {
	t.Helper()
	if !utf8.Valid(data) {
		t.Fatal("accepted a manifest that is not valid UTF-8")
	}
	type level struct {
		object   bool
		kind     string // of the object, or of the array's elements
		keys     []string
		valueFor string // object: the kind of the value after the last key
		wantKey  bool
	}
	stack := []*level{}
	next := "manifest" // the kind of the next value
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("accepted manifest does not tokenize: %v", err)
		}
		var top *level
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if key, ok := tok.(string); ok && top != nil && top.object && top.wantKey {
			for _, k := range top.keys {
				if strings.EqualFold(k, key) {
					t.Fatalf("accepted an object with the keys %q and %q", k, key)
				}
			}
			top.keys = append(top.keys, key)
			fields := manifestFields[top.kind]
			top.valueFor = ""
			for f, kind := range fields {
				if strings.EqualFold(f, key) && f != key {
					t.Fatalf("accepted the key %q for the field %q", key, f)
				}
				if f == key {
					top.valueFor = kind
				}
			}
			top.wantKey = false
			continue
		}
		if top != nil {
			if top.object {
				next = top.valueFor
				top.wantKey = true
			} else {
				next = top.kind
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &level{object: true, kind: next, wantKey: true})
		case json.Delim('['):
			stack = append(stack, &level{kind: next})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if len(stack) > 0 && stack[len(stack)-1].object {
				stack[len(stack)-1].wantKey = true
			}
		}
	}
}

// TestManifestFieldsMatchTypes: the fuzz oracle's field lists are the
// types' own, and checkManifestKeys's schema knows them all.
func TestManifestFieldsMatchTypes(t *testing.T) {
	var walk func(kind string, s *objectSchema)
	walk = func(kind string, s *objectSchema) {
		want := manifestFields[kind]
		if len(s.fields) != len(want) {
			t.Fatalf("%s: schema has %d fields, want %d", kind, len(s.fields), len(want))
		}
		for i, f := range s.fields {
			childKind, ok := want[string(f)]
			if !ok {
				t.Fatalf("%s: unexpected field %q", kind, f)
			}
			if (childKind == "") != (s.child[i] == nil) {
				t.Fatalf("%s.%s: child schema %v, want %q", kind, f, s.child[i], childKind)
			}
			if childKind != "" {
				walk(childKind, s.child[i])
			}
		}
	}
	walk("manifest", manifestSchema)
}

func checkManifest(t *testing.T, m *Manifest) {
	t.Helper()
	if m.SchemaVersion != 0 && m.SchemaVersion != SchemaVersion || m.MediaType != "" && m.MediaType != MediaTypeManifest {
		t.Fatalf("accepted schemaVersion %d, mediaType %q", m.SchemaVersion, m.MediaType)
	}
	var paths []string
	checkDesc := func(what string, d Descriptor) {
		checkPath(t, what, d.Name)
		checkDigest(t, what, d.Digest)
		if d.Size < 0 {
			t.Fatalf("%s: accepted size %d", what, d.Size)
		}
		paths = append(paths, d.Name)
	}
	checkDesc("config", m.Config)
	packs := map[string]bool{}
	for i, b := range m.Blobs {
		what := fmt.Sprintf("blobs[%d]", i)
		switch b.MediaType {
		case MediaTypePack:
			// A pack's name is a label, not a path in the model, but
			// it is shown to users: it must be as tame as a path.
			checkPath(t, what, b.Name)
			checkDigest(t, what, b.Digest)
			if packs[b.Name] || b.Size < 0 || len(b.Files) == 0 || len(b.Chunks) > 0 {
				t.Fatalf("%s: accepted pack %q of size %d with %d files, %d chunks", what, b.Name, b.Size, len(b.Files), len(b.Chunks))
			}
			packs[b.Name] = true
			var end int64
			for j, pf := range b.Files {
				checkDesc(fmt.Sprintf("%s.files[%d]", what, j), Descriptor{Name: pf.Name, Digest: pf.Digest, Size: pf.Size})
				// Compared in big integers: Offset+Length may overflow int64.
				stop := new(big.Int).Add(big.NewInt(pf.Offset), big.NewInt(pf.Length))
				if pf.Offset < end || pf.Length <= 0 || stop.Cmp(big.NewInt(b.Size)) > 0 {
					t.Fatalf("%s.files[%d]: accepted frame [%d, +%d) in a %d-byte pack after offset %d", what, j, pf.Offset, pf.Length, b.Size, end)
				}
				end = pf.Offset + pf.Length
			}
		case MediaTypeChunkedFile:
			checkDesc(what, b)
			total := new(big.Int)
			for j, c := range b.Chunks {
				checkDigest(t, fmt.Sprintf("%s.chunks[%d]", what, j), c.Digest)
				if c.Size <= 0 {
					t.Fatalf("%s.chunks[%d]: accepted size %d", what, j, c.Size)
				}
				total.Add(total, big.NewInt(c.Size))
			}
			if len(b.Chunks) == 0 || total.Cmp(big.NewInt(b.Size)) != 0 || b.Digest != ChunkListDigest(b.Chunks) || len(b.Files) > 0 {
				t.Fatalf("%s: accepted chunked file of size %d whose %d chunks add up to %s", what, b.Size, len(b.Chunks), total)
			}
		case MediaTypeFile, MediaTypeDirectoryTarGz:
			checkDesc(what, b)
			if len(b.Files) > 0 || len(b.Chunks) > 0 {
				t.Fatalf("%s: accepted a %s with files or chunks", what, b.MediaType)
			}
		default:
			t.Fatalf("%s: accepted media type %q", what, b.MediaType)
		}
	}
	seen := map[string]bool{}
	for _, p := range paths {
		if seen[p] {
			t.Fatalf("accepted path %q twice", p)
		}
		seen[p] = true
	}
	for _, p := range paths {
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if seen[dir] {
				t.Fatalf("accepted %q as a file and as the directory of %q", dir, p)
			}
		}
	}
}

// TestManifestOverflows checks sizes that add up past int64: each is refused.
func TestManifestOverflows(t *testing.T) {
	d := digest.FromString("x")
	base := func() Manifest {
		return Manifest{SchemaVersion: 1, Config: Descriptor{Name: ConfigFileName, Digest: d, Size: 1}}
	}
	big := []Chunk{{Digest: d, Size: 1<<63 - 1}, {Digest: d, Size: 1<<63 - 1}, {Digest: d, Size: 12}} // adds up to 10 mod 2^64
	for name, b := range map[string]Descriptor{
		"frame past int64": {Name: "p", MediaType: MediaTypePack, Digest: d, Size: 100, Files: []PackedFile{
			{Name: "a", Digest: d, Size: 1, Offset: 0, Length: 10},
			{Name: "b", Digest: d, Size: 1, Offset: 1<<62 + 1<<61, Length: 1<<62 + 1<<61},
		}},
		"negative pack size": {Name: "p", MediaType: MediaTypePack, Digest: d, Size: -1, Files: []PackedFile{
			{Name: "a", Digest: d, Size: 1, Offset: 1<<63 - 1, Length: 1<<63 - 1},
		}},
		"chunks wrap around": {Name: "c", MediaType: MediaTypeChunkedFile, Digest: ChunkListDigest(big), Size: 10, Chunks: big},
		"pack label escapes": {Name: "\x1b]0;pwned\x07", MediaType: MediaTypePack, Digest: d, Size: 10, Files: []PackedFile{
			{Name: "a", Digest: d, Size: 1, Offset: 0, Length: 10},
		}},
	} {
		m := base()
		m.Blobs = []Descriptor{b}
		data, _ := json.Marshal(m)
		if _, err := ParseManifest(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// fuzzConfigs are seed modelx.yaml documents, good and bad.
var fuzzConfigs = []string{
	`
description: Awesome text generator
framework: pytorch
task: text-generation
tags: [modelx, demo]
maintainers: [maintainer]
modelFiles: [torch.bin, tokenizer/]
config:
  inputs: {text: {type: string, shape: [-1, 1]}}
  outputs: {}
serving:
  server: triton
  implementation: mlserver_sklearn.SKLearnModel
  protocol: v2
  gpu: 1
  parameters: {batch: "8"}
annotations: {team: nlp}
`,
	"", "{}", "null", "description: [", "modelFile: [a]", "modelFiles: [../secret]", "tags: ['  ']",
	"serving: {server: tfserving}", "serving: {gpu: -1}", "serving: {gpu: x}", "tags: [1, true, null]",
	"config: {inputs: &a {x: [*a]}}",
	"description: &d hello\ntask: *d\ntags: [*d, *d]\n",
	"base: &b {server: triton}\nserving: {<<: *b, gpu: 2}\n",
	"a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\ntags: [*b, *b, *b, *b]\n",
	"config: {inputs: {x: " + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "}}",
	"description: \"\\x1b[31m\"\nmodelFiles: [\"a\\u0085b\"]\n",
	"%YAML 1.1\n---\ndescription: x\n...\n---\ndescription: y\n",
}

// FuzzParseModelConfig: ParseModelConfig never panics and allocates in
// proportion to its input (no alias bombs); an accepted config passes
// Validate, names only clean paths, and survives a marshal round trip.
func FuzzParseModelConfig(f *testing.F) {
	for _, s := range fuzzConfigs {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var c *ModelConfig
		var err error
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c, err = ParseModelConfig(data)
		runtime.ReadMemStats(&after)
		if n, limit := after.TotalAlloc-before.TotalAlloc, uint64(len(data))*512+64<<20; n > limit {
			t.Fatalf("ParseModelConfig of %d bytes allocated %d bytes", len(data), n)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), ConfigFileName+": ") {
				t.Fatalf("error %q does not start with %q", err, ConfigFileName)
			}
			return
		}
		checkConfig(t, c)
		// One round trip may drop empty maps and lists (omitempty); after
		// it, marshalling and parsing again change nothing.
		c2 := roundTripConfig(t, c)
		if c3 := roundTripConfig(t, c2); !reflect.DeepEqual(c2, c3) {
			t.Fatalf("marshal and parse changed the config:\n%+v\n%+v", c2, c3)
		}
	})
}

// roundTripConfig marshals c to YAML and parses it again.
func roundTripConfig(t *testing.T, c *ModelConfig) *ModelConfig {
	t.Helper()
	enc, err := yaml.Marshal(c)
	if err != nil {
		t.Fatalf("accepted config does not marshal: %v", err)
	}
	c2, err := ParseModelConfig(enc)
	if err != nil {
		t.Fatalf("re-marshalled config is refused: %v\n%s", err, enc)
	}
	checkConfig(t, c2)
	return c2
}

func checkConfig(t *testing.T, c *ModelConfig) {
	t.Helper()
	if err := c.Validate(); err != nil {
		t.Fatalf("accepted config does not validate: %v", err)
	}
	for i, p := range c.ModelFiles {
		checkPath(t, fmt.Sprintf("modelFiles[%d]", i), strings.TrimSuffix(p, "/"))
	}
	for i, tag := range c.Tags {
		if strings.TrimSpace(tag) == "" || !utf8.ValidString(tag) {
			t.Fatalf("tags[%d]: accepted %q", i, tag)
		}
	}
	if s := c.Serving; s != nil && (s.GPU < 0 || s.Server != "" && s.Server != "mlserver" && s.Server != "triton") {
		t.Fatalf("accepted serving %+v", *s)
	}
}

// TestParseModelConfigBombs feeds ParseModelConfig documents built to
// exhaust a YAML decoder: each is refused, or accepted, within a memory bound.
func TestParseModelConfigBombs(t *testing.T) {
	laughs := "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
	for i := 'b'; i <= 'i'; i++ {
		laughs += fmt.Sprintf("%c: &%c [*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	long := strings.Repeat("x", MaxConfigSize/2)
	for _, tc := range []struct {
		name, doc string
		want      string // "" means accepted
	}{
		{"billion laughs", laughs + "tags: *i\n", "aliases expand"},
		// Few aliases, so go-yaml's alias ratio does not trip, of one long
		// scalar: 530 KB of YAML that expand to 2.6 GB of JSON.
		{"long scalar aliased", "description: &a " + long + "\ntags: [" + strings.Repeat("*a,", 5_000) + "*a]\n", "aliases expand"},
		{"quadratic", "a: &a [" + strings.Repeat("x,", 20_000) + "x]\ntags: [" + strings.Repeat("*a,", 5_000) + "*a]\n", "aliases expand"},
		{"self reference", "config: {inputs: &a {x: [*a]}}", "contains itself"},
		{"unknown alias", "tags: [*nope]", "unknown anchor"},
		{"deep flow nesting", "config: {inputs: {x: " + strings.Repeat("[", 20_000) + strings.Repeat("]", 20_000) + "}}", "depth"},
		{"deep block nesting", "config:\n  inputs:\n" + deepBlock(1_300), ""}, // as deep as 1 MiB of indentation goes
		{"too large", "description: " + strings.Repeat("x", MaxConfigSize), "at most"},
		{"few aliases", "description: &d hello\ntask: *d\ntags: [*d, *d]\nserving: &s {server: triton}\n", ""},
		{"merge key", "config: {inputs: &i {x: 1}, outputs: {<<: *i, y: 2}}\n", ""},
		{"star in text", "description: \"a * b\"\ntags: ['*x']\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := ParseModelConfig([]byte(tc.doc))
			runtime.ReadMemStats(&after)
			if n := after.TotalAlloc - before.TotalAlloc; n > 256<<20 {
				t.Errorf("allocated %d MB for a %d-byte document", n>>20, len(tc.doc))
			}
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// deepBlock returns n levels of nested block mappings, the last one empty.
func deepBlock(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(strings.Repeat(" ", 4+i))
		b.WriteString("k:\n")
	}
	return b.String()
}

// FuzzParseOCIManifest: an OCI manifest that parses has a supported media
// type, schema version 2, and sha256 descriptors with sizes of at least 0
// of the right kind (config and layers, or manifests); what fails, fails
// with MANIFEST_INVALID.
func FuzzParseOCIManifest(f *testing.F) {
	d := string(digest.FromString("x"))
	for _, s := range []string{
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"a/b","digest":"` + d + `","size":2},"layers":[]}`,
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"a/b","digest":"` + d + `","size":2}]}`,
		`{"schemaVersion":2,"config":{"mediaType":"a","digest":"` + d + `","size":-1}}`,
		`{"schemaVersion":2,"manifests":[],"subject":{"mediaType":"a","digest":"sha512:00","size":1}}`,
		`{"schemaVersion":1}`, `[]`, `null`, `{}`,
	} {
		f.Add([]byte(s), "")
		f.Add([]byte(s), MediaTypeOCIIndex)
	}
	f.Fuzz(func(t *testing.T, data []byte, contentType string) {
		m, err := ParseOCIManifest(data, contentType)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code != ErrorManifestInvalid {
				t.Fatalf("error %v is not MANIFEST_INVALID", err)
			}
			return
		}
		if !IsOCIManifestType(m.MediaType) || m.SchemaVersion != 2 {
			t.Fatalf("accepted media type %q, schema %d", m.MediaType, m.SchemaVersion)
		}
		descs := append([]OCIDescriptor{}, m.Layers...)
		descs = append(descs, m.Manifests...)
		if m.IsIndex() {
			if m.Config != nil || len(m.Layers) > 0 {
				t.Fatal("an index with config or layers")
			}
		} else {
			if m.Config == nil || len(m.Manifests) > 0 {
				t.Fatal("an image manifest without config, or with manifests")
			}
			descs = append(descs, *m.Config)
		}
		if m.Subject != nil {
			descs = append(descs, *m.Subject)
		}
		for _, desc := range descs {
			if ValidateDigest(desc.Digest) != nil || desc.Size < 0 || desc.MediaType == "" {
				t.Fatalf("accepted descriptor %+v", desc)
			}
		}
	})
}
