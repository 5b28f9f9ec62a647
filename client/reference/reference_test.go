package reference

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/spec"
)

const testHex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

const testDigest = digest.Digest("sha256:" + testHex)

func testAliases() AliasTable {
	return AliasTable{
		URLs: map[string]string{
			"local":    "http://127.0.0.1:8080",
			"my.reg-1": "https://models.example.com",
			"broken":   "ftp://example.com",
		},
		Source: "/home/u/.config/modelx/config.yaml",
	}
}

func TestParseReference(t *testing.T) {
	cfg := testAliases()
	tests := []struct {
		in   string
		want Reference
	}{
		{"http://127.0.0.1:8080/repo/name:v1", Reference{Registry: "http://127.0.0.1:8080", Repository: "repo", Name: "name", Tag: "v1"}},
		{"https://host/repo/name@v1", Reference{Registry: "https://host", Repository: "repo", Name: "name", Tag: "v1"}},
		{"https://host:8443/repo/name@sha256:" + testHex, Reference{Registry: "https://host:8443", Repository: "repo", Name: "name", Digest: testDigest}},
		{"http://host:8080/repo/name", Reference{Registry: "http://host:8080", Repository: "repo", Name: "name", Tag: "latest"}},
		{"https://host/nlp/bert-base.v2:V1.0_rc-1", Reference{Registry: "https://host", Repository: "nlp", Name: "bert-base.v2", Tag: "V1.0_rc-1"}},
		{"HTTPS://Models.Example.COM/repo/name:v1", Reference{Registry: "https://models.example.com", Repository: "repo", Name: "name", Tag: "v1"}},
		{"https://host:443/repo/name", Reference{Registry: "https://host", Repository: "repo", Name: "name", Tag: "latest"}},
		{"http://host:80/repo/name", Reference{Registry: "http://host", Repository: "repo", Name: "name", Tag: "latest"}},
		{"http://host:0080/repo/name", Reference{Registry: "http://host", Repository: "repo", Name: "name", Tag: "latest"}},
		{"http://[::1]:8080/repo/name:v1", Reference{Registry: "http://[::1]:8080", Repository: "repo", Name: "name", Tag: "v1"}},
		{"https://[::1]/repo/name", Reference{Registry: "https://[::1]", Repository: "repo", Name: "name", Tag: "latest"}},
		{"modelx://host:8443/repo/name@v1", Reference{Registry: "https://host:8443", Repository: "repo", Name: "name", Tag: "v1"}},
		{"modelx://host/repo/name:v1?insecure=true", Reference{Registry: "http://host", Repository: "repo", Name: "name", Tag: "v1"}},
		{"modelx://host/repo/name?insecure=false", Reference{Registry: "https://host", Repository: "repo", Name: "name", Tag: "latest"}},
		{"modelx://host:8080/repo/name@sha256:" + testHex + "?insecure=1", Reference{Registry: "http://host:8080", Repository: "repo", Name: "name", Digest: testDigest}},
		{"modelx://host/repo/name?", Reference{Registry: "https://host", Repository: "repo", Name: "name", Tag: "latest"}},
		{"modelx://serviceaccount@host:8080/repo/name@sha256:" + testHex + "?insecure=true", Reference{Registry: "http://host:8080", Repository: "repo", Name: "name", Digest: testDigest, ServiceAccount: true}},
		{"local/repo/name:v2", Reference{Registry: "http://127.0.0.1:8080", Repository: "repo", Name: "name", Tag: "v2"}},
		{"local/repo/name@v2", Reference{Registry: "http://127.0.0.1:8080", Repository: "repo", Name: "name", Tag: "v2"}},
		{"local/repo/name", Reference{Registry: "http://127.0.0.1:8080", Repository: "repo", Name: "name", Tag: "latest"}},
		{"modelx://h:8080/repo/name@sha256:" + testHex + "?insecure=true&file=a%2F%2A&file=b&model-files=auto",
			Reference{Registry: "http://h:8080", Repository: "repo", Name: "name", Digest: testDigest, Files: []string{"a/*", "b"}, ModelFiles: "auto"}},
		{"my.reg-1/repo/name@sha256:" + testHex, Reference{Registry: "https://models.example.com", Repository: "repo", Name: "name", Digest: testDigest}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseReference(tt.in, cfg)
			if err != nil {
				t.Fatalf("ParseReference: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			// The canonical form parses back to the same reference, without aliases.
			again, err := ParseReference(got.String(), nil)
			if err != nil {
				t.Fatalf("ParseReference(String() = %q): %v", got.String(), err)
			}
			got.Files, got.ModelFiles, got.ServiceAccount = nil, "", false // the selection and the token marker are not part of String()
			if !reflect.DeepEqual(again, got) {
				t.Fatalf("round trip through %q: got %+v, want %+v", got.String(), again, got)
			}
		})
	}
}

func TestParseReferenceErrors(t *testing.T) {
	cfg := testAliases()
	tests := []struct {
		name   string
		in     string
		cfg    Aliases
		want   []string // substrings of the message
		unwant string   // must not appear in the message (a secret)
		alias  bool     // wraps ErrUnknownAlias
		code   spec.ErrorCode
	}{
		{name: "empty", in: "", want: []string{"reference is empty", "http(s)://"}},
		{name: "bare name", in: "foo", want: []string{`reference "foo" has no registry: use http(s)://HOST[:PORT]/REPOSITORY/NAME[:TAG] or add an alias with "modelx repo add NAME URL"`}},
		{name: "no registry", in: "nlp/bert:v3", cfg: cfg, want: []string{`"nlp/bert:v3" has no registry`}},
		{name: "no registry nil config", in: "nlp/bert", want: []string{"has no registry"}},
		{name: "unknown alias", in: "nope/nlp/bert", cfg: cfg, want: []string{`unknown registry alias "nope"`, "known aliases are broken, local, my.reg-1", `modelx repo add nope URL`}, alias: true},
		{name: "unknown alias nil config", in: "nope/nlp/bert", want: []string{`unknown registry alias "nope"`, "no aliases are defined"}, alias: true},
		{name: "host without scheme", in: "localhost:8080/nlp/bert", cfg: cfg, want: []string{`unknown registry alias "localhost:8080"`, "write the registry as a URL, https://localhost:8080 or http://localhost:8080"}, unwant: "repo add", alias: true},
		{name: "dotted alias", in: "models.example.com/nlp/bert", cfg: cfg, want: []string{"https://models.example.com or http://models.example.com", `"modelx repo add models.example.com URL"`}, alias: true},
		{name: "alias with broken URL", in: "broken/nlp/bert", cfg: cfg, want: []string{`registry alias "broken" in /home/u/.config/modelx/config.yaml has an invalid URL`, `scheme "ftp"`}},
		{name: "alias without repository", in: "local/bert", cfg: cfg, want: []string{"names no repository", "exactly two parts"}},
		{name: "extra path element", in: "http://h/a/b/c", want: []string{"3 path elements", `"a/b/c"`, "REPOSITORY/NAME has exactly two parts"}},
		{name: "extra path element alias", in: "local/a/b/c:v1", cfg: cfg, want: []string{"3 path elements"}},
		{name: "trailing slash", in: "http://h/a/b/", want: []string{"empty path element"}},
		{name: "double slash", in: "http://h/a//b", want: []string{"empty path element"}},
		{name: "no model", in: "http://h", want: []string{"names no model"}},
		{name: "no model slash", in: "http://h:8080/", want: []string{"names no model"}},
		{name: "one element", in: "http://h/bert", want: []string{"names no repository"}},
		{name: "bad repository", in: "http://h/Repo/name", want: []string{`repository "Repo" is invalid`, "lowercase"}, code: spec.ErrorNameInvalid},
		{name: "bad name", in: "http://h/repo/na--me:v1", want: []string{`name "na--me" is invalid`}, code: spec.ErrorNameInvalid},
		{name: "empty name", in: "http://h/repo/:v1", want: []string{"name is empty"}, code: spec.ErrorNameInvalid},
		{name: "bad tag", in: "http://h/repo/name:.v1", want: []string{`tag ".v1" is invalid`}, code: spec.ErrorReferenceInvalid},
		{name: "empty tag", in: "http://h/repo/name:", want: []string{`tag "" is invalid`}, code: spec.ErrorReferenceInvalid},
		{name: "empty at tag", in: "http://h/repo/name@", want: []string{`tag "" is invalid`}, code: spec.ErrorReferenceInvalid},
		{name: "two at", in: "http://h/repo/name@v1@v2", want: []string{`tag "v1@v2" is invalid`}, code: spec.ErrorReferenceInvalid},
		{name: "short digest", in: "http://h/repo/name@sha256:abc", want: []string{`digest "sha256:abc" is invalid`}, code: spec.ErrorDigestInvalid},
		{name: "md5 digest", in: "http://h/repo/name@md5:" + testHex[:32], want: []string{"want sha256"}, code: spec.ErrorDigestInvalid},
		{name: "uppercase digest", in: "http://h/repo/name@sha256:" + strings.ToUpper(testHex), want: []string{"is invalid"}, code: spec.ErrorDigestInvalid},
		{name: "tag and digest", in: "http://h/repo/name:v1@sha256:" + testHex, want: []string{"both a tag and a digest", "drop the tag"}},
		{name: "two tags", in: "http://h/repo/name:v1@v2", want: []string{"two tags", "NAME:TAG or NAME@TAG"}},
		{name: "digest after colon", in: "http://h/repo/name:sha256:" + testHex, want: []string{"digest after ':'", "NAME@sha256:HEX"}},
		{name: "userinfo", in: "https://alice:s3cret@h/repo/name", want: []string{"credentials", "modelx login"}, unwant: "s3cret"},
		{name: "userinfo token", in: "http://s3cret@h:8080/repo/name:v1", want: []string{"credentials"}, unwant: "s3cret"},
		{name: "userinfo no scheme", in: "alice:s3cret@h/repo/name", cfg: cfg, want: []string{"credentials"}, unwant: "s3cret"},
		{name: "query", in: "https://h/repo/name?token=s3cret", want: []string{"has a query", "remove it"}, unwant: "s3cret"},
		{name: "query on alias", in: "local/repo/name?token=s3cret", cfg: cfg, want: []string{"query or fragment"}, unwant: "s3cret"},
		{name: "fragment", in: "https://h/repo/name#s3cret", want: []string{"has a fragment"}, unwant: "s3cret"},
		{name: "modelx fragment", in: "modelx://h/repo/name#x", want: []string{"has a fragment"}},
		{name: "modelx userinfo", in: "modelx://s3cret@h/repo/name", want: []string{"credentials"}, unwant: "s3cret"},
		{name: "modelx serviceaccount and more", in: "modelx://serviceaccount@s3cret@h/repo/name", want: []string{"credentials"}, unwant: "s3cret"},
		{name: "https serviceaccount", in: "https://serviceaccount@h/repo/name", want: []string{"credentials"}},
		{name: "unsupported scheme", in: "ftp://h/repo/name", want: []string{`scheme "ftp" is not supported`, "modelx://"}},
		{name: "modelx bad insecure", in: "modelx://h/repo/name?insecure=yes", want: []string{`insecure="yes"`, "insecure=true"}},
		{name: "modelx unknown parameter", in: "modelx://h/repo/name?token=s3cret", want: []string{`unknown query parameter "token"`}, unwant: "s3cret"},
		{name: "modelx insecure twice", in: "modelx://h/repo/name?insecure=true&insecure=false", want: []string{"more than once"}},
		{name: "modelx malformed query", in: "modelx://h/repo/name?insecure=%zz", want: []string{"malformed query"}},
		{name: "no host", in: "http:///repo/name", want: []string{"has no host"}},
		{name: "port out of range", in: "http://h:99999/repo/name", want: []string{"invalid port"}},
		{name: "port zero", in: "http://h:0/repo/name", want: []string{"invalid port"}},
		{name: "empty port", in: "http://h:/repo/name", want: []string{"empty port"}},
		{name: "non-numeric port", in: "http://h:abc/repo/name", want: []string{"invalid host"}},
		{name: "space in host", in: "http://a b/repo/name", want: []string{"invalid host"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref, err := ParseReference(tt.in, tt.cfg)
			if err == nil {
				t.Fatalf("ParseReference(%q) = %+v, want an error", tt.in, ref)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if tt.unwant != "" && strings.Contains(msg, tt.unwant) {
				t.Errorf("error %q repeats the secret %q", msg, tt.unwant)
			}
			if strings.Contains(msg, "NAME_INVALID") || strings.Contains(msg, "_INVALID:") {
				t.Errorf("error %q shows an API error code", msg)
			}
			if !errors.Is(err, ErrInvalidReference) {
				t.Errorf("error %q does not wrap ErrInvalidReference", msg)
			}
			if got := errors.Is(err, ErrUnknownAlias); got != tt.alias {
				t.Errorf("errors.Is(err, ErrUnknownAlias) = %v, want %v", got, tt.alias)
			}
			var se *spec.Error
			switch {
			case tt.code == "" && errors.As(err, &se):
				t.Errorf("error %q wraps spec error %v, want none", msg, se)
			case tt.code != "" && (!errors.As(err, &se) || se.Code != tt.code):
				t.Errorf("error %q does not wrap a spec error with code %s", msg, tt.code)
			}
		})
	}
}

func TestReferenceAccessors(t *testing.T) {
	tests := []struct {
		ref                     Reference
		str, model, manifestRef string
	}{
		{Reference{Registry: "http://127.0.0.1:8080", Repository: "nlp", Name: "bert", Tag: "v3"}, "http://127.0.0.1:8080/nlp/bert@v3", "nlp/bert", "v3"},
		{Reference{Registry: "https://h", Repository: "nlp", Name: "bert", Digest: testDigest}, "https://h/nlp/bert@sha256:" + testHex, "nlp/bert", "sha256:" + testHex},
		{Reference{Registry: "https://h", Repository: "nlp", Name: "bert"}, "https://h/nlp/bert@latest", "nlp/bert", "latest"},
	}
	for _, tt := range tests {
		t.Run(tt.str, func(t *testing.T) {
			if got := tt.ref.String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
			if got := tt.ref.Model(); got != tt.model {
				t.Errorf("Model() = %q, want %q", got, tt.model)
			}
			if got := tt.ref.ManifestRef(); got != tt.manifestRef {
				t.Errorf("ManifestRef() = %q, want %q", got, tt.manifestRef)
			}
		})
	}
}

func TestParseRegistry(t *testing.T) {
	cfg := testAliases()
	tests := []struct {
		in   string
		want string
	}{
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"http://127.0.0.1:8080/", "http://127.0.0.1:8080"},
		{"HTTPS://Models.Example.com:443/", "https://models.example.com"},
		{"https://[::1]:8443", "https://[::1]:8443"},
		{"modelx://h:8080?insecure=true", "http://h:8080"},
		{"modelx://h/", "https://h"},
		{"local", "http://127.0.0.1:8080"},
		{"my.reg-1", "https://models.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRegistry(tt.in, cfg)
			if err != nil {
				t.Fatalf("ParseRegistry: %v", err)
			}
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseRegistryErrors(t *testing.T) {
	cfg := testAliases()
	tests := []struct {
		in     string
		cfg    Aliases
		want   string
		unwant string
		alias  bool
	}{
		{in: "", cfg: cfg, want: "registry is empty"},
		{in: "http://h/repo", cfg: cfg, want: "has a path"},
		{in: "http://h/repo/name:v1", cfg: cfg, want: "without /REPOSITORY/NAME"},
		{in: "local/repo", cfg: cfg, want: "neither a URL nor an alias"},
		{in: "nope", cfg: cfg, want: `unknown registry alias "nope": known aliases are broken, local, my.reg-1`, alias: true},
		{in: "nope", want: "no aliases are defined", alias: true},
		{in: "models.example.com", cfg: cfg, want: "https://models.example.com", alias: true},
		{in: "broken", cfg: cfg, want: "invalid URL"},
		{in: "https://u:s3cret@h", cfg: cfg, want: "credentials", unwant: "s3cret"},
		{in: "https://h?token=s3cret", cfg: cfg, want: "has a query", unwant: "s3cret"},
		{in: "modelx://h?x=1", cfg: cfg, want: `unknown query parameter "x"`},
		{in: "ftp://h", cfg: cfg, want: "not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRegistry(tt.in, tt.cfg)
			if err == nil {
				t.Fatalf("ParseRegistry(%q) = %q, want an error", tt.in, got)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if tt.unwant != "" && strings.Contains(err.Error(), tt.unwant) {
				t.Errorf("error %q repeats the secret %q", err, tt.unwant)
			}
			if !errors.Is(err, ErrInvalidReference) {
				t.Errorf("error %q does not wrap ErrInvalidReference", err)
			}
			if got := errors.Is(err, ErrUnknownAlias); got != tt.alias {
				t.Errorf("errors.Is(err, ErrUnknownAlias) = %v, want %v", got, tt.alias)
			}
		})
	}
}
