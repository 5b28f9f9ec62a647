package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestValidatePathReserved: ".git" and ".modelx" are refused as any
// element of a path, in every spelling a filesystem a pull may write to
// would resolve to them; names that only look alike are not.
func TestValidatePathReserved(t *testing.T) {
	for _, tc := range []struct{ path, reserved string }{
		{".git", ".git"},
		{".GIT", ".git"},
		{".Git", ".git"},
		{".gIt/config", ".git"},
		{".git/hooks/post-checkout", ".git"},
		{"sub/.git/config", ".git"},
		{"a/b/.GIT", ".git"},
		{".git.", ".git"},
		{".git ", ".git"},
		{".git. . ./hooks/pre-commit", ".git"},
		{".git::$INDEX_ALLOCATION/hooks/x", ".git"},
		{".git:stream", ".git"},
		{"git~1", ".git"},
		{"GIT~1/hooks/post-checkout", ".git"},
		{"sub/Git~1./config", ".git"},
		{".g\u200cit/config", ".git"}, // HFS+ ignores the zero-width non-joiner
		{"\ufeff.git/config", ".git"},
		{".gi\u206at", ".git"},
		{".modelx", ".modelx"},
		{".modelx/cache.json", ".modelx"},
		{".MODELX/cache.json", ".modelx"},
		{".ModelX/tmp/x.part", ".modelx"},
		{"sub/.modelx/cache.json", ".modelx"},
		{".modelx./cache.json", ".modelx"},
		{"MODELX~1/cache.json", ".modelx"},
	} {
		err := ValidatePath(tc.path)
		if err == nil || !strings.Contains(err.Error(), "reserved") || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.reserved)) {
			t.Errorf("ValidatePath(%q) = %v, want it refused as %s", tc.path, err, tc.reserved)
		}
	}
	for _, p := range []string{
		".gitignore", ".gitattributes", ".github/workflows/ci.yml", ".gitmodules", ".git-blame-ignore-revs",
		"git", "a.git", ".gitkeep", "sub/.gitkeep", "git~2", "git~", "git~10", ".git~1", "x.git/y",
		".modelxignore", "modelx.yaml", ".modelx-old/x", "modelx", "modelx~2", "ünïcode/.g", ".g\u200cit-notes",
	} {
		if err := ValidatePath(p); err != nil {
			t.Errorf("ValidatePath(%q) = %v, want it accepted", p, err)
		}
	}
}

// TestReservedPathElement pins the table: each reserved name, its short
// name, and nothing for a plain element.
func TestReservedPathElement(t *testing.T) {
	for elem, want := range map[string]string{
		".git": ".git", ".GIT ": ".git", "git~1": ".git", ".modelx": ".modelx", "Modelx~1": ".modelx",
		"models": "", ".gitx": "", "": "", ".": "", "..": "",
	} {
		got, ok := ReservedPathElement(elem)
		if got != want || ok != (want != "") {
			t.Errorf("ReservedPathElement(%q) = %q, %v; want %q", elem, got, ok, want)
		}
	}
	if ClientStateDir != ".modelx" {
		t.Fatalf("ClientStateDir = %q", ClientStateDir)
	}
}

// TestValidatePathBidi: every bidirectional control character is refused
// in a path, and the error names its code point.
func TestValidatePathBidi(t *testing.T) {
	for _, r := range []rune{0x061C, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069} {
		for _, p := range []string{string(r) + "a", "dir/a" + string(r) + "b.txt", "x" + string(r)} {
			err := ValidatePath(p)
			if want := fmt.Sprintf("U+%04X", r); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("ValidatePath(%q) = %v, want an error naming %s", p, err, want)
			}
		}
		if !IsBidiControl(r) {
			t.Errorf("IsBidiControl(%U) = false", r)
		}
	}
	for _, r := range []rune{'a', 0x200B, 0x200D, 0x2065, 0x206A, 0x2029 - 1, 0x202F, 0x061B, 0xFEFF} {
		if IsBidiControl(r) {
			t.Errorf("IsBidiControl(%U) = true", r)
		}
	}
	// Invalid UTF-8 is refused too: json.Marshal would turn it into U+FFFD,
	// another name.
	if err := ValidatePath("a/\xff\xfe.bin"); err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Errorf("invalid UTF-8: %v", err)
	}
}

// TestManifestRefusesNames: the names refused by ValidatePath are refused
// wherever a manifest holds a name: a file, a chunked file, a pack's label,
// a packed file, the config.
func TestManifestRefusesNames(t *testing.T) {
	d := digest.FromString("x")
	for _, bad := range []string{".git/hooks/post-checkout", "sub/.GIT/config", "git~1/config", ".modelx/cache.json", "evil\u202Etxt.exe", "a\u2066b"} {
		for where, mutate := range map[string]func(m *Manifest){
			"file":        func(m *Manifest) { m.Blobs[0].Name = bad },
			"chunked":     func(m *Manifest) { m.Blobs = append(m.Blobs, chunked(bad, 4, 6)) },
			"pack label":  func(m *Manifest) { m.Blobs = append(m.Blobs, pack(bad, packed("p/x", 0, 1))) },
			"packed file": func(m *Manifest) { m.Blobs = append(m.Blobs, pack("p", packed(bad, 0, 1))) },
			"config":      func(m *Manifest) { m.Config.Name = bad },
		} {
			m := Manifest{SchemaVersion: 1, Config: Descriptor{Name: ConfigFileName, Digest: d, Size: 1},
				Blobs: []Descriptor{{Name: "ok.bin", MediaType: MediaTypeFile, Digest: d, Size: 1}}}
			mutate(&m)
			data, _ := json.Marshal(m)
			_, err := ParseManifest(data)
			var e *Error
			if !errors.As(err, &e) || e.Code != ErrorManifestInvalid || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
				t.Errorf("%s %q: %v, want MANIFEST_INVALID naming it", where, bad, err)
			}
		}
	}
}

// TestParseManifestKeys: a document whose keys decoders read differently
// is refused, with the key and where it is; unknown keys are accepted.
func TestParseManifestKeys(t *testing.T) {
	d := digest.FromString("x")
	cfg := fmt.Sprintf(`{"name":"modelx.yaml","digest":%q,"size":1}`, d)
	file := func(extra string) string {
		return fmt.Sprintf(`{"name":"a.bin","mediaType":%q,"digest":%q,"size":1%s}`, MediaTypeFile, d, extra)
	}
	packDoc := func(extra string) string {
		return fmt.Sprintf(`{"name":"p","mediaType":%q,"digest":%q,"size":10,"files":[{"name":"x.txt","digest":%q,"size":1,"offset":0,"length":10%s}]}`, MediaTypePack, d, d, extra)
	}
	chunks := []Chunk{{Digest: d, Size: 4}}
	chunkedDoc := func(extra string) string {
		return fmt.Sprintf(`{"name":"c.bin","mediaType":%q,"digest":%q,"size":4,"chunks":[{"digest":%q,"size":4%s}]}`, MediaTypeChunkedFile, ChunkListDigest(chunks), d, extra)
	}
	doc := func(top, blobs string) string {
		return fmt.Sprintf(`{"schemaVersion":1,"config":%s,"blobs":[%s]%s}`, cfg, blobs, top)
	}
	for _, tc := range []struct{ name, doc, want string }{
		{"valid", doc("", file("")+","+packDoc("")+","+chunkedDoc("")), ""},
		{"unknown keys", doc(`,"future":{"a":[{"b":1}]}`, file(`,"nmae":"x","extra":{"k":"v"}`)+","+packDoc(`,"crc":5`)), ""},
		{"escaped key", doc("", `{"n\u0061me":"a.bin","mediaType":"`+MediaTypeFile+`","digest":"`+string(d)+`","size":1}`), ""},
		{"top-level twice", doc(`,"schemaVersion":1`, file("")), `key "schemaVersion" twice in the top-level object`},
		{"blobs twice", doc(`,"blobs":[]`, file("")), `key "blobs" twice in the top-level object`},
		{"name twice", doc("", file(`,"name":"b.bin"`)), `key "name" twice in blobs[0]`},
		{"name escaped twice", doc("", file(`,"n\u0061me":"b.bin"`)), `key "name" twice in blobs[0]`},
		{"name and NAME", doc("", file(`,"NAME":"b.bin"`)), `key "NAME" in blobs[0]`},
		{"Name", doc("", `{"Name":"a.bin","mediaType":"`+MediaTypeFile+`","digest":"`+string(d)+`","size":1}`), `key "Name" in blobs[0]`},
		{"DIGEST", doc("", file(`,"DIGEST":"x"`)), `key "DIGEST" in blobs[0]`},
		{"long s", doc("", file(`,"ſize":2`)), `key "ſize" in blobs[0]`},
		{"config NAME", fmt.Sprintf(`{"config":{"name":"modelx.yaml","NAME":"x","digest":%q,"size":1}}`, d), `key "NAME" in config`},
		{"Config", fmt.Sprintf(`{"Config":%s}`, cfg), `key "Config" in the top-level object`},
		{"packed name twice", doc("", packDoc(`,"name":"y.txt"`)), `key "name" twice in blobs[0].files[0]`},
		{"packed Offset", doc("", file("")+","+packDoc(`,"Offset":3`)), `key "Offset" in blobs[1].files[0]`},
		{"chunk size twice", doc("", chunkedDoc(`,"size":5`)), `key "size" twice in blobs[0].chunks[0]`},
		{"annotation twice", doc(`,"annotations":{"k":"1","k":"2"}`, file("")), `key "k" twice in annotations`},
		{"annotation case", doc(`,"annotations":{"k":"1","K":"2"}`, file("")), `keys "k" and "K" in annotations`},
		{"blob annotation case", doc("", file(`,"annotations":{"Team":"a","team":"b"}`)), `keys "Team" and "team" in blobs[0].annotations`},
		{"many annotations", doc(`,"annotations":{`+annotationMembers(100)+`,"KEY-0042":"x"}`, file("")), `keys "key-0042" and "KEY-0042" in annotations`},
		{"unknown twice", doc("", file(`,"x":1,"x":2`)), `key "x" twice in blobs[0]`},
		{"nested unknown", doc(`,"future":{"a":[{"b":1},{"b":1,"B":2}]}`, file("")), `keys "b" and "B" in future.a[1]`},
		{"odd key path", doc(`,"a b":{"c":1,"c":2}`, file("")), `key "c" twice in ["a b"]`},
		{"invalid UTF-8 in value", doc("", file(`,"x":"`+"\xff"+`"`)), "not valid UTF-8"},
		{"invalid UTF-8 in key", doc("", file(`,"`+"\xc3"+`":1`)), "not valid UTF-8"},
		{"invalid UTF-8 in name", doc("", `{"name":"a`+"\xe2\x80"+`.bin","mediaType":"`+MediaTypeFile+`","digest":"`+string(d)+`","size":1}`), "not valid UTF-8"},
		{"lone high surrogate", doc("", `{"name":"a\ud800.bin","mediaType":"`+MediaTypeFile+`","digest":"`+string(d)+`","size":1}`), `\uD800`},
		{"lone low surrogate", doc(`,"annotations":{"k":"\udc00"}`, file("")), `\uDC00`},
		{"surrogate pair", doc(`,"annotations":{"k":"\ud83d\ude00"}`, file("")), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseManifest([]byte(tc.doc))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v\n%s", err, tc.doc)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != ErrorManifestInvalid || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want MANIFEST_INVALID containing %q\n%s", err, tc.want, tc.doc)
			}
		})
	}
}

// annotationMembers is n annotation members "key-0000": "v", … .
func annotationMembers(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"key-%04d":"v"`, i)
	}
	return b.String()
}

// TestParseManifestKeysLinear: a 16 MiB object of distinct keys, and one
// string of escapes, are checked in linear time.
func TestParseManifestKeysLinear(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"annotations":{`)
	for i := 0; b.Len() < MaxManifestSize-64; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"%x":""`, i)
	}
	b.WriteString(`}}`)
	if err := checkManifestKeys([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	escapes := `{"annotations":{"k":"` + strings.Repeat(`\n`, MaxManifestSize/2-32) + `"}}`
	if err := checkManifestKeys([]byte(escapes)); err != nil {
		t.Fatal(err)
	}
}
