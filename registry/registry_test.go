package registry_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
	"modelx.io/modelx/storage/fs"
	"modelx.io/modelx/storage/s3"
)

// backend makes a fresh storage backend and says whether to redirect.
type backend struct {
	name     string
	redirect bool
	open     func(t *testing.T) registry.Backend
}

var bucketSeq atomic.Int32

func backends(t *testing.T) []backend {
	srv := testenv.StartS3(t)
	newS3 := func(t *testing.T) registry.Backend {
		ctx := context.Background()
		st, err := s3.New(ctx, s3.Config{
			Endpoint: srv.URL, Bucket: fmt.Sprintf("reg-%d", bucketSeq.Add(1)), Region: srv.Region,
			AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PathStyle: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.CreateBucket(ctx); err != nil {
			t.Fatal(err)
		}
		return st
	}
	newFS := func(t *testing.T) registry.Backend {
		st, err := fs.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	return []backend{
		{name: "fs", open: newFS},
		{name: "s3-proxy", open: newS3},
		{name: "s3-redirect", redirect: true, open: newS3},
	}
}

// harness is one registry served over httptest, and a client that follows
// redirects the way the modelx client does.
type harness struct {
	t        *testing.T
	store    registry.Backend
	reg      *registry.Registry
	url      string
	redirect bool
	http     *http.Client
	token    string // sent to the registry (never to presigned URLs) when set
	clock    *testenv.Clock
	grace    time.Duration // the registry's GC grace period
}

func newHarness(t *testing.T, b backend, opts registry.Options) *harness {
	t.Helper()
	store := b.open(t)
	opts.EnableRedirect = b.redirect
	opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	clock := &testenv.Clock{}
	opts.Clock = clock.Now
	reg, err := registry.New(store, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	grace := opts.GCGracePeriod
	if grace <= 0 {
		grace = time.Hour // the registry's default
	}
	return &harness{t: t, store: store, reg: reg, url: srv.URL, redirect: b.redirect, clock: clock, grace: grace, http: &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// pastGrace moves the registry's clock past the GC grace period, and a
// second more for stores whose object times are coarse: to the next
// collection, everything stored so far is old.
func (h *harness) pastGrace() { h.clock.Advance(h.grace + time.Second) }

type response struct {
	status int
	header http.Header
	body   []byte
}

// apiError decodes the JSON error envelope.
func (r response) apiError(t *testing.T) spec.Error {
	t.Helper()
	var oci struct {
		Errors []spec.Error `json:"errors"`
	}
	if json.Unmarshal(r.body, &oci) == nil && len(oci.Errors) > 0 { // the OCI API's envelope
		return oci.Errors[0]
	}
	var e spec.Error
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("status %d body %q is not an error envelope: %v", r.status, r.body, err)
	}
	return e
}

func (h *harness) do(method, url string, body []byte, header http.Header) response {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	toRegistry := strings.HasPrefix(url, "/")
	if toRegistry {
		url = h.url + url
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if toRegistry && h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := h.http.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (h *harness) expect(r response, status int, code spec.ErrorCode) {
	h.t.Helper()
	if r.status != status {
		h.t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if code != "" {
		if e := r.apiError(h.t); e.Code != code {
			h.t.Fatalf("error code %s, want %s (%s)", e.Code, code, e.Message)
		}
	}
}

// pushBlob uploads data to model repo/name, following a redirect like the
// client: resend to Location with the length and the checksum header, then
// offer the blob again, which links it to the model.
func (h *harness) pushBlob(model string, data []byte) spec.Descriptor {
	h.t.Helper()
	d := digest.FromBytes(data)
	r := h.do(http.MethodPut, "/"+model+"/blobs/"+string(d), data, nil)
	if r.status == http.StatusFound {
		if !h.redirect {
			h.t.Fatal("redirect from a proxying registry")
		}
		sum := sha256.Sum256(data)
		r = h.do(http.MethodPut, r.header.Get("Location"), data, http.Header{
			storage.ChecksumHeader: {base64.StdEncoding.EncodeToString(sum[:])},
		})
		if r.status != http.StatusOK {
			h.t.Fatalf("presigned upload: %d %s", r.status, r.body)
		}
		r = h.do(http.MethodPut, "/"+model+"/blobs/"+string(d), data, nil)
		h.expect(r, http.StatusCreated, "")
	} else {
		h.expect(r, http.StatusCreated, "")
		if got := r.header.Get(spec.DigestHeader); got != string(d) {
			h.t.Fatalf("digest header %q, want %s", got, d)
		}
	}
	return spec.Descriptor{MediaType: spec.MediaTypeFile, Digest: d, Size: int64(len(data))}
}

// getBlob downloads a blob, following a redirect with the same headers.
func (h *harness) getBlob(model string, d digest.Digest, header http.Header) response {
	h.t.Helper()
	r := h.do(http.MethodGet, "/"+model+"/blobs/"+string(d), nil, header)
	if r.status == http.StatusFound {
		if !h.redirect {
			h.t.Fatal("redirect from a proxying registry")
		}
		if loc := r.header.Get("Location"); !strings.Contains(loc, "X-Amz-Signature=") {
			h.t.Fatalf("Location %q is not a presigned URL", loc)
		}
		r = h.do(http.MethodGet, r.header.Get("Location"), nil, header)
	}
	return r
}

// model pushes a model version: config plus files, then the manifest by tag.
func (h *harness) pushModel(model, tag string, files map[string]string) (spec.Manifest, digest.Digest) {
	h.t.Helper()
	cfg := h.pushBlob(model, []byte("description: test model\n"))
	cfg.Name, cfg.MediaType = spec.ConfigFileName, spec.MediaTypeConfig
	m := spec.Manifest{SchemaVersion: 1, MediaType: spec.MediaTypeManifest, Config: cfg}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		desc := h.pushBlob(model, []byte(files[n]))
		desc.Name = n
		m.Blobs = append(m.Blobs, desc)
	}
	return m, h.putManifest(model, tag, m)
}

func (h *harness) putManifest(model, ref string, m spec.Manifest) digest.Digest {
	h.t.Helper()
	data, _ := json.Marshal(m)
	r := h.do(http.MethodPut, "/"+model+"/manifests/"+ref, data, nil)
	h.expect(r, http.StatusCreated, "")
	d := digest.FromBytes(data)
	if got := r.header.Get(spec.DigestHeader); got != string(d) {
		h.t.Fatalf("manifest digest header %q, want %s", got, d)
	}
	return d
}

// manifest fetches and parses a manifest by tag or digest.
func (h *harness) manifest(model, ref string) spec.Manifest {
	h.t.Helper()
	r := h.do(http.MethodGet, "/"+model+"/manifests/"+ref, nil, nil)
	h.expect(r, http.StatusOK, "")
	var m spec.Manifest
	if err := json.Unmarshal(r.body, &m); err != nil {
		h.t.Fatal(err)
	}
	return m
}

func (h *harness) index(path string) spec.Index {
	h.t.Helper()
	r := h.do(http.MethodGet, path, nil, nil)
	h.expect(r, http.StatusOK, "")
	var idx spec.Index
	if err := json.Unmarshal(r.body, &idx); err != nil {
		h.t.Fatal(err)
	}
	return idx
}

func names(idx spec.Index) []string {
	var out []string
	for _, d := range idx.Manifests {
		out = append(out, d.Name)
	}
	return out
}

// snapshot lists every stored key with its ETag, to prove a request changed nothing.
func (h *harness) snapshot() map[string]string {
	h.t.Helper()
	out := map[string]string{}
	if err := h.store.List(context.Background(), "", func(i storage.Info) error {
		out[i.Key] = i.ETag
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	return out
}

func TestRegistry(t *testing.T) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b backend)
	}{
		{"PushPullRoundTrip", testRoundTrip},
		{"BlobRanges", testBlobRanges},
		{"BlobHeadNeverRedirects", testBlobHead},
		{"HostileInputChangesNothing", testHostile},
		{"ManifestBlobUnknown", testManifestBlobUnknown},
		{"TagsAndDeletes", testTagsAndDeletes},
		{"ConcurrentTagsAcrossReplicas", testConcurrentReplicas},
		{"TagMovedByAnotherReplicaIsSeenAtOnce", testTagMovedElsewhere},
		{"GarbageCollection", testGC},
	}
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) { tc.fn(t, b) })
			}
		})
	}
}

func testRoundTrip(t *testing.T, b backend) {
	h := newHarness(t, b, registry.Options{})
	files := map[string]string{"weights.bin": strings.Repeat("w", 300<<10), "tokenizer/vocab.txt": "a b c", "empty": ""}
	m, d := h.pushModel("nlp/bert", "v1", files)

	for _, ref := range []string{"v1", string(d)} {
		r := h.do(http.MethodGet, "/nlp/bert/manifests/"+ref, nil, nil)
		h.expect(r, http.StatusOK, "")
		if digest.FromBytes(r.body) != d || r.header.Get(spec.DigestHeader) != string(d) {
			t.Fatalf("GET manifest %s: body digest %s header %s, want %s", ref, digest.FromBytes(r.body), r.header.Get(spec.DigestHeader), d)
		}
		if ct := r.header.Get("Content-Type"); ct != spec.MediaTypeManifest {
			t.Fatalf("Content-Type %q", ct)
		}
	}
	if r := h.do(http.MethodHead, "/nlp/bert/manifests/v1", nil, nil); r.status != http.StatusOK || r.header.Get(spec.DigestHeader) != string(d) {
		t.Fatalf("HEAD manifest: %d %v", r.status, r.header)
	}
	for _, desc := range m.Referenced() {
		r := h.getBlob("nlp/bert", desc.Digest, nil)
		h.expect(r, http.StatusOK, "")
		if digest.FromBytes(r.body) != desc.Digest {
			t.Fatalf("blob %s: got bytes of %s", desc.Name, digest.FromBytes(r.body))
		}
	}
	// A blob is stored once, whatever model it was pushed to, and read
	// only through the models that hold it.
	weights := m.Blobs[2].Digest
	h.pushBlob("other/model", []byte(files["weights.bin"]))
	if r := h.getBlob("other/model", weights, nil); r.status != http.StatusOK {
		t.Fatalf("blob through the second model that pushed it: %d", r.status)
	}
	if r := h.getBlob("any/model", weights, nil); r.status != http.StatusNotFound {
		t.Fatalf("blob through a model that does not hold it: %d, want 404", r.status)
	}
	stored := 0
	for key := range h.snapshot() {
		if strings.HasPrefix(key, "blobs/") && strings.HasSuffix(key, weights.Encoded()) {
			stored++
		}
	}
	if stored != 1 {
		t.Fatalf("the blob pushed to two models is stored %d times, want once", stored)
	}
	idx := h.index("/nlp/bert/index")
	if got := names(idx); !slices.Equal(got, []string{"v1"}) || idx.Manifests[0].Digest != d {
		t.Fatalf("index %+v", idx)
	}
	if got, want := idx.Manifests[0].Annotations[spec.AnnotationModelSize], fmt.Sprint(m.TotalSize()); got != want || m.TotalSize() < 300<<10 {
		t.Fatalf("size annotation %q, want %s", got, want)
	}
	if got := names(h.index("/")); !slices.Equal(got, []string{"nlp/bert"}) {
		t.Fatalf("global index %v", got)
	}
}

func testBlobRanges(t *testing.T, b backend) {
	h := newHarness(t, b, registry.Options{})
	data := []byte("0123456789abcdef")
	desc := h.pushBlob("r/r", data)
	for _, tc := range []struct {
		header string
		status int
		want   string
	}{
		{"bytes=0-3", http.StatusPartialContent, "0123"},
		{"bytes=10-", http.StatusPartialContent, "abcdef"},
		{"bytes=-4", http.StatusPartialContent, "cdef"},
		{"bytes=14-100", http.StatusPartialContent, "ef"},
		{"bytes=16-", http.StatusRequestedRangeNotSatisfiable, ""},
	} {
		r := h.getBlob("r/r", desc.Digest, http.Header{"Range": {tc.header}})
		if r.status != tc.status || (tc.want != "" && string(r.body) != tc.want) {
			t.Errorf("Range %s: %d %q, want %d %q", tc.header, r.status, r.body, tc.status, tc.want)
		}
	}
	if r := h.getBlob("r/r", desc.Digest, http.Header{"Range": {"bytes=2-5"}}); r.header.Get("Content-Range") != "bytes 2-5/16" {
		t.Errorf("Content-Range %q", r.header.Get("Content-Range"))
	}
}

func testBlobHead(t *testing.T, b backend) {
	h := newHarness(t, b, registry.Options{})
	desc := h.pushBlob("h/h", []byte("head me"))
	r := h.do(http.MethodHead, "/h/h/blobs/"+string(desc.Digest), nil, nil)
	if r.status != http.StatusOK || r.header.Get("Content-Length") != "7" || r.header.Get(spec.DigestHeader) != string(desc.Digest) {
		t.Fatalf("HEAD: %d %v", r.status, r.header)
	}
	missing := digest.FromString("missing")
	if r := h.do(http.MethodHead, "/h/h/blobs/"+string(missing), nil, nil); r.status != http.StatusNotFound {
		t.Fatalf("HEAD missing: %d", r.status)
	}
	h.expect(h.do(http.MethodGet, "/h/h/blobs/"+string(missing), nil, nil), http.StatusNotFound, spec.ErrorBlobUnknown)
	// Re-sending an existing blob is accepted at once, without a redirect.
	r = h.do(http.MethodPut, "/h/h/blobs/"+string(desc.Digest), []byte("head me"), nil)
	h.expect(r, http.StatusCreated, "")
}

func testHostile(t *testing.T, b backend) {
	h := newHarness(t, b, registry.Options{MaxManifestSize: 4096})
	m, _ := h.pushModel("safe/model", "v1", map[string]string{"a.txt": "aaa"})
	before := h.snapshot()
	good, _ := json.Marshal(m)
	withBlobs := func(blobs ...spec.Descriptor) []byte {
		mm := m
		mm.Blobs = append(slices.Clone(m.Blobs), blobs...)
		data, _ := json.Marshal(mm)
		return data
	}
	blob := m.Blobs[0]
	named := func(name string) spec.Descriptor { d := blob; d.Name = name; return d }
	data := []byte("real bytes")
	wrongDigest := digest.FromString("other bytes")
	tests := []struct {
		name   string
		method string
		path   string
		body   []byte
		status int
		code   spec.ErrorCode
	}{
		{"malformed digest", http.MethodPut, "/safe/model/blobs/sha256:xyz", data, http.StatusBadRequest, spec.ErrorDigestInvalid},
		{"non-sha256 digest", http.MethodPut, "/safe/model/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", data, http.StatusBadRequest, spec.ErrorDigestInvalid},
		{"upper-case repository", http.MethodPut, "/Safe/model/manifests/v2", good, http.StatusBadRequest, spec.ErrorNameInvalid},
		{"dot-dot repository", http.MethodGet, "/%2e%2e/model/index", nil, http.StatusBadRequest, spec.ErrorNameInvalid},
		{"bad tag", http.MethodPut, "/safe/model/manifests/-bad", good, http.StatusBadRequest, spec.ErrorReferenceInvalid},
		{"garbage JSON", http.MethodPut, "/safe/model/manifests/v2", []byte("{not json"), http.StatusBadRequest, spec.ErrorManifestInvalid},
		{"trailing data", http.MethodPut, "/safe/model/manifests/v2", append(slices.Clone(good), []byte("{}")...), http.StatusBadRequest, spec.ErrorManifestInvalid},
		{"oversize manifest", http.MethodPut, "/safe/model/manifests/v2", bytes.Repeat([]byte(" "), 5000), http.StatusRequestEntityTooLarge, spec.ErrorTooLarge},
		{"path traversal", http.MethodPut, "/safe/model/manifests/v2", withBlobs(named("../../etc/passwd")), http.StatusBadRequest, spec.ErrorManifestInvalid},
		{"absolute path", http.MethodPut, "/safe/model/manifests/v2", withBlobs(named("/etc/passwd")), http.StatusBadRequest, spec.ErrorManifestInvalid},
		{"duplicate path", http.MethodPut, "/safe/model/manifests/v2", withBlobs(named("a.txt")), http.StatusBadRequest, spec.ErrorManifestInvalid},
		{"file and directory", http.MethodPut, "/safe/model/manifests/v2", withBlobs(named("a.txt/b")), http.StatusBadRequest, spec.ErrorManifestInvalid},
		{"wrong declared size", http.MethodPut, "/safe/model/manifests/v2", withBlobs(spec.Descriptor{Name: "b", MediaType: spec.MediaTypeFile, Digest: blob.Digest, Size: 99}), http.StatusBadRequest, spec.ErrorManifestInvalid},
		{"manifest digest mismatch", http.MethodPut, "/safe/model/manifests/" + string(digest.FromString("x")), good, http.StatusBadRequest, spec.ErrorDigestInvalid},
		{"unknown tag", http.MethodGet, "/safe/model/manifests/nope", nil, http.StatusNotFound, spec.ErrorManifestUnknown},
		{"unknown model", http.MethodGet, "/safe/none/index", nil, http.StatusNotFound, spec.ErrorIndexUnknown},
		{"unknown endpoint", http.MethodGet, "/safe/model/whatever", nil, http.StatusMethodNotAllowed, spec.ErrorUnsupported},
		{"delete unknown tag", http.MethodDelete, "/safe/model/manifests/nope", nil, http.StatusNotFound, spec.ErrorManifestUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			h.expect(h.do(tc.method, tc.path, tc.body, nil), tc.status, tc.code)
		})
	}
	h.t = t
	// Bytes that do not match the digest: refused by the registry, or in
	// redirect mode by the object store, since the signature binds the checksum.
	r := h.do(http.MethodPut, "/safe/model/blobs/"+string(wrongDigest), data, nil)
	if h.redirect {
		if r.status != http.StatusFound {
			t.Fatalf("blob PUT in redirect mode: %d, want 302", r.status)
		}
		sum, _ := hex.DecodeString(wrongDigest.Encoded())
		r = h.do(http.MethodPut, r.header.Get("Location"), data, http.Header{storage.ChecksumHeader: {base64.StdEncoding.EncodeToString(sum)}})
		if r.status < 400 || r.status >= 500 {
			t.Fatalf("presigned PUT of wrong bytes: %d, want 4xx", r.status)
		}
	} else {
		h.expect(r, http.StatusBadRequest, spec.ErrorDigestInvalid)
	}
	// A blob PUT without Content-Length (chunked) is refused.
	req, _ := http.NewRequest(http.MethodPut, h.url+"/safe/model/blobs/"+string(digest.FromBytes(data)), io.NopCloser(bytes.NewReader(data)))
	resp, err := h.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("chunked blob PUT: %d, want 400", resp.StatusCode)
	}
	after := h.snapshot()
	// In redirect mode uploads leave their upload claims, which name only
	// the model and expire; garbage collection removes them.
	claims := func(key, _ string) bool { return h.redirect && strings.HasPrefix(key, "uploads/") }
	maps.DeleteFunc(before, claims)
	maps.DeleteFunc(after, claims)
	if !maps.Equal(before, after) {
		t.Fatalf("hostile requests changed storage:\nbefore %v\nafter  %v", before, after)
	}
	if got := names(h.index("/safe/model/index")); !slices.Equal(got, []string{"v1"}) {
		t.Fatalf("tags after hostile requests: %v", got)
	}
}

func testManifestBlobUnknown(t *testing.T, b backend) {
	h := newHarness(t, b, registry.Options{})
	m, _ := h.pushModel("m/m", "v1", map[string]string{"a": "a"})
	before := h.snapshot()
	ghost := digest.FromString("never uploaded")
	m.Blobs = append(m.Blobs, spec.Descriptor{Name: "ghost", MediaType: spec.MediaTypeFile, Digest: ghost, Size: 14})
	data, _ := json.Marshal(m)
	r := h.do(http.MethodPut, "/m/m/manifests/v2", data, nil)
	h.expect(r, http.StatusBadRequest, spec.ErrorManifestBlobUnknown)
	if e := r.apiError(t); !strings.Contains(fmt.Sprint(e.Detail), string(ghost)) {
		t.Fatalf("detail %v does not name the missing blob", e.Detail)
	}
	if after := h.snapshot(); !maps.Equal(before, after) {
		t.Fatal("a refused manifest changed storage")
	}
	h.expect(h.do(http.MethodGet, "/m/m/manifests/v2", nil, nil), http.StatusNotFound, spec.ErrorManifestUnknown)
}

func testTagsAndDeletes(t *testing.T, b backend) {
	h := newHarness(t, b, registry.Options{})
	_, d1 := h.pushModel("lib/a", "v1", map[string]string{"f": "1"})
	h.pushModel("lib/a", "v2", map[string]string{"f": "2"})
	h.pushModel("lib/b", "latest", map[string]string{"f": "3"})
	// Retagging an existing manifest by pushing it again under another tag.
	m1 := h.do(http.MethodGet, "/lib/a/manifests/v1", nil, nil)
	h.expect(h.do(http.MethodPut, "/lib/a/manifests/stable", m1.body, nil), http.StatusCreated, "")
	if got := names(h.index("/lib/a/index")); !slices.Equal(got, []string{"v1", "v2", "stable"}) {
		t.Fatalf("tags %v", got)
	}
	if got := names(h.index("/lib/a/index?search=v")); !slices.Equal(got, []string{"v1", "v2"}) {
		t.Fatalf("search=v: %v", got)
	}
	if got := names(h.index("/?search=lib/b")); !slices.Equal(got, []string{"lib/b"}) {
		t.Fatalf("global search=lib/b: %v", got)
	}
	// A push by digest stores the manifest without tagging it.
	h.expect(h.do(http.MethodPut, "/lib/a/manifests/"+string(d1), m1.body, nil), http.StatusCreated, "")

	h.expect(h.do(http.MethodDelete, "/lib/a/manifests/v2", nil, nil), http.StatusAccepted, "")
	h.expect(h.do(http.MethodGet, "/lib/a/manifests/v2", nil, nil), http.StatusNotFound, spec.ErrorManifestUnknown)
	// Deleting by digest removes every tag that points at it.
	h.expect(h.do(http.MethodDelete, "/lib/a/manifests/"+string(d1), nil, nil), http.StatusAccepted, "")
	h.expect(h.do(http.MethodGet, "/lib/a/index", nil, nil), http.StatusNotFound, spec.ErrorIndexUnknown)
	if got := names(h.index("/")); !slices.Equal(got, []string{"lib/b"}) {
		t.Fatalf("global index after deleting lib/a's tags: %v", got)
	}
	h.expect(h.do(http.MethodDelete, "/lib/b/index", nil, nil), http.StatusAccepted, "")
	h.expect(h.do(http.MethodGet, "/lib/b/manifests/latest", nil, nil), http.StatusNotFound, spec.ErrorManifestUnknown)
	h.expect(h.do(http.MethodDelete, "/lib/b/index", nil, nil), http.StatusNotFound, spec.ErrorIndexUnknown)
	if got := names(h.index("/")); len(got) != 0 {
		t.Fatalf("global index after deleting every model: %v", got)
	}
}

// testConcurrentReplicas pushes different tags of one model at once through
// three registry replicas sharing one backend: no tag may be lost.
func testConcurrentReplicas(t *testing.T, b backend) {
	h := newHarness(t, b, registry.Options{})
	replicas := []string{h.url}
	for range 2 {
		reg, err := registry.New(h.store, registry.Options{EnableRedirect: b.redirect})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(reg.Handler())
		t.Cleanup(srv.Close)
		replicas = append(replicas, srv.URL)
	}
	m, _ := h.pushModel("race/model", "base", map[string]string{"f": "shared"})
	const tags = 24
	var wg sync.WaitGroup
	for i := range tags {
		wg.Go(func() {
			mm := m
			mm.Annotations = map[string]string{"n": fmt.Sprint(i)}
			data, _ := json.Marshal(mm)
			req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/race/model/manifests/t%02d", replicas[i%len(replicas)], i), bytes.NewReader(data))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				t.Errorf("tag t%02d: %d %s", i, resp.StatusCode, body)
			}
		})
	}
	wg.Wait()
	got := names(h.index("/race/model/index"))
	if len(got) != tags+1 {
		t.Fatalf("index has %d tags after %d concurrent pushes (+1 base): %v", len(got), tags, got)
	}
}

// testTagMovedElsewhere: one replica caches the parsed index while it
// serves a tag; another moves and then deletes the tag; the first sees
// each change on its very next request.
func testTagMovedElsewhere(t *testing.T, b backend) {
	h := newHarness(t, b, registry.Options{})
	other, err := registry.New(h.store, registry.Options{EnableRedirect: b.redirect})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(other.Handler())
	t.Cleanup(srv.Close)
	_, d1 := h.pushModel("moving/model", "stable", map[string]string{"f": "one"})
	for range 3 { // warm the first replica's caches
		if r := h.do(http.MethodGet, "/moving/model/manifests/stable", nil, nil); r.header.Get(spec.DigestHeader) != string(d1) {
			t.Fatalf("stable is %q, want %s", r.header.Get(spec.DigestHeader), d1)
		}
	}
	m2, d2 := h.pushModel("moving/model", "scratch", map[string]string{"f": "two"})
	data, _ := json.Marshal(m2)
	h.expect(h.do(http.MethodPut, srv.URL+"/moving/model/manifests/stable", data, nil), http.StatusCreated, "")
	if r := h.do(http.MethodGet, "/moving/model/manifests/stable", nil, nil); r.header.Get(spec.DigestHeader) != string(d2) || string(r.body) != string(data) {
		t.Fatalf("after the move elsewhere, stable is %q, want %s", r.header.Get(spec.DigestHeader), d2)
	}
	h.expect(h.do(http.MethodDelete, srv.URL+"/moving/model/manifests/stable", nil, nil), http.StatusAccepted, "")
	h.expect(h.do(http.MethodGet, "/moving/model/manifests/stable", nil, nil), http.StatusNotFound, spec.ErrorManifestUnknown)
	if got := names(h.index("/moving/model/index")); !slices.Equal(got, []string{"scratch"}) {
		t.Fatalf("index after the delete elsewhere: %v, want [scratch]", got)
	}
}

func testGC(t *testing.T, b backend) {
	h := newHarness(t, b, registry.Options{GCGracePeriod: time.Nanosecond})
	ctx := context.Background()
	m1, d1 := h.pushModel("gc/model", "v1", map[string]string{"only-v1": "old weights", "shared": "shared bytes"})
	m2, d2 := h.pushModel("gc/model", "v2", map[string]string{"only-v2": "new weights", "shared": "shared bytes"})
	h.pushModel("gc/other", "v1", map[string]string{"other": "other model"})
	orphan := h.pushBlob("gc/model", []byte("uploaded, never referenced"))
	h.expect(h.do(http.MethodDelete, "/gc/model/manifests/v1", nil, nil), http.StatusAccepted, "")
	h.pastGrace()

	r := h.do(http.MethodPost, "/gc/model/garbage-collect", nil, nil)
	h.expect(r, http.StatusOK, "")
	var res spec.GCResult
	if err := json.Unmarshal(r.body, &res); err != nil {
		t.Fatal(err)
	}
	// A model's collection drops its untagged manifest and the links of
	// the blobs no remaining version names; the bytes wait for a
	// collection of the whole registry.
	if res.Scope != "gc/model" || res.ManifestsDeleted != 1 || res.LinksDeleted != 2 || res.BlobsDeleted != 0 {
		t.Fatalf("GC result %+v, want 1 manifest and 2 links (only-v1, orphan) deleted, no blob", res)
	}
	h.expect(h.do(http.MethodGet, "/gc/model/manifests/"+string(d1), nil, nil), http.StatusNotFound, spec.ErrorManifestUnknown)
	for _, d := range []digest.Digest{m1.Blobs[0].Digest, orphan.Digest} {
		if r := h.do(http.MethodHead, "/gc/model/blobs/"+string(d), nil, nil); r.status != http.StatusNotFound {
			t.Fatalf("collected blob %s still answers %d", d, r.status)
		}
	}
	h.expect(h.do(http.MethodGet, "/gc/model/manifests/"+string(d2), nil, nil), http.StatusOK, "")
	for _, desc := range m2.Referenced() {
		if r := h.getBlob("gc/model", desc.Digest, nil); r.status != http.StatusOK {
			t.Fatalf("live blob %s: %d", desc.Name, r.status)
		}
	}
	// The whole registry's collection frees the bytes no model holds.
	r = h.do(http.MethodPost, "/garbage-collect", nil, nil)
	h.expect(r, http.StatusOK, "")
	if err := json.Unmarshal(r.body, &res); err != nil {
		t.Fatal(err)
	}
	if res.Scope != "registry" || res.BlobsDeleted != 2 || res.ManifestsDeleted != 0 || res.LinksDeleted != 0 {
		t.Fatalf("registry GC result %+v, want the 2 unlinked blobs deleted", res)
	}
	if n := len(h.snapshot()); n == 0 {
		t.Fatal("the store is empty")
	}
	for _, model := range []string{"gc/model", "gc/other"} {
		idx := h.index("/" + model + "/index")
		mm := h.manifest(model, string(idx.Manifests[0].Digest))
		for _, desc := range mm.Referenced() {
			if r := h.getBlob(model, desc.Digest, nil); r.status != http.StatusOK {
				t.Fatalf("live blob %s of %s after the registry GC: %d", desc.Name, model, r.status)
			}
		}
	}
	// A second run finds nothing more.
	res, err := h.reg.CollectGarbage(ctx)
	if err != nil || res.BlobsDeleted != 0 || res.ManifestsDeleted != 0 || res.LinksDeleted != 0 || res.ManifestsYoung+res.LinksYoung+res.BlobsYoung != 0 {
		t.Fatalf("second GC %+v %v", res, err)
	}

	// The grace period protects fresh uploads.
	young := newHarness(t, backend{open: func(*testing.T) registry.Backend { return h.store }, redirect: b.redirect}, registry.Options{GCGracePeriod: time.Hour})
	fresh := young.pushBlob("gc/model", []byte("in-flight push"))
	if res, err := young.reg.CollectGarbage(ctx); err != nil || res.BlobsDeleted != 0 {
		t.Fatalf("GC within grace deleted %+v %v", res, err)
	}
	if r := young.do(http.MethodHead, "/gc/model/blobs/"+string(fresh.Digest), nil, nil); r.status != http.StatusOK {
		t.Fatalf("fresh blob answers %d after GC", r.status)
	}
	// The result says what the grace period kept that would go otherwise,
	// and nothing kept for another reason: a version deleted at once keeps
	// its manifest, its links (config and file) and its file's blob, but
	// not the config blob, which tagged versions name too.
	young.pushModel("gc/young", "v1", map[string]string{"y": "young bytes"})
	young.expect(young.do(http.MethodDelete, "/gc/young/manifests/v1", nil, nil), http.StatusAccepted, "")
	res, err = young.reg.CollectGarbage(ctx)
	if err != nil || res.ManifestsDeleted+res.LinksDeleted+res.BlobsDeleted != 0 {
		t.Fatalf("GC within grace: %+v %v", res, err)
	}
	if res.ManifestsYoung != 1 || res.LinksYoung != 3 || res.BlobsYoung != 2 || res.BytesYoung != int64(len("in-flight push")+len("young bytes")) || res.GracePeriodSeconds != 3600 {
		t.Fatalf("GC within grace: %+v, want 1 manifest, 3 links and 2 blobs (%d bytes) kept young, grace 3600 s", res, len("in-flight push")+len("young bytes"))
	}
	if res, err := young.reg.CollectModelGarbage(ctx, "gc", "young"); err != nil || res.ManifestsYoung != 1 || res.LinksYoung != 2 || res.BlobsYoung != 0 {
		t.Fatalf("model GC within grace: %+v %v", res, err)
	}
}

func TestRedirectNeedsPresigner(t *testing.T) {
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.New(st, registry.Options{EnableRedirect: true}); err == nil || !strings.Contains(err.Error(), "presign") {
		t.Fatalf("New with redirect on fs: %v, want an error about presigning", err)
	}
}
