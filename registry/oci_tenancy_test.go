package registry_test

import (
	"bytes"
	"crypto/sha256"
	_ "crypto/sha512" // for digest.SHA512
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/registry"
	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/spec"
)

// Hostile tenants on the OCI API: robot "a" may pull, push and delete
// a/*, robot "b" the same on b/*, "admin" everything; pub/* is public.
var ociTenants = map[string]string{
	"a":     "oci-token-of-tenant-a-0123",
	"b":     "oci-token-of-tenant-b-0123",
	"admin": "oci-token-of-the-admin-012",
}

func ociTenancyHarness(t *testing.T, b backend) *harness {
	t.Helper()
	var robots []auth.Robot
	for name, tok := range ociTenants {
		sum := sha256.Sum256([]byte(tok))
		robots = append(robots, auth.Robot{Name: name, TokenSHA256: hex.EncodeToString(sum[:])})
	}
	authn, err := auth.New(auth.Config{Robots: robots}, nil)
	if err != nil {
		t.Fatal(err)
	}
	all := []auth.Action{auth.Pull, auth.Push, auth.Delete}
	policy := &auth.Policy{
		AnonymousRepositories: []string{"pub/*"},
		Rules: []auth.Rule{
			{Repositories: []string{"a/*"}, Actions: all, Robots: []string{"a"}},
			{Repositories: []string{"b/*"}, Actions: all, Robots: []string{"b"}},
			{Repositories: []string{"*"}, Actions: all, Robots: []string{"admin"}},
		},
	}
	if err := policy.Validate(); err != nil {
		t.Fatal(err)
	}
	return newHarness(t, b, registry.Options{Authenticator: authn, Policy: policy})
}

// ociAs returns the header that authenticates tenant who ("" for none),
// with the header pairs kv added.
func ociAs(who string, kv ...string) http.Header {
	h := http.Header{}
	if who != "" {
		h.Set("Authorization", "Bearer "+ociTenants[who])
	}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// expectOCIError fails unless r has the status and the OCI error envelope
// with code as its one error.
func expectOCIError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d %s; body %s", r.status, status, code, r.body)
	}
	if got := ociErrorOf(t, r).Code; got != code {
		t.Fatalf("error code %s, want %s; body %s", got, code, r.body)
	}
}

type ociErrorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ociErrorOf decodes the one error of an OCI error envelope.
func ociErrorOf(t *testing.T, r response) ociErrorEntry {
	t.Helper()
	var env struct {
		Errors []ociErrorEntry `json:"errors"`
	}
	if err := json.Unmarshal(r.body, &env); err != nil || len(env.Errors) != 1 {
		t.Fatalf("status %d body %q is not an OCI error envelope with one error (%v)", r.status, r.body, err)
	}
	return env.Errors[0]
}

// ociPushBlobAs uploads data to model as who ("" for anonymous) in one
// POST and returns its digest.
func (h *harness) ociPushBlobAs(who, model string, data []byte) digest.Digest {
	h.t.Helper()
	d := digest.FromBytes(data)
	r := h.do(http.MethodPost, "/v2/"+model+"/blobs/uploads/?digest="+string(d), data, ociAs(who))
	if r.status != http.StatusCreated || r.header.Get(spec.OCIDigestHeader) != string(d) {
		h.t.Fatalf("POST blob %s to %s as %s: %d %s", d, model, who, r.status, r.body)
	}
	return d
}

// ociEmptyConfig is the empty JSON config of an OCI artifact.
var ociEmptyConfig = []byte("{}")

// ociManifestOf is an OCI artifact manifest with the empty config and
// the blobs as layers.
func ociManifestOf(blobs map[digest.Digest]int64) []byte {
	layers := []map[string]any{}
	for _, d := range slices.Sorted(maps.Keys(blobs)) {
		layers = append(layers, map[string]any{"mediaType": "application/octet-stream", "digest": d, "size": blobs[d]})
	}
	data, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": spec.MediaTypeOCIManifest, "artifactType": ociArtifactType,
		"config": map[string]any{"mediaType": spec.MediaTypeOCIEmpty, "digest": digest.FromBytes(ociEmptyConfig), "size": len(ociEmptyConfig)},
		"layers": layers,
	})
	return data
}

// ociPushModel pushes the empty config, data as the one layer and the
// manifest under tag, as who; it returns the layer's and the manifest's
// digests.
func (h *harness) ociPushModel(who, model, tag string, data []byte) (layer, manifest digest.Digest) {
	h.t.Helper()
	h.ociPushBlobAs(who, model, ociEmptyConfig)
	layer = h.ociPushBlobAs(who, model, data)
	m := ociManifestOf(map[digest.Digest]int64{layer: int64(len(data))})
	r := h.do(http.MethodPut, "/v2/"+model+"/manifests/"+tag, m, ociAs(who, "Content-Type", spec.MediaTypeOCIManifest))
	if r.status != http.StatusCreated {
		h.t.Fatalf("PUT manifest %s:%s as %s: %d %s", model, tag, who, r.status, r.body)
	}
	return layer, digest.FromBytes(m)
}

// ociStartSession starts an upload session on model as who and returns
// its URL path.
func (h *harness) ociStartSession(who, model string) string {
	h.t.Helper()
	r := h.do(http.MethodPost, "/v2/"+model+"/blobs/uploads/", nil, ociAs(who))
	if r.status != http.StatusAccepted || !strings.HasPrefix(r.header.Get("Location"), "/v2/"+model+"/blobs/uploads/") {
		h.t.Fatalf("POST upload on %s as %s: %d Location %q %s", model, who, r.status, r.header.Get("Location"), r.body)
	}
	return r.header.Get("Location")
}

// ociBlobStored says whether the store holds bytes for d under blobs/.
func (h *harness) ociBlobStored(d digest.Digest) bool {
	h.t.Helper()
	for key := range h.snapshot() {
		if strings.HasPrefix(key, "blobs/") && strings.HasSuffix(key, "/"+d.Encoded()) {
			return true
		}
	}
	return false
}

// TestOCITenancy checks, through /v2/ with raw HTTP, that one tenant can
// neither read, link nor upload into another's models, and that the
// upload, name and list endpoints refuse what they must, on every backend.
func TestOCITenancy(t *testing.T) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b backend)
	}{
		{"BlobsOfAnotherTenant", testOCIBlobsOfAnotherTenant},
		{"MountNeedsPullOnTheSource", testOCIMountNeedsPull},
		{"ManifestsAndReferrersStayInTheirModel", testOCIManifestsStayInTheirModel},
		{"UploadSessionsBelongToTheirModel", testOCISessionsBelongToTheirModel},
		{"OutOfOrderChunk", testOCIOutOfOrderChunk},
		{"WrongDigestStoresNothing", testOCIWrongDigest},
		{"InvalidNames", testOCIInvalidNames},
		{"PathsOutsideTheAPIAre404", testOCIUnroutedPaths},
		{"DigestsAndSessionIDs", testOCIDigestsAndSessionIDs},
		{"TagsPagination", testOCITagsPagination},
		{"CatalogListsWhatTheCallerMayPull", testOCICatalog},
	}
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) { tc.fn(t, b) })
			}
		})
	}
}

// testOCIBlobsOfAnotherTenant: knowing the digest of A's blob gets B
// nothing: not through B's model (404), not through A's (403).
func testOCIBlobsOfAnotherTenant(t *testing.T, b backend) {
	h := ociTenancyHarness(t, b)
	secret := []byte("the weights of team a")
	d, m := h.ociPushModel("a", "a/m", "v1", secret)

	expectOCIError(t, h.do(http.MethodGet, "/v2/b/m/blobs/"+string(d), nil, ociAs("b")), http.StatusNotFound, "BLOB_UNKNOWN")
	if r := h.do(http.MethodHead, "/v2/b/m/blobs/"+string(d), nil, ociAs("b")); r.status != http.StatusNotFound || len(r.body) != 0 {
		t.Fatalf("HEAD of A's blob through B's model: %d %q, want 404", r.status, r.body)
	}
	expectOCIError(t, h.do(http.MethodGet, "/v2/b/m/manifests/"+string(m), nil, ociAs("b")), http.StatusNotFound, "MANIFEST_UNKNOWN")
	for _, req := range []struct{ method, path string }{
		{http.MethodGet, "/v2/a/m/blobs/" + string(d)},
		{http.MethodGet, "/v2/a/m/manifests/v1"},
		{http.MethodGet, "/v2/a/m/tags/list"},
		{http.MethodGet, "/v2/a/m/referrers/" + string(m)},
		{http.MethodDelete, "/v2/a/m/blobs/" + string(d)},
		{http.MethodDelete, "/v2/a/m/manifests/v1"},
	} {
		expectOCIError(t, h.do(req.method, req.path, nil, ociAs("b")), http.StatusForbidden, "DENIED")
		r := h.do(req.method, req.path, nil, nil)
		expectOCIError(t, r, http.StatusUnauthorized, "UNAUTHORIZED")
		if c := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(c, "Bearer realm=") || !strings.Contains(c, `scope="repository:a/m:`) {
			t.Fatalf("anonymous %s %s: WWW-Authenticate %q, want a Bearer challenge for a/m", req.method, req.path, c)
		}
	}
	if r := h.do(http.MethodHead, "/v2/a/m/blobs/"+string(d), nil, ociAs("b")); r.status != http.StatusForbidden {
		t.Fatalf("HEAD of A's blob through A's model as B: %d, want 403", r.status)
	}
	expectOCIError(t, h.do(http.MethodDelete, "/v2/b/m/blobs/"+string(d), nil, ociAs("b")), http.StatusNotFound, "BLOB_UNKNOWN")

	// A still has it all.
	if r := h.do(http.MethodHead, "/v2/a/m/blobs/"+string(d), nil, ociAs("a")); r.status != http.StatusOK || r.header.Get("Content-Length") != strconv.Itoa(len(secret)) {
		t.Fatalf("HEAD of A's blob as A: %d, Content-Length %q", r.status, r.header.Get("Content-Length"))
	}
	if r := h.do(http.MethodHead, "/v2/a/m/manifests/v1", nil, ociAs("a")); r.status != http.StatusOK || r.header.Get(spec.OCIDigestHeader) != string(m) {
		t.Fatalf("HEAD of A's manifest as A: %d %s %q", r.status, spec.OCIDigestHeader, r.header.Get(spec.OCIDigestHeader))
	}
}

// testOCIMountNeedsPull: a mount links only from a model the pusher may
// pull; otherwise it starts an upload (202), and the pusher must send
// the bytes. A manifest naming a blob its model does not link is refused.
func testOCIMountNeedsPull(t *testing.T, b backend) {
	h := ociTenancyHarness(t, b)
	secret := []byte("the weights of team a, mounted")
	d, _ := h.ociPushModel("a", "a/m", "v1", secret)

	for _, query := range []string{"?mount=" + string(d) + "&from=a/m", "?mount=" + string(d), "?mount=" + string(d) + "&from=b/m"} {
		r := h.do(http.MethodPost, "/v2/b/m/blobs/uploads/"+query, nil, ociAs("b"))
		if r.status != http.StatusAccepted || !strings.HasPrefix(r.header.Get("Location"), "/v2/b/m/blobs/uploads/") || r.header.Get("Docker-Upload-UUID") == "" {
			t.Fatalf("B's mount %s: %d Location %q, want 202 and an upload session of b/m; body %s", query, r.status, r.header.Get("Location"), r.body)
		}
		if r := h.do(http.MethodHead, "/v2/b/m/blobs/"+string(d), nil, ociAs("b")); r.status != http.StatusNotFound {
			t.Fatalf("after B's mount %s, B's model has the blob: HEAD %d", query, r.status)
		}
		// The session it started is B's to cancel.
		if r := h.do(http.MethodDelete, r.header.Get("Location"), nil, ociAs("b")); r.status != http.StatusNoContent {
			t.Fatalf("cancel the session of the refused mount: %d %s", r.status, r.body)
		}
	}
	h.ociPushBlobAs("b", "b/m", ociEmptyConfig)
	r := h.do(http.MethodPut, "/v2/b/m/manifests/stolen", ociManifestOf(map[digest.Digest]int64{d: int64(len(secret))}),
		ociAs("b", "Content-Type", spec.MediaTypeOCIManifest))
	expectOCIError(t, r, http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN")
	expectOCIError(t, h.do(http.MethodGet, "/v2/b/m/manifests/stolen", nil, ociAs("b")), http.StatusNotFound, "MANIFEST_UNKNOWN")

	// Pull rights on the source make a mount: A within its models, the
	// admin anywhere.
	for _, m := range []struct{ who, model string }{{"a", "a/n"}, {"admin", "b/x"}} {
		r := h.do(http.MethodPost, "/v2/"+m.model+"/blobs/uploads/?mount="+string(d)+"&from=a/m", nil, ociAs(m.who))
		if r.status != http.StatusCreated || r.header.Get("Location") != "/v2/"+m.model+"/blobs/"+string(d) || r.header.Get(spec.OCIDigestHeader) != string(d) {
			t.Fatalf("%s's mount into %s: %d Location %q; body %s", m.who, m.model, r.status, r.header.Get("Location"), r.body)
		}
		if r := h.do(http.MethodHead, "/v2/"+m.model+"/blobs/"+string(d), nil, ociAs(m.who)); r.status != http.StatusOK {
			t.Fatalf("HEAD of the mounted blob in %s: %d", m.model, r.status)
		}
	}
	// The bytes themselves are proof too.
	h.ociPushBlobAs("b", "b/m", secret)
	if r := h.do(http.MethodHead, "/v2/b/m/blobs/"+string(d), nil, ociAs("b")); r.status != http.StatusOK {
		t.Fatalf("HEAD after B uploaded the bytes: %d", r.status)
	}
}

// testOCIManifestsStayInTheirModel: B can neither list A's manifest in
// an index of its own nor add referrers to A's manifest: what B pushes
// about A's digests stays in B's model.
func testOCIManifestsStayInTheirModel(t *testing.T, b backend) {
	h := ociTenancyHarness(t, b)
	_, m := h.ociPushModel("a", "a/m", "v1", []byte("the model of team a"))
	raw := h.do(http.MethodGet, "/v2/a/m/manifests/v1", nil, ociAs("a", "Accept", spec.MediaTypeOCIManifest))
	h.expect(raw, http.StatusOK, "")

	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": spec.MediaTypeOCIIndex,
		"manifests": []map[string]any{{"mediaType": spec.MediaTypeOCIManifest, "digest": m, "size": len(raw.body)}}})
	r := h.do(http.MethodPut, "/v2/b/m/manifests/all", index, ociAs("b", "Content-Type", spec.MediaTypeOCIIndex))
	expectOCIError(t, r, http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN")
	expectOCIError(t, h.do(http.MethodGet, "/v2/b/m/manifests/"+string(m), nil, ociAs("b")), http.StatusNotFound, "MANIFEST_UNKNOWN")

	// B's referrer of A's manifest is B's: A's referrers do not list it.
	h.ociPushBlobAs("b", "b/m", ociEmptyConfig)
	referrer, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": spec.MediaTypeOCIManifest,
		"artifactType": "application/vnd.example.signature",
		"config":       map[string]any{"mediaType": spec.MediaTypeOCIEmpty, "digest": digest.FromBytes(ociEmptyConfig), "size": len(ociEmptyConfig)},
		"layers":       []any{},
		"subject":      map[string]any{"mediaType": spec.MediaTypeOCIManifest, "digest": m, "size": len(raw.body)}})
	r = h.do(http.MethodPut, "/v2/b/m/manifests/"+string(digest.FromBytes(referrer)), referrer, ociAs("b", "Content-Type", spec.MediaTypeOCIManifest))
	if r.status != http.StatusCreated || r.header.Get("OCI-Subject") != string(m) {
		t.Fatalf("B's referrer in b/m: %d OCI-Subject %q; %s", r.status, r.header.Get("OCI-Subject"), r.body)
	}
	referrers := func(who, model string) []digest.Digest {
		t.Helper()
		r := h.do(http.MethodGet, "/v2/"+model+"/referrers/"+string(m), nil, ociAs(who))
		var idx struct {
			Manifests []struct {
				Digest digest.Digest `json:"digest"`
			} `json:"manifests"`
		}
		if r.status != http.StatusOK || json.Unmarshal(r.body, &idx) != nil {
			t.Fatalf("referrers in %s as %s: %d %s", model, who, r.status, r.body)
		}
		var out []digest.Digest
		for _, d := range idx.Manifests {
			out = append(out, d.Digest)
		}
		return out
	}
	if got := referrers("a", "a/m"); len(got) != 0 {
		t.Fatalf("A's manifest lists B's referrers: %v", got)
	}
	if got := referrers("b", "b/m"); !slices.Equal(got, []digest.Digest{digest.FromBytes(referrer)}) {
		t.Fatalf("B's referrers of A's digest: %v", got)
	}
}

// testOCISessionsBelongToTheirModel: B can neither read, append to,
// close nor cancel A's upload session, under A's model or its own; A's
// upload is unharmed.
func testOCISessionsBelongToTheirModel(t *testing.T, b backend) {
	h := ociTenancyHarness(t, b)
	loc := h.ociStartSession("a", "a/m")
	id := loc[strings.LastIndexByte(loc, '/')+1:]
	first, rest := []byte("first chunk of A; "), []byte("the rest of A's blob")
	d := digest.FromBytes(append(slices.Clone(first), rest...))
	r := h.do(http.MethodPatch, loc, first, ociAs("a", "Content-Type", "application/octet-stream"))
	if r.status != http.StatusAccepted || r.header.Get("Range") != fmt.Sprintf("0-%d", len(first)-1) {
		t.Fatalf("A's PATCH: %d Range %q; %s", r.status, r.header.Get("Range"), r.body)
	}

	for _, req := range []struct {
		method, query string
		body          []byte
	}{
		{http.MethodGet, "", nil},
		{http.MethodPatch, "", []byte("B's bytes")},
		{http.MethodPut, "?digest=" + string(digest.FromString("B's bytes")), []byte("B's bytes")},
		{http.MethodDelete, "", nil},
	} {
		expectOCIError(t, h.do(req.method, loc+req.query, req.body, ociAs("b")), http.StatusForbidden, "DENIED")
		expectOCIError(t, h.do(req.method, loc+req.query, req.body, nil), http.StatusUnauthorized, "UNAUTHORIZED")
		expectOCIError(t, h.do(req.method, "/v2/b/m/blobs/uploads/"+id+req.query, req.body, ociAs("b")), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
	}

	r = h.do(http.MethodGet, loc, nil, ociAs("a"))
	if r.status != http.StatusNoContent || r.header.Get("Range") != fmt.Sprintf("0-%d", len(first)-1) {
		t.Fatalf("A's session after B's attempts: %d Range %q", r.status, r.header.Get("Range"))
	}
	r = h.do(http.MethodPut, loc+"?digest="+string(d), rest, ociAs("a", "Content-Range", fmt.Sprintf("%d-%d", len(first), len(first)+len(rest)-1)))
	if r.status != http.StatusCreated || r.header.Get(spec.OCIDigestHeader) != string(d) {
		t.Fatalf("A's closing PUT: %d %s", r.status, r.body)
	}
	if got := h.ociGetBlob("a", "a/m", d); got != string(first)+string(rest) {
		t.Fatalf("A's blob reads %q", got)
	}
	if r := h.do(http.MethodHead, "/v2/b/m/blobs/"+string(d), nil, ociAs("b")); r.status != http.StatusNotFound {
		t.Fatalf("A's uploaded blob through B's model: HEAD %d", r.status)
	}
}

// ociGetBlob reads a blob through /v2/ as who, following a redirect to
// the object store, and fails unless it answers 200.
func (h *harness) ociGetBlob(who, model string, d digest.Digest) string {
	h.t.Helper()
	r := h.do(http.MethodGet, "/v2/"+model+"/blobs/"+string(d), nil, ociAs(who))
	if r.status == http.StatusFound && h.redirect {
		r = h.do(http.MethodGet, r.header.Get("Location"), nil, nil)
	}
	if r.status != http.StatusOK {
		h.t.Fatalf("GET blob %s of %s as %s: %d %s", d, model, who, r.status, r.body)
	}
	return string(r.body)
}

// testOCIOutOfOrderChunk: a chunk that does not start where the upload
// ends is refused with 416 and the upload's Range, and the upload goes on
// from there.
func testOCIOutOfOrderChunk(t *testing.T, b backend) {
	h := ociTenancyHarness(t, b)
	data := []byte("0123456789abcdefghijABCDEFGHIJ")
	d := digest.FromBytes(data)
	loc := h.ociStartSession("a", "a/m")
	patch := func(start, end int, withRange bool) response {
		hdr := ociAs("a", "Content-Type", "application/octet-stream")
		if withRange {
			hdr.Set("Content-Range", fmt.Sprintf("%d-%d", start, end))
		}
		return h.do(http.MethodPatch, loc, data[start:end+1], hdr)
	}
	if r := patch(0, 9, true); r.status != http.StatusAccepted || r.header.Get("Range") != "0-9" {
		t.Fatalf("first chunk: %d Range %q; %s", r.status, r.header.Get("Range"), r.body)
	}
	for _, chunk := range [][2]int{{20, 29}, {5, 14}, {0, 9}} {
		r := patch(chunk[0], chunk[1], true)
		if r.status != http.StatusRequestedRangeNotSatisfiable || r.header.Get("Range") != "0-9" || r.header.Get("Location") != loc {
			t.Fatalf("chunk %d-%d out of order: %d Range %q Location %q, want 416, 0-9 and the session; body %s",
				chunk[0], chunk[1], r.status, r.header.Get("Range"), r.header.Get("Location"), r.body)
		}
		ociErrorOf(t, r)
	}
	if r := patch(10, 19, true); r.status != http.StatusAccepted || r.header.Get("Range") != "0-19" {
		t.Fatalf("chunk after the refused ones: %d Range %q; %s", r.status, r.header.Get("Range"), r.body)
	}
	if r := patch(20, 29, false); r.status != http.StatusAccepted || r.header.Get("Range") != "0-29" {
		t.Fatalf("chunk without Content-Range: %d Range %q; %s", r.status, r.header.Get("Range"), r.body)
	}
	if r := h.do(http.MethodPut, loc+"?digest="+string(d), nil, ociAs("a")); r.status != http.StatusCreated {
		t.Fatalf("closing PUT: %d %s", r.status, r.body)
	}
	if got := h.ociGetBlob("a", "a/m", d); got != string(data) {
		t.Fatalf("the blob reads %q, want %q", got, data)
	}
	expectOCIError(t, h.do(http.MethodGet, loc, nil, ociAs("a")), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
}

// testOCIWrongDigest: bytes that do not match the digest are refused with
// DIGEST_INVALID, in one POST or closing a session, and nothing is stored
// under either digest; the session takes the right digest afterwards.
func testOCIWrongDigest(t *testing.T, b backend) {
	h := ociTenancyHarness(t, b)
	data := []byte("bytes whose digest the client gets wrong")
	right, wrong := digest.FromBytes(data), digest.FromString("other bytes")
	requireNothingStored := func(when string) {
		t.Helper()
		for _, d := range []digest.Digest{right, wrong} {
			if r := h.do(http.MethodHead, "/v2/a/m/blobs/"+string(d), nil, ociAs("a")); r.status != http.StatusNotFound {
				t.Fatalf("%s: HEAD %s: %d, want 404", when, d, r.status)
			}
			if h.ociBlobStored(d) {
				t.Fatalf("%s: the store holds blob %s", when, d)
			}
		}
	}

	r := h.do(http.MethodPost, "/v2/a/m/blobs/uploads/?digest="+string(wrong), data, ociAs("a"))
	expectOCIError(t, r, http.StatusBadRequest, "DIGEST_INVALID")
	requireNothingStored("after a monolithic POST with a wrong digest")

	loc := h.ociStartSession("a", "a/m")
	if r := h.do(http.MethodPatch, loc, data, ociAs("a")); r.status != http.StatusAccepted {
		t.Fatalf("PATCH: %d %s", r.status, r.body)
	}
	expectOCIError(t, h.do(http.MethodPut, loc+"?digest="+string(wrong), nil, ociAs("a")), http.StatusBadRequest, "DIGEST_INVALID")
	requireNothingStored("after closing a session with a wrong digest")

	// A session whose whole blob comes in the closing PUT.
	loc2 := h.ociStartSession("a", "a/m")
	expectOCIError(t, h.do(http.MethodPut, loc2+"?digest="+string(wrong), data, ociAs("a")), http.StatusBadRequest, "DIGEST_INVALID")
	requireNothingStored("after a closing PUT with the bytes and a wrong digest")

	if r := h.do(http.MethodPut, loc+"?digest="+string(right), nil, ociAs("a")); r.status != http.StatusCreated {
		t.Fatalf("closing the session with the right digest: %d %s", r.status, r.body)
	}
	if got := h.ociGetBlob("a", "a/m", right); got != string(data) {
		t.Fatalf("the blob reads %q", got)
	}
}

// testOCIInvalidNames: an OCI repository is REPOSITORY/NAME, lowercase,
// and the repository v2 is reserved.
func testOCIInvalidNames(t *testing.T, b backend) {
	for _, who := range []string{"", "admin"} {
		var h *harness
		if who == "" {
			h = newHarness(t, b, registry.Options{})
		} else {
			h = ociTenancyHarness(t, b)
		}
		for _, path := range []string{
			"/v2/v2/x/tags/list",
			"/v2/Team/model/tags/list",
			"/v2/team/Model/tags/list",
			"/v2/team/Model/manifests/v1",
			"/v2/TEAM/model/blobs/" + string(digest.FromString("x")),
		} {
			expectOCIError(t, h.do(http.MethodGet, path, nil, ociAs(who)), http.StatusBadRequest, "NAME_INVALID")
		}
		expectOCIError(t, h.do(http.MethodPost, "/v2/Team/model/blobs/uploads/", nil, ociAs(who)), http.StatusBadRequest, "NAME_INVALID")
		expectOCIError(t, h.do(http.MethodPut, "/v2/v2/x/manifests/v1", ociManifestOf(nil), ociAs(who, "Content-Type", spec.MediaTypeOCIManifest)),
			http.StatusBadRequest, "NAME_INVALID")
	}
}

// testOCIUnroutedPaths: a path no endpoint serves names no resource: 404
// with an OCI error, whatever its shape. A repository of three components
// is a valid OCI name that this registry does not have (as a client
// pulling HOST/a/b/c:v1 would ask), and a session path that climbs out of
// the session is no session.
func testOCIUnroutedPaths(t *testing.T, b backend) {
	h := ociTenancyHarness(t, b)
	for _, req := range []struct{ method, path string }{
		{http.MethodGet, "/v2/a/b/c/tags/list"},
		{http.MethodGet, "/v2/a/b/c/manifests/v1"},
		{http.MethodHead, "/v2/a/b/c/manifests/v1"},
		{http.MethodPost, "/v2/a/b/c/blobs/uploads/"},
		{http.MethodPatch, "/v2/a/m/blobs/uploads/../x"},
	} {
		r := h.do(req.method, req.path, nil, ociAs("admin"))
		if r.status != http.StatusNotFound {
			t.Errorf("%s %s: %d %s, want 404", req.method, req.path, r.status, bytes.TrimSpace(r.body))
		} else if req.method != http.MethodHead {
			ociErrorOf(t, r)
		}
	}
}

// testOCIDigestsAndSessionIDs: sha256 is the only digest algorithm, and
// upload session IDs are only those the registry made.
func testOCIDigestsAndSessionIDs(t *testing.T, b backend) {
	h := ociTenancyHarness(t, b)
	data := []byte("a blob named by sha512")
	d512 := digest.SHA512.FromBytes(data).String()

	requireSHA256Only := func(what string, r response) {
		t.Helper()
		expectOCIError(t, r, http.StatusBadRequest, "DIGEST_INVALID")
		if msg := ociErrorOf(t, r).Message; !strings.Contains(msg, "sha256") {
			t.Fatalf("%s: message %q does not say that digests are sha256", what, msg)
		}
	}
	requireSHA256Only("monolithic POST", h.do(http.MethodPost, "/v2/a/m/blobs/uploads/?digest="+d512, data, ociAs("a")))
	loc := h.ociStartSession("a", "a/m")
	requireSHA256Only("closing PUT", h.do(http.MethodPut, loc+"?digest="+d512, data, ociAs("a")))
	requireSHA256Only("mount", h.do(http.MethodPost, "/v2/a/m/blobs/uploads/?mount="+d512+"&from=a/n", nil, ociAs("a")))
	requireSHA256Only("blob GET", h.do(http.MethodGet, "/v2/a/m/blobs/"+d512, nil, ociAs("a")))
	requireSHA256Only("manifest GET", h.do(http.MethodGet, "/v2/a/m/manifests/"+d512, nil, ociAs("a")))
	if h.ociBlobStored(digest.Digest(d512)) {
		t.Fatal("the store holds the sha512 blob")
	}

	unknown := strings.Repeat("0123456789abcdef", 2)
	for _, id := range []string{unknown, "..", "..%2Fx", "..%2F..%2Fblobs", strings.ToUpper(loc[strings.LastIndexByte(loc, '/')+1:]), "x"} {
		for _, method := range []string{http.MethodGet, http.MethodPatch, http.MethodPut, http.MethodDelete} {
			query := ""
			if method == http.MethodPut {
				query = "?digest=" + string(digest.FromBytes(data))
			}
			r := h.do(method, "/v2/a/m/blobs/uploads/"+id+query, data, ociAs("a"))
			expectOCIError(t, r, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
		}
	}
	// The real session is untouched.
	if r := h.do(http.MethodGet, loc, nil, ociAs("a")); r.status != http.StatusNoContent || r.header.Get("Range") != "0-0" {
		t.Fatalf("the session after the attempts: %d Range %q", r.status, r.header.Get("Range"))
	}
}

// linkNext is the target of a Link header's rel="next".
var linkNext = regexp.MustCompile(`^<([^>]+)>;\s*rel="next"$`)

// testOCITagsPagination: n and last page a model's tags in lexical order,
// and Link names the next page until the last.
func testOCITagsPagination(t *testing.T, b backend) {
	h := ociTenancyHarness(t, b)
	_, m := h.ociPushModel("a", "a/m", "v1", []byte("paged"))
	tags := []string{"v1", "v2", "v3", "v4", "v5"}
	raw := h.do(http.MethodGet, "/v2/a/m/manifests/v1", nil, ociAs("a", "Accept", spec.MediaTypeOCIManifest))
	for _, tag := range tags[1:] {
		if r := h.do(http.MethodPut, "/v2/a/m/manifests/"+tag, raw.body, ociAs("a", "Content-Type", spec.MediaTypeOCIManifest)); r.status != http.StatusCreated || r.header.Get(spec.OCIDigestHeader) != string(m) {
			t.Fatalf("tag %s: %d %s", tag, r.status, r.body)
		}
	}
	list := func(path string) ([]string, string) {
		t.Helper()
		r := h.do(http.MethodGet, path, nil, ociAs("a"))
		var page struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		if r.status != http.StatusOK || json.Unmarshal(r.body, &page) != nil || page.Name != "a/m" {
			t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
		next := ""
		if link := r.header.Get("Link"); link != "" {
			match := linkNext.FindStringSubmatch(link)
			if match == nil {
				t.Fatalf("GET %s: Link %q is not <URL>; rel=\"next\"", path, link)
			}
			next = match[1]
		}
		return page.Tags, next
	}

	var got [][]string
	next := "/v2/a/m/tags/list?n=2"
	for pages := 0; next != ""; pages++ {
		if pages > len(tags) {
			t.Fatalf("the pages do not end: %v", got)
		}
		var page []string
		page, next = list(next)
		got = append(got, page)
	}
	if want := [][]string{{"v1", "v2"}, {"v3", "v4"}, {"v5"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("pages of 2: %v, want %v", got, want)
	}
	for _, c := range []struct {
		query string
		want  []string
		next  bool
	}{
		{"", tags, false},
		{"?last=v3", []string{"v4", "v5"}, false},
		{"?n=2&last=v2", []string{"v3", "v4"}, true},
		{"?n=10", tags, false},
		{"?n=5", tags, false},
		{"?last=v5", []string{}, false},
		{"?last=v0", tags, false},
	} {
		page, next := list("/v2/a/m/tags/list" + c.query)
		if !slices.Equal(page, c.want) || (next != "") != c.next {
			t.Errorf("tags/list%s: %v, next %q; want %v, a next page %v", c.query, page, next, c.want, c.next)
		}
	}
}

// testOCICatalog: /v2/_catalog lists the models the caller may pull, and
// pages them.
func testOCICatalog(t *testing.T, b backend) {
	h := ociTenancyHarness(t, b)
	for _, m := range []struct{ who, model string }{{"a", "a/m"}, {"a", "a/n"}, {"b", "b/m"}, {"admin", "pub/x"}} {
		h.ociPushModel(m.who, m.model, "v1", []byte("catalogued "+m.model))
	}
	catalog := func(who, query string) ([]string, string) {
		t.Helper()
		r := h.do(http.MethodGet, "/v2/_catalog"+query, nil, ociAs(who))
		var c struct {
			Repositories []string `json:"repositories"`
		}
		if r.status != http.StatusOK || json.Unmarshal(r.body, &c) != nil {
			t.Fatalf("catalog as %q: %d %s", who, r.status, r.body)
		}
		return c.Repositories, r.header.Get("Link")
	}
	for who, want := range map[string][]string{
		"":      {"pub/x"},
		"a":     {"a/m", "a/n", "pub/x"},
		"b":     {"b/m", "pub/x"},
		"admin": {"a/m", "a/n", "b/m", "pub/x"},
	} {
		if got, link := catalog(who, ""); !slices.Equal(got, want) || link != "" {
			t.Errorf("catalog as %q: %v (Link %q), want %v", who, got, link, want)
		}
	}
	got, link := catalog("a", "?n=1")
	if !slices.Equal(got, []string{"a/m"}) || !strings.Contains(link, "last=a%2Fm") || !strings.HasSuffix(link, `; rel="next"`) {
		t.Fatalf("catalog as a, n=1: %v, Link %q", got, link)
	}
	if got, _ := catalog("a", "?n=1&last=a/n"); !slices.Equal(got, []string{"pub/x"}) {
		t.Fatalf("catalog as a after a/n: %v, want [pub/x]", got)
	}
}
