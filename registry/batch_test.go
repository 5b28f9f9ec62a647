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
		{"unknown operation", `{"operation":"verify","blobs":[{"digest":"` + string(d) + `","size":1}]}`, http.StatusBadRequest, spec.ErrorParameterInvalid, `use "download" or "upload"`},
		{"from on a download", `{"operation":"download","from":"team-a/other","blobs":[{"digest":"` + string(d) + `","size":1}]}`, http.StatusBadRequest, spec.ErrorParameterInvalid, "only an \"upload\" batch"},
		{"bad from", `{"operation":"upload","from":"no-slash","blobs":[{"digest":"` + string(d) + `","size":1}]}`, http.StatusBadRequest, spec.ErrorNameInvalid, "REPOSITORY/NAME"},
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

// TestBlobBatchUpload: an upload batch offers blobs as body-less PUTs do.
// A blob the model links, or mounts from a model the caller may pull, is
// present; a new one gets a presigned PUT (in redirect mode) that the
// store takes with the headers given, and a manifest naming it then links
// it; a registry that carries the bytes wants them through itself. A blob
// of another tenant is present to nobody else, mount or no mount.
func TestBlobBatchUpload(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			h := newHarness(t, b, tenantOptions(t))
			a := h.as("team-a")
			m1, _ := a.pushModel("team-a/m1", "v1", map[string]string{"w.bin": "team a's weights"})
			x := m1.Blobs[0]
			fresh := []byte("a blob nobody has pushed")
			n := spec.BlobRef{Digest: digest.FromBytes(fresh), Size: int64(len(fresh))}
			xRef := spec.BlobRef{Digest: x.Digest, Size: x.Size}

			req := spec.BlobBatchRequest{Operation: spec.BatchOperationUpload, From: "team-a/m1", Blobs: []spec.BlobRef{xRef, n}}
			r, answer := h.batch("team-a", "team-a/m2", req)
			h.expect(r, http.StatusOK, "")
			if got := answer.Blobs[0]; !got.Present || !got.Mounted || got.Href != "" || got.Error != nil {
				t.Errorf("a blob mounted from m1: %+v, want present and mounted", got)
			}
			got := answer.Blobs[1]
			switch {
			case got.Present || got.Error != nil:
				t.Fatalf("a new blob: %+v, want it asked for", got)
			case b.redirect && (!strings.Contains(got.Href, "X-Amz-Signature=") || got.Header["X-Amz-Checksum-Sha256"] == ""):
				t.Fatalf("a new blob: %+v, want a presigned PUT and its checksum header", got)
			case !b.redirect && got.Href != "":
				t.Fatalf("a new blob: %+v, want no URL (the registry takes the bytes)", got)
			}
			if b.redirect {
				header := http.Header{}
				for k, v := range got.Header {
					header.Set(k, v)
				}
				if put := h.do(http.MethodPut, got.Href, []byte("other bytes of that length!!"[:len(fresh)]), header); put.status/100 == 2 {
					t.Fatalf("the store took other bytes at the URL: %d", put.status)
				}
				if put := h.do(http.MethodPut, got.Href, fresh, header); put.status != http.StatusOK {
					t.Fatalf("PUT to the URL: %d %s", put.status, put.body)
				}
			} else {
				h.as("team-a").pushBlob("team-a/m2", fresh)
			}
			m2 := m1
			m2.Config = a.pushBlob("team-a/m2", []byte("description: m2\n"))
			m2.Config.Name, m2.Config.MediaType = spec.ConfigFileName, spec.MediaTypeConfig
			m2.Blobs = []spec.Descriptor{x, {Name: "fresh.bin", MediaType: spec.MediaTypeFile, Digest: n.Digest, Size: n.Size}}
			data, _ := json.Marshal(m2)
			h.expect(h.do(http.MethodPut, "/team-a/m2/manifests/v1", data, as("team-a")), http.StatusCreated, "")
			if r, again := h.batch("team-a", "team-a/m2", spec.BlobBatchRequest{Operation: spec.BatchOperationUpload, From: "team-a/m1", Blobs: []spec.BlobRef{n}}); r.status != http.StatusOK || !again.Blobs[0].Present || again.Blobs[0].Mounted {
				t.Errorf("the uploaded blob offered again after the manifest: %d %s, want present, not mounted", r.status, r.body)
			}

			// Team b may not pull team-a/m1: its mount does nothing, and
			// its blob is asked for like any blob it has not sent.
			r, answer = h.batch("team-b", "team-b/copy", spec.BlobBatchRequest{Operation: spec.BatchOperationUpload, From: "team-a/m1", Blobs: []spec.BlobRef{xRef}})
			h.expect(r, http.StatusOK, "")
			if got := answer.Blobs[0]; got.Present || got.Error != nil {
				t.Errorf("team a's blob offered by team b from team a's model: %+v, want it asked for", got)
			}
			bm := m1
			bm.Config = h.as("team-b").pushBlob("team-b/copy", []byte("description: b\n"))
			bm.Config.Name, bm.Config.MediaType = spec.ConfigFileName, spec.MediaTypeConfig
			data, _ = json.Marshal(bm)
			h.expect(h.do(http.MethodPut, "/team-b/copy/manifests/v1", data, as("team-b")), http.StatusBadRequest, spec.ErrorManifestBlobUnknown)

			// Uploads need push; anonymous requests are challenged.
			if r, _ := h.batch("team-b", "team-a/m2", req); r.status != http.StatusForbidden {
				t.Errorf("team b's upload batch on team a's model: %d %s", r.status, r.body)
			}
			if r, _ := h.batch("", "public/x", req); r.status != http.StatusUnauthorized {
				t.Errorf("anonymous upload batch on a public model: %d %s", r.status, r.body)
			}
		})
	}
}
