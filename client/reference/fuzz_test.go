package reference

import (
	"errors"
	"testing"

	"modelx.io/modelx/spec"
)

// FuzzParseReference: ParseReference never panics and every error wraps
// ErrInvalidReference; an accepted reference has a canonical registry URL,
// valid repository and name, exactly one of a valid tag and a sha256
// digest, and its String() parses again to the same reference.
func FuzzParseReference(f *testing.F) {
	for _, s := range []string{
		"http://127.0.0.1:8080/repo/name:v1",
		"https://host/repo/name@v1",
		"https://host:8443/repo/name@sha256:" + testHex,
		"HTTPS://Models.Example.COM/repo/name:v1",
		"http://host:0080/repo/name",
		"http://[::1]:8080/repo/name:v1",
		"http://[fe80::1%25eth0]:8080/repo/name",
		"modelx://host:8080/repo/name@sha256:" + testHex + "?insecure=1",
		"modelx://host/repo/name?file=*.json&model-files=auto",
		"modelx://host/repo/name?insecure=true&insecure=false",
		"local/repo/name:v1",
		"my.reg-1/nlp/bert@sha256:" + testHex,
		"broken/repo/name",
		"nlp/bert:v1",
		"bert",
		"https://user:pass@host/repo/name",
		"user@host/repo/name",
		"http://host/repo/name:v1@sha256:" + testHex,
		"http://host/repo/name:sha256:" + testHex,
		"http://host:99999/repo/name",
		"http://host:/repo/name",
		"http://host/repo//name",
		"http://host/a/b/c",
		"http://host/repo/name#frag",
		"ftp://host/repo/name",
		"",
	} {
		f.Add(s)
	}
	cfg := testAliases()
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := ParseReference(s, cfg)
		if err != nil {
			if !errors.Is(err, ErrInvalidReference) {
				t.Fatalf("ParseReference(%q): error %v does not wrap ErrInvalidReference", s, err)
			}
			return
		}
		if base, err := ParseRegistry(ref.Registry, nil); err != nil || base != ref.Registry {
			t.Fatalf("ParseReference(%q): registry %q is not canonical: %q, %v", s, ref.Registry, base, err)
		}
		if spec.ValidateComponent("repository", ref.Repository) != nil || spec.ValidateComponent("name", ref.Name) != nil {
			t.Fatalf("ParseReference(%q): accepted repository %q, name %q", s, ref.Repository, ref.Name)
		}
		switch {
		case (ref.Tag == "") == (ref.Digest == ""):
			t.Fatalf("ParseReference(%q) = %+v: want exactly one of tag and digest", s, ref)
		case ref.Digest != "" && spec.ValidateDigest(ref.Digest) != nil:
			t.Fatalf("ParseReference(%q): accepted digest %q", s, ref.Digest)
		case ref.Tag != "" && spec.ValidateTag(ref.Tag) != nil:
			t.Fatalf("ParseReference(%q): accepted tag %q", s, ref.Tag)
		}
		again, err := ParseReference(ref.String(), nil)
		if err != nil {
			t.Fatalf("ParseReference(%q) = %+v, but its String() %q is refused: %v", s, ref, ref.String(), err)
		}
		// String() carries the model version, not a pull's file selection.
		ref.Files, ref.ModelFiles = nil, ""
		if again.Registry != ref.Registry || again.Repository != ref.Repository || again.Name != ref.Name ||
			again.Tag != ref.Tag || again.Digest != ref.Digest || again.Files != nil || again.ModelFiles != "" {
			t.Fatalf("ParseReference(%q) = %+v; its String() %q parses to %+v", s, ref, ref.String(), again)
		}
		if again.String() != ref.String() {
			t.Fatalf("String() is not stable: %q, then %q", ref.String(), again.String())
		}
	})
}

// TestParseReferenceIPv6Zone: an IPv6 zone is kept escaped and as written,
// so the canonical registry parses again; a '%' elsewhere is refused.
func TestParseReferenceIPv6Zone(t *testing.T) {
	ref, err := ParseReference("http://[FE80::1%25Eth0]:8080/repo/name", nil)
	if err != nil || ref.Registry != "http://[fe80::1%25Eth0]:8080" {
		t.Fatalf("got %+v, %v", ref, err)
	}
	if again, err := ParseReference(ref.String(), nil); err != nil || again.Registry != ref.Registry || again.String() != ref.String() {
		t.Fatalf("String() %q parses to %+v, %v", ref.String(), again, err)
	}
	for _, s := range []string{"http://a%25b/repo/name", "http://[fe80::1%25]/repo/name", "http://[fe80::1%25a%2525]/repo/name"} {
		if _, err := ParseReference(s, nil); !errors.Is(err, ErrInvalidReference) {
			t.Errorf("ParseReference(%q): %v", s, err)
		}
	}
}
