package registry

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"modelx.io/modelx/spec"
)

// FuzzParseRange: parseRange never panics; without an error it returns
// the whole blob, or a partial range of at least one byte inside
// [0, size); a refusal is a RANGE_INVALID API error.
func FuzzParseRange(f *testing.F) {
	for _, tc := range []struct {
		header string
		size   int64
	}{
		{"", 10}, {"bytes=0-0", 10}, {"bytes=2-5", 10}, {"bytes=2-", 10}, {"bytes=8-100", 10},
		{"bytes=-3", 10}, {"bytes=-30", 10}, {"bytes=0-1,4-5", 10}, {"items=0-1", 10}, {"bytes=10-", 10},
		{"bytes=5-2", 10}, {"bytes=-0", 10}, {"bytes=x-", 10}, {"bytes=3", 10}, {"bytes=0-", 0}, {"bytes=-1", 0},
		{"bytes=9223372036854775807-", 1 << 62}, {"bytes=0-9223372036854775807", 1<<63 - 1},
		{"bytes=-9223372036854775808", 5}, {"bytes=+1-+2", 10}, {"bytes= 1-2 ", 10}, {"bytes=1 - 2", 10},
	} {
		f.Add(tc.header, tc.size)
	}
	f.Fuzz(func(t *testing.T, header string, size int64) {
		if size < 0 {
			size = -(size + 1) // sizes come from storage and are never negative
		}
		offset, length, partial, err := parseRange(header, size)
		if err != nil {
			var e *spec.Error
			if !errors.As(err, &e) || e.Code != spec.ErrorRangeInvalid {
				t.Fatalf("parseRange(%q, %d): error %v is not RANGE_INVALID", header, size, err)
			}
			return
		}
		if !partial {
			if offset != 0 || length != size {
				t.Fatalf("parseRange(%q, %d) = whole blob as [%d, +%d)", header, size, offset, length)
			}
			return
		}
		if offset < 0 || length <= 0 || offset >= size || length > size-offset {
			t.Fatalf("parseRange(%q, %d) = [%d, +%d): not a non-empty range inside the blob", header, size, offset, length)
		}
	})
}

var fuzzSHA256 = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// FuzzBlobParams: blobParams never panics; it accepts only a valid
// repository and name and a sha256 digest (64 lowercase hex digits), whose
// raw sum digestSum decodes to 32 bytes.
func FuzzBlobParams(f *testing.F) {
	hex := strings.Repeat("0123456789abcdef", 4)
	for _, d := range []string{
		"sha256:" + hex, "sha256:" + strings.ToUpper(hex), "sha256:" + hex[1:], "sha256:" + hex + "0",
		"sha512:" + hex + hex, "SHA256:" + hex, "sha256+b64:" + hex, "sha256:", "", ":" + hex, "sha256:" + hex[:63] + "g",
		"sha256:" + hex[:63] + "\x00",
	} {
		f.Add("nlp", "bert", d)
	}
	f.Add("NLP", "bert", "sha256:"+hex)
	f.Add("nlp", "../bert", "sha256:"+hex)
	f.Fuzz(func(t *testing.T, repo, name, dgst string) {
		rctx := chi.NewRouteContext()
		rctx.URLParams.Add("repository", repo)
		rctx.URLParams.Add("name", name)
		rctx.URLParams.Add("digest", dgst)
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r = r.WithContext(context.WithValue(r.Context(), chi.RouteCtxKey, rctx))
		gotRepo, gotName, d, err := blobParams(r)
		if err != nil {
			var e *spec.Error
			if !errors.As(err, &e) {
				t.Fatalf("blobParams(%q, %q, %q): error %v is not an API error", repo, name, dgst, err)
			}
			return
		}
		if spec.ValidateComponent("repository", repo) != nil || spec.ValidateComponent("name", name) != nil || gotRepo != repo || gotName != name {
			t.Fatalf("blobParams accepted repository %q, name %q", repo, name)
		}
		if string(d) != dgst || !fuzzSHA256.MatchString(dgst) || d.Validate() != nil {
			t.Fatalf("blobParams(%q) accepted digest %q", dgst, d)
		}
		if sum, err := digestSum(d); err != nil || len(sum) != 32 {
			t.Fatalf("digestSum(%q) = %x, %v", d, sum, err)
		}
	})
}
