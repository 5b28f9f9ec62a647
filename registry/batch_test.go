package registry_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/spec"
)

// batch posts a blob batch request for model as who and decodes the answer.
func (h *harness) batch(who, model string, req any) (response, spec.BlobBatchResponse) {
	h.t.Helper()
	data, err := json.Marshal(req)
	if err != nil {
		h.t.Fatal(err)
	}
	r := h.do(http.MethodPost, "/"+model+"/blobs/batch", data, as(who))
	var answer spec.BlobBatchResponse
	if r.status == http.StatusOK {
		if err := json.Unmarshal(r.body, &answer); err != nil {
			h.t.Fatalf("batch answer %s: %v", r.body, err)
		}
	}
	return r, answer
}

// TestBlobBatch: the batch endpoint answers, for each blob of the model,
// where to read it: a presigned URL that reads the blob (and a range of
// it) in redirect mode, no URL when the registry carries the bytes; a blob
// the model does not link, or does not link with that size, gets the error
// a GET would, whoever else holds it.
func TestBlobBatch(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			h := newHarness(t, b, tenantOptions(t))
			a, bb := h.as("team-a"), h.as("team-b")
			ma, _ := a.pushModel("team-a/llm", "v1", map[string]string{"weights.bin": "team a's weights", "tokenizer.json": "{}"})
			mb, _ := bb.pushModel("team-b/llm", "v1", map[string]string{"other.bin": "team b's weights"})
			byName := map[string]spec.Descriptor{}
			for _, d := range ma.Blobs {
				byName[d.Name] = d
			}
			w, tok, other := byName["weights.bin"], byName["tokenizer.json"], mb.Blobs[0]
			missing := digest.FromString("never pushed")

			req := spec.BlobBatchRequest{Operation: spec.BatchOperationDownload, Blobs: []spec.BlobRef{
				{Digest: w.Digest, Size: w.Size},
				{Digest: tok.Digest, Size: tok.Size},
				{Digest: other.Digest, Size: other.Size}, // team b's
				{Digest: missing, Size: 1},
				{Digest: w.Digest, Size: w.Size + 1}, // the wrong size
			}}
			r, answer := h.batch("team-a", "team-a/llm", req)
			h.expect(r, http.StatusOK, "")
			if len(answer.Blobs) != len(req.Blobs) {
				t.Fatalf("%d answers to %d blobs: %s", len(answer.Blobs), len(req.Blobs), r.body)
			}
			for i, want := range []spec.ErrorCode{"", "", spec.ErrorBlobUnknown, spec.ErrorBlobUnknown, spec.ErrorSizeInvalid} {
				loc := answer.Blobs[i]
				if loc.Digest != req.Blobs[i].Digest || loc.Size != req.Blobs[i].Size {
					t.Errorf("answer %d is for %s (%d bytes), asked %s (%d)", i, loc.Digest, loc.Size, req.Blobs[i].Digest, req.Blobs[i].Size)
				}
				switch {
				case want != "":
					if loc.Error == nil || loc.Error.Code != want || loc.Href != "" {
						t.Errorf("answer %d: %+v, want error %s and no URL", i, loc, want)
					}
				case b.redirect:
					if loc.Error != nil || !strings.Contains(loc.Href, "X-Amz-Signature=") || loc.ExpiresAt.IsZero() {
						t.Errorf("answer %d: %+v, want a presigned URL", i, loc)
					}
				default:
					if loc.Error != nil || loc.Href != "" {
						t.Errorf("answer %d: %+v, want no URL (the registry carries the bytes)", i, loc)
					}
				}
			}
			if b.redirect {
				if got := h.do(http.MethodGet, answer.Blobs[0].Href, nil, nil); got.status != http.StatusOK || string(got.body) != "team a's weights" {
					t.Errorf("GET of the URL: %d %q", got.status, got.body)
				}
				if got := h.do(http.MethodGet, answer.Blobs[0].Href, nil, http.Header{"Range": {"bytes=7-10"}}); got.status != http.StatusPartialContent || string(got.body) != "s we" {
					t.Errorf("range GET of the URL: %d %q", got.status, got.body)
				}
			}

			// Pull is what it takes: another tenant and anonymous
			// requests get nothing, not even the errors per blob.
			if r, _ := h.batch("team-b", "team-a/llm", req); r.status != http.StatusForbidden {
				t.Errorf("team b's batch on team a's model: %d %s", r.status, r.body)
			}
			if r, _ := h.batch("", "team-a/llm", req); r.status != http.StatusUnauthorized {
				t.Errorf("anonymous batch on team a's model: %d %s", r.status, r.body)
			}
		})
	}
}

// TestBlobBatchRefusals: a request that is not a valid batch is refused as
// a whole, with what is wrong and how to fix it, before any link is read.
func TestBlobBatchRefusals(t *testing.T) {
	h := newHarness(t, backends(t)[0], tenantOptions(t)) // fs: the refusals come before storage
	d := digest.FromString("x")
	tooMany := make([]spec.BlobRef, spec.MaxBatchBlobs+1)
	for i := range tooMany {
		tooMany[i] = spec.BlobRef{Digest: d, Size: 1}
	}
	tooManyJSON, _ := json.Marshal(spec.BlobBatchRequest{Operation: spec.BatchOperationDownload, Blobs: tooMany})
	for _, tc := range []struct {
		name   string
		body   string
		status int
		code   spec.ErrorCode
		says   string
	}{
		{"not JSON", `{"operation":`, http.StatusBadRequest, spec.ErrorParameterInvalid, "not valid JSON"},
		{"upload", `{"operation":"upload","blobs":[{"digest":"` + string(d) + `","size":1}]}`, http.StatusBadRequest, spec.ErrorParameterInvalid, `use "download"`},
		{"no blobs", `{"operation":"download","blobs":[]}`, http.StatusBadRequest, spec.ErrorParameterInvalid, "1 to 1000 blobs"},
		{"too many", string(tooManyJSON), http.StatusBadRequest, spec.ErrorParameterInvalid, "split it"},
		{"bad digest", `{"operation":"download","blobs":[{"digest":"sha256:abc","size":1}]}`, http.StatusBadRequest, spec.ErrorDigestInvalid, "blobs[0]"},
		{"negative size", `{"operation":"download","blobs":[{"digest":"` + string(d) + `","size":-1}]}`, http.StatusBadRequest, spec.ErrorSizeInvalid, "negative"},
		{"duplicate key", `{"operation":"download","operation":"download","blobs":[{"digest":"` + string(d) + `","size":1}]}`, http.StatusBadRequest, spec.ErrorParameterInvalid, "duplicate"},
		{"too large", `{"operation":"download","blobs":[],"pad":"` + strings.Repeat("x", spec.MaxBatchRequestSize) + `"}`, http.StatusRequestEntityTooLarge, spec.ErrorTooLarge, "split it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(http.MethodPost, "/team-a/llm/blobs/batch", []byte(tc.body), as("team-a"))
			h.expect(r, tc.status, tc.code)
			if e := r.apiError(t); !strings.Contains(e.Message, tc.says) {
				t.Errorf("message %q does not say %q", e.Message, tc.says)
			}
		})
	}
}
