package registry_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/client"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
)

// Tenants in these tests are robots, each with pull and push on its own
// repository; "admin" has admin on everything; public/* is readable by
// anonymous requests. "ctl" has no rights here; the holds tests give it
// hold on team-a/*.
var tenantRobots = map[string]string{
	"team-a": "token-of-team-a-0123456789",
	"team-b": "token-of-team-b-0123456789",
	"admin":  "token-of-the-admin-0123456",
	"ctl":    "token-of-the-controller-01",
}

func tenantOptions(t *testing.T) registry.Options {
	t.Helper()
	var robots []auth.Robot
	for name, tok := range tenantRobots {
		sum := sha256.Sum256([]byte(tok))
		robots = append(robots, auth.Robot{Name: name, TokenSHA256: hex.EncodeToString(sum[:])})
	}
	authn, err := auth.New(auth.Config{Robots: robots}, nil)
	if err != nil {
		t.Fatal(err)
	}
	policy := &auth.Policy{
		AnonymousRepositories: []string{"public/*"},
		Rules: []auth.Rule{
			{Repositories: []string{"team-a/*"}, Actions: []auth.Action{auth.Push, auth.Delete}, Robots: []string{"team-a"}},
			{Repositories: []string{"team-b/*", "public/*"}, Actions: []auth.Action{auth.Push, auth.Delete}, Robots: []string{"team-b"}},
			{Repositories: []string{"*"}, Actions: []auth.Action{auth.Admin}, Robots: []string{"admin"}},
		},
	}
	if err := policy.Validate(); err != nil {
		t.Fatal(err)
	}
	return registry.Options{Authenticator: authn, Policy: policy}
}

func as(who string) http.Header {
	if who == "" {
		return nil
	}
	return http.Header{"Authorization": {"Bearer " + tenantRobots[who]}}
}

// asHarness is a harness whose requests carry who's token.
func (h *harness) as(who string) *harness {
	c := *h
	c.token = tenantRobots[who]
	return &c
}

// api is the client API of the registry with who's token.
func (h *harness) api(who string) *client.API {
	return client.New(client.Options{Token: func(string) (string, error) { return tenantRobots[who], nil }}).API(h.url)
}

// TestBlobsBelongToModels: a blob is read, probed and named in a manifest
// only through a model that holds it, whoever knows its digest.
func TestBlobsBelongToModels(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			h := newHarness(t, b, tenantOptions(t))
			a := h.as("team-a")
			secret := []byte("team a's private weights")
			m, _ := a.pushModel("team-a/llm", "v1", map[string]string{"weights.bin": string(secret)})
			d := m.Blobs[0].Digest
			before := h.snapshot()

			for _, tc := range []struct{ who, model string }{
				{"team-b", "team-b/nothing"}, // a model that does not exist
				{"team-b", "team-b/mine"},
				{"", "public/anything"}, // anonymous, through anonymousRepositories
			} {
				for _, method := range []string{http.MethodGet, http.MethodHead} {
					r := h.do(method, "/"+tc.model+"/blobs/"+string(d), nil, as(tc.who))
					if r.status != http.StatusNotFound || r.header.Get("Location") != "" {
						t.Errorf("%s of team a's blob through %s as %q: %d Location %q, want 404", method, tc.model, tc.who, r.status, r.header.Get("Location"))
					}
				}
			}
			// Naming the blob in a manifest of one's own does not link it.
			bm := m
			bm.Config = h.as("team-b").pushBlob("team-b/mine", []byte("description: b\n"))
			bm.Config.Name, bm.Config.MediaType = spec.ConfigFileName, spec.MediaTypeConfig
			data, _ := json.Marshal(bm)
			r := h.do(http.MethodPut, "/team-b/mine/manifests/v1", data, as("team-b"))
			h.expect(r, http.StatusBadRequest, spec.ErrorManifestBlobUnknown)
			if !strings.Contains(string(r.body), string(d)) {
				t.Errorf("the refusal does not name the blob: %s", r.body)
			}
			if r := h.do(http.MethodGet, "/team-b/mine/blobs/"+string(d), nil, as("team-b")); r.status != http.StatusNotFound {
				t.Errorf("team a's blob through team b's model after the refused manifest: %d", r.status)
			}
			for key := range h.snapshot() {
				if _, ok := before[key]; !ok && strings.Contains(key, d.Encoded()) {
					t.Errorf("the refused requests stored %s", key)
				}
			}
		})
	}
}

// TestLinkNeedsTheBytes: a model gets a link to a blob stored for another
// model only by sending the bytes again, which are verified, and the
// stored copy is kept once.
func TestLinkNeedsTheBytes(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			h := newHarness(t, b, tenantOptions(t))
			data := []byte("weights both teams have")
			d := h.as("team-a").pushBlob("team-a/m", data).Digest
			stored := h.blobETag(d)

			// Offered without its bytes (a client that asks with Expect:
			// 100-continue and has none to send): not linked.
			opened := atomic.Bool{}
			_, err := h.api("team-b").PutBlob(context.Background(), "team-b", "m", d, int64(len(data)), func() (io.ReadCloser, error) {
				opened.Store(true)
				return io.NopCloser(strings.NewReader("wrong bytes of that length")), nil
			})
			if err == nil || !opened.Load() {
				t.Fatalf("linking without the right bytes: err %v, body asked for %v", err, opened.Load())
			}
			if r := h.do(http.MethodHead, "/team-b/m/blobs/"+string(d), nil, as("team-b")); r.status != http.StatusNotFound {
				t.Fatalf("after wrong bytes: HEAD %d, want 404", r.status)
			}
			// With the bytes: linked, and the bytes are stored once.
			if r := h.as("team-b").getBlobAfterPush("team-b/m", data); r.status != http.StatusOK || !bytes.Equal(r.body, data) {
				t.Fatalf("after the right bytes: GET %d %q", r.status, r.body)
			}
			if got := h.blobETag(d); got != stored {
				t.Errorf("the stored blob was replaced (ETag %s, was %s)", got, stored)
			}
			for key := range h.snapshot() {
				if strings.Contains(key, "/uploads/") {
					t.Errorf("staged upload %s left after the commit", key)
				}
			}
		})
	}
}

// blobETag returns the ETag of a stored blob.
func (h *harness) blobETag(d digest.Digest) string {
	h.t.Helper()
	for key, etag := range h.snapshot() {
		if strings.HasPrefix(key, "blobs/") && strings.HasSuffix(key, d.Encoded()) {
			return etag
		}
	}
	h.t.Fatalf("blob %s is not stored", d)
	return ""
}

// getBlobAfterPush pushes data to model and reads it back.
func (h *harness) getBlobAfterPush(model string, data []byte) response {
	h.t.Helper()
	desc := h.pushBlob(model, data)
	return h.getBlob(model, desc.Digest, nil)
}

// TestUploadClaim (redirect mode): a tenant that asks to upload a blob it
// does not have, to be the one whose model the blob is linked to when its
// owner uploads it, gets nothing.
func TestUploadClaim(t *testing.T) {
	b := backends(t)[2]
	h := newHarness(t, b, tenantOptions(t))
	data := []byte("weights team a is about to push")
	d := digest.FromBytes(data)
	path := func(model string) string { return "/" + model + "/blobs/" + string(d) }

	// The attacker asks first: it gets the presigned URL of the blob's key.
	r := h.do(http.MethodPut, path("team-b/thief"), data, as("team-b"))
	if r.status != http.StatusFound || strings.Contains(r.header.Get("Location"), "/uploads/") {
		t.Fatalf("first upload request: %d %q, want a redirect to the blob's key", r.status, r.header.Get("Location"))
	}
	// The owner is sent to its model's staging key, uploads, and commits.
	h.as("team-a").pushBlob("team-a/llm", data)
	if r := h.do(http.MethodGet, path("team-a/llm"), nil, as("team-a")); r.status != http.StatusFound {
		t.Fatalf("owner's blob: %d", r.status)
	}
	// The attacker's claim is gone: offering the blob again, or naming it
	// in a manifest, does not link it.
	r = h.do(http.MethodPut, path("team-b/thief"), data, as("team-b"))
	if r.status == http.StatusCreated || !strings.Contains(r.header.Get("Location"), "/uploads/") {
		t.Fatalf("attacker's commit: %d %q, want a redirect to its staging key", r.status, r.header.Get("Location"))
	}
	cfg := h.as("team-b").pushBlob("team-b/thief", []byte("description: thief\n"))
	cfg.Name, cfg.MediaType = spec.ConfigFileName, spec.MediaTypeConfig
	m := spec.Manifest{SchemaVersion: 1, MediaType: spec.MediaTypeManifest, Config: cfg,
		Blobs: []spec.Descriptor{{Name: "w.bin", MediaType: spec.MediaTypeFile, Digest: d, Size: int64(len(data))}}}
	body, _ := json.Marshal(m)
	h.expect(h.do(http.MethodPut, "/team-b/thief/manifests/v1", body, as("team-b")), http.StatusBadRequest, spec.ErrorManifestBlobUnknown)
	if r := h.do(http.MethodGet, path("team-b/thief"), nil, as("team-b")); r.status != http.StatusNotFound {
		t.Fatalf("attacker's GET: %d, want 404", r.status)
	}

	// The other order: the owner holds the claim and uploads straight to
	// the key; a second tenant with the same bytes stages and links too.
	data2 := []byte("weights both teams push at once")
	d2 := digest.FromBytes(data2)
	r = h.do(http.MethodPut, "/team-a/llm/blobs/"+string(d2), data2, as("team-a"))
	if r.status != http.StatusFound {
		t.Fatalf("owner's upload request: %d", r.status)
	}
	h.as("team-b").pushBlob("team-b/same", data2) // staged, then copied to the blob's key
	sum := sha256.Sum256(data2)
	up := h.do(http.MethodPut, r.header.Get("Location"), data2, http.Header{storage.ChecksumHeader: {base64.StdEncoding.EncodeToString(sum[:])}})
	if up.status != http.StatusOK {
		t.Fatalf("owner's presigned upload: %d", up.status)
	}
	// The owner's claim was taken over by the copy: it commits by sending
	// the bytes once more, to its staging key.
	h.as("team-a").pushBlob("team-a/llm", data2)
	for _, model := range []string{"team-a/llm", "team-b/same"} {
		who := strings.SplitN(model, "/", 2)[0]
		if r := h.as(who).getBlob(model, d2, nil); r.status != http.StatusOK || !bytes.Equal(r.body, data2) {
			t.Fatalf("%s: %d", model, r.status)
		}
	}
}

// TestMount: a push may link blobs of a model the pusher can pull without
// sending them; of a model it cannot pull, it must send the bytes.
func TestMount(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			h := newHarness(t, b, tenantOptions(t))
			data := []byte("public base weights")
			d := h.as("team-b").pushBlob("public/base", data).Digest
			secret := h.as("team-a").pushBlob("team-a/private", []byte("team a only")).Digest
			ctx := context.Background()
			api := h.api("team-a")

			var opened atomic.Bool
			open := func(b []byte) func() (io.ReadCloser, error) {
				return func() (io.ReadCloser, error) { opened.Store(true); return io.NopCloser(bytes.NewReader(b)), nil }
			}
			sent, err := api.MountBlob(ctx, "team-a", "derived", "public/base", d, int64(len(data)), open(data))
			if err != nil || sent || opened.Load() {
				t.Fatalf("mount from a readable model: sent %v opened %v err %v", sent, opened.Load(), err)
			}
			if r := h.as("team-a").getBlob("team-a/derived", d, nil); r.status != http.StatusOK || !bytes.Equal(r.body, data) {
				t.Fatalf("mounted blob: %d", r.status)
			}
			// team b may not pull team-a/private: naming it as the source
			// does not spare it the bytes.
			bapi := h.api("team-b")
			opened.Store(false)
			_, err = bapi.MountBlob(ctx, "team-b", "stolen", "team-a/private", secret, int64(len("team a only")), open([]byte("wrong bytes")))
			if err == nil || !opened.Load() {
				t.Fatalf("mount from an unreadable model: err %v, bytes asked %v", err, opened.Load())
			}
			if r := h.do(http.MethodGet, "/team-b/stolen/blobs/"+string(secret), nil, as("team-b")); r.status != http.StatusNotFound {
				t.Fatalf("after the refused mount: %d", r.status)
			}
			// A malformed source is refused.
			r := h.do(http.MethodPut, "/team-a/x/blobs/"+string(d)+"?from=..%2Fetc", data, as("team-a"))
			h.expect(r, http.StatusBadRequest, spec.ErrorNameInvalid)
		})
	}
}

// TestCollectionScope: a model's collection, which delete rights on it
// allow, deletes only that model's garbage; collecting the whole registry
// needs admin on every model.
func TestCollectionScope(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			opts := tenantOptions(t)
			opts.GCGracePeriod = time.Nanosecond
			h := newHarness(t, b, opts)
			a, bb := h.as("team-a"), h.as("team-b")
			// Team b keeps a version by digest only (untagged): its own business.
			_, pinned := bb.pushModel("team-b/keep", "tmp", map[string]string{"f": "pinned by digest"})
			bb.expect(bb.do(http.MethodDelete, "/team-b/keep/manifests/tmp", nil, nil), http.StatusAccepted, "")
			bb.pushModel("team-b/keep", "v1", map[string]string{"g": "tagged"})
			_, old := a.pushModel("team-a/m", "v1", map[string]string{"w": "old"})
			a.pushModel("team-a/m", "v2", map[string]string{"w": "new"})
			a.expect(a.do(http.MethodDelete, "/team-a/m/manifests/v1", nil, nil), http.StatusAccepted, "")
			h.pastGrace()

			r := a.do(http.MethodPost, "/team-a/m/garbage-collect", nil, nil)
			a.expect(r, http.StatusOK, "")
			var res spec.GCResult
			json.Unmarshal(r.body, &res)
			if res.Scope != "team-a/m" || res.ManifestsDeleted != 1 || res.BlobsDeleted != 0 {
				t.Fatalf("team a's collection: %+v", res)
			}
			a.expect(a.do(http.MethodGet, "/team-a/m/manifests/"+string(old), nil, nil), http.StatusNotFound, spec.ErrorManifestUnknown)
			bb.expect(bb.do(http.MethodGet, "/team-b/keep/manifests/"+string(pinned), nil, nil), http.StatusOK, "")
			a.expect(a.do(http.MethodPost, "/team-b/keep/garbage-collect", nil, nil), http.StatusForbidden, spec.ErrorDenied)
			a.expect(a.do(http.MethodPost, "/garbage-collect", nil, nil), http.StatusForbidden, spec.ErrorDenied)
			h.expect(h.do(http.MethodPost, "/garbage-collect", nil, nil), http.StatusUnauthorized, spec.ErrorUnauthorized)
			admin := h.as("admin")
			r = admin.do(http.MethodPost, "/garbage-collect", nil, nil)
			admin.expect(r, http.StatusOK, "")
			json.Unmarshal(r.body, &res)
			// It collects every model: team b's untagged version goes too,
			// with its blob, and team a's old blob, which no model holds.
			if res.Scope != "registry" || res.ManifestsDeleted != 1 || res.BlobsDeleted != 2 {
				t.Fatalf("registry collection: %+v, want 1 manifest and 2 blobs deleted", res)
			}
		})
	}
}

// TestImmutableTags: a tag the policy makes immutable is neither moved nor
// deleted, by its owners or an admin; pushing the same version again is
// fine, and the index says which tags are immutable.
func TestImmutableTags(t *testing.T) {
	opts := tenantOptions(t)
	opts.Policy.ImmutableTags = []auth.ImmutableTags{{Repositories: []string{"team-a/*"}, Tags: []string{"v*"}}}
	if err := opts.Policy.Validate(); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, backends(t)[0], opts)
	a, admin := h.as("team-a"), h.as("admin")
	m1, d1 := a.pushModel("team-a/m", "v1", map[string]string{"w": "one"})
	m2, d2 := a.pushModel("team-a/m", "latest", map[string]string{"w": "two"})
	a.putManifest("team-a/m", "v1", m1) // the same version again
	a.putManifest("team-a/m", "latest", m1)
	a.putManifest("team-a/m", "latest", m2) // not immutable: moves

	rule := `immutableTags: tags ["v*"] of ["team-a/*"]`
	for _, tc := range []struct {
		who          *harness
		method, path string
		body         []byte
	}{
		{a, http.MethodPut, "/team-a/m/manifests/v1", mustJSON(&m2)},
		{a, http.MethodDelete, "/team-a/m/manifests/v1", nil},
		{a, http.MethodDelete, "/team-a/m/manifests/" + string(d1), nil},
		{a, http.MethodDelete, "/team-a/m/index", nil},
		{admin, http.MethodDelete, "/team-a/m/manifests/v1", nil},
	} {
		r := tc.who.do(tc.method, tc.path, tc.body, nil)
		tc.who.expect(r, http.StatusConflict, spec.ErrorConflict)
		if !strings.Contains(r.apiError(t).Message, rule) {
			t.Errorf("%s %s: %s does not name the rule", tc.method, tc.path, r.body)
		}
	}
	idx := a.index("/team-a/m/index")
	for _, desc := range idx.Manifests {
		want := map[string]string{"v1": "true", "latest": ""}[desc.Name]
		if got := desc.Annotations[spec.AnnotationImmutableTag]; got != want {
			t.Errorf("tag %s: immutable annotation %q, want %q", desc.Name, got, want)
		}
		if desc.Name == "v1" && desc.Digest != d1 || desc.Name == "latest" && desc.Digest != d2 {
			t.Errorf("tag %s names %s", desc.Name, desc.Digest)
		}
	}
	a.expect(a.do(http.MethodDelete, "/team-a/m/manifests/latest", nil, nil), http.StatusAccepted, "")
}

// TestLinkDroppedByAnotherReplica: a link another replica's collection
// deleted reads as gone at once on a replica that had just served it.
func TestLinkDroppedByAnotherReplica(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			one := newHarness(t, b, registry.Options{GCGracePeriod: time.Nanosecond})
			two := newHarness(t, backend{open: func(*testing.T) registry.Backend { return one.store }, redirect: b.redirect}, registry.Options{GCGracePeriod: time.Nanosecond})
			m, _ := one.pushModel("rep/model", "v1", map[string]string{"w": "dropped soon"})
			d := m.Blobs[0].Digest
			if r := one.do(http.MethodHead, "/rep/model/blobs/"+string(d), nil, nil); r.status != http.StatusOK {
				t.Fatalf("HEAD before: %d", r.status)
			}
			two.expect(two.do(http.MethodDelete, "/rep/model/manifests/v1", nil, nil), http.StatusAccepted, "")
			two.pastGrace()
			if res, err := two.reg.CollectModelGarbage(context.Background(), "rep", "model"); err != nil || res.LinksDeleted == 0 {
				t.Fatalf("collection on the other replica: %+v %v", res, err)
			}
			if r := one.do(http.MethodHead, "/rep/model/blobs/"+string(d), nil, nil); r.status != http.StatusNotFound {
				t.Fatalf("HEAD after the other replica dropped the link: %d, want 404", r.status)
			}
		})
	}
}
