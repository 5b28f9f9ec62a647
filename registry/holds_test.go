package registry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/registry"
	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/spec"
)

// holdBody is the JSON of a hold request.
func holdBody(ttl string, digests ...digest.Digest) []byte {
	data, _ := json.Marshal(spec.HoldRequest{Digests: digests, TTL: ttl})
	return data
}

// putHold puts a hold and decodes the answer, which must have status want.
func (h *harness) putHold(model, holder string, body []byte, want int) spec.Hold {
	h.t.Helper()
	r := h.do(http.MethodPut, "/"+model+"/holds/"+holder, body, nil)
	h.expect(r, want, "")
	var hold spec.Hold
	if err := json.Unmarshal(r.body, &hold); err != nil {
		h.t.Fatalf("hold answer %s: %v", r.body, err)
	}
	return hold
}

// holds lists a model's holds.
func (h *harness) holds(model string) []spec.Hold {
	h.t.Helper()
	r := h.do(http.MethodGet, "/"+model+"/holds", nil, nil)
	h.expect(r, http.StatusOK, "")
	var list spec.HoldList
	if err := json.Unmarshal(r.body, &list); err != nil || list.Holds == nil {
		h.t.Fatalf("holds answer %s: %v", r.body, err)
	}
	return list.Holds
}

// collect runs a collection of the whole registry and returns its result.
func (h *harness) collect() spec.GCResult {
	h.t.Helper()
	res, err := h.reg.CollectGarbage(context.Background())
	if err != nil {
		h.t.Fatalf("collection: %v", err)
	}
	return res
}

// versionReadable says whether the manifest d of model and every blob it
// names can be read.
func (h *harness) versionReadable(model string, d digest.Digest) bool {
	h.t.Helper()
	r := h.do(http.MethodGet, "/"+model+"/manifests/"+string(d), nil, nil)
	if r.status != http.StatusOK {
		return false
	}
	m, err := spec.ParseManifest(r.body)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, desc := range m.Referenced() {
		if b := h.getBlob(model, desc.Digest, nil); b.status != http.StatusOK || digest.FromBytes(b.body) != desc.Digest {
			return false
		}
	}
	return true
}

// movedVersion pushes two versions to tag v1 of model: the first, whose
// digest it returns, ends up untagged.
func (h *harness) movedVersion(model, content string) digest.Digest {
	h.t.Helper()
	_, old := h.pushModel(model, "v1", map[string]string{"weights.bin": content + " (old)"})
	h.pushModel(model, "v1", map[string]string{"weights.bin": content + " (new)"})
	return old
}

func TestHolds(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { testHolds(t, b) })
	}
}

// testHolds: a hold keeps an untagged version and its blobs through both
// scopes of collection, is renewed in place, keeps its digest and its
// model from deletion, and once released, the version goes.
func testHolds(t *testing.T, b backend) {
	h := newHarness(t, b, registry.Options{GCGracePeriod: time.Nanosecond})
	const model = "serve/bert"
	if got := h.holds(model); len(got) != 0 {
		t.Fatalf("holds of a model without any: %v", got)
	}
	old := h.movedVersion(model, "served")
	_, other := h.pushModel("serve/other", "v1", map[string]string{"weights.bin": "other"})

	before := time.Now()
	first := h.putHold(model, "ctl:prod:ns:bert", holdBody("24h", old), http.StatusCreated)
	if first.Holder != "ctl:prod:ns:bert" || !slices.Equal(first.Digests, []digest.Digest{old}) ||
		first.Expires.Sub(first.Renewed) != 24*time.Hour || !first.Created.Equal(first.Renewed) || first.Renewed.Before(before.Add(-time.Second)) {
		t.Fatalf("new hold: %+v", first)
	}
	h.clock.Advance(time.Second) // the renewal comes later on the registry's clock
	renewed := h.putHold(model, "ctl:prod:ns:bert", holdBody("48h", old, old), http.StatusOK)
	if !renewed.Created.Equal(first.Created) || !renewed.Renewed.After(first.Renewed) || renewed.Expires.Sub(renewed.Renewed) != 48*time.Hour || len(renewed.Digests) != 1 {
		t.Fatalf("renewed hold: %+v, first %+v", renewed, first)
	}
	// The default ttl is 7 days.
	def := h.putHold(model, "backup", holdBody("", old), http.StatusCreated)
	if def.Expires.Sub(def.Renewed) != spec.DefaultHoldTTL {
		t.Fatalf("default ttl: %v", def.Expires.Sub(def.Renewed))
	}
	if got := h.holds(model); len(got) != 2 || got[0].Holder != "backup" || got[1].Holder != "ctl:prod:ns:bert" || !got[1].Expires.Equal(renewed.Expires) {
		t.Fatalf("holds listed: %+v", got)
	}
	h.pastGrace()

	// Both scopes of collection keep the held version and its blobs.
	res, err := h.reg.CollectModelGarbage(context.Background(), "serve", "bert")
	if err != nil || res.ManifestsDeleted != 0 || res.LinksDeleted != 0 || res.ManifestsHeld != 1 {
		t.Fatalf("model collection with a hold: %+v %v", res, err)
	}
	if res := h.collect(); res.ManifestsDeleted != 0 || res.BlobsDeleted != 0 || res.ManifestsHeld != 1 {
		t.Fatalf("registry collection with a hold: %+v", res)
	}
	if !h.versionReadable(model, old) {
		t.Fatal("the held version is not readable after collections")
	}

	// A held version is not deleted, nor its model; a tag is (tags move).
	for _, path := range []string{"/" + model + "/manifests/" + string(old), "/" + model + "/index"} {
		r := h.do(http.MethodDelete, path, nil, nil)
		h.expect(r, http.StatusConflict, spec.ErrorConflict)
		msg := r.apiError(t).Message
		if !strings.Contains(msg, "backup, ctl:prod:ns:bert") || !strings.Contains(msg, "modelx hold release") {
			t.Errorf("DELETE %s: %s names neither the holders nor how to release", path, msg)
		}
	}
	h.expect(h.do(http.MethodDelete, "/serve/other/manifests/"+string(other), nil, nil), http.StatusAccepted, "")
	h.expect(h.do(http.MethodDelete, "/"+model+"/manifests/v1", nil, nil), http.StatusAccepted, "")

	// Released, the version goes at the next collection.
	h.expect(h.do(http.MethodDelete, "/"+model+"/holds/backup", nil, nil), http.StatusNoContent, "")
	h.expect(h.do(http.MethodDelete, "/"+model+"/holds/backup", nil, nil), http.StatusNotFound, spec.ErrorHoldUnknown)
	if !h.versionReadable(model, old) {
		t.Fatal("one hold released, the other gone too")
	}
	h.expect(h.do(http.MethodDelete, "/"+model+"/holds/ctl:prod:ns:bert", nil, nil), http.StatusNoContent, "")
	if got := h.holds(model); len(got) != 0 {
		t.Fatalf("holds after the releases: %+v", got)
	}
	h.pastGrace()
	if res := h.collect(); res.ManifestsDeleted != 3 || res.ManifestsHeld != 0 {
		t.Fatalf("collection after the release: %+v, want the 3 untagged versions deleted", res)
	}
	h.expect(h.do(http.MethodGet, "/"+model+"/manifests/"+string(old), nil, nil), http.StatusNotFound, spec.ErrorManifestUnknown)
}

// TestHoldLimits: a default ttl capped by MaxHoldTTL, holds per model
// bounded, expired holds out of the count and the listing, and dropped by
// collection, which then deletes what they held.
func TestHoldLimits(t *testing.T) {
	h := newHarness(t, backends(t)[0], registry.Options{GCGracePeriod: time.Nanosecond, MaxHoldTTL: 24 * time.Hour})
	const model = "lim/m"
	old := h.movedVersion(model, "limits")
	if got := h.putHold(model, "a", holdBody("", old), http.StatusCreated); got.Expires.Sub(got.Renewed) != 24*time.Hour {
		t.Fatalf("default ttl under --max-hold-ttl 24h: %v", got.Expires.Sub(got.Renewed))
	}
	r := h.do(http.MethodPut, "/"+model+"/holds/a", holdBody("25h", old), nil)
	h.expect(r, http.StatusBadRequest, spec.ErrorHoldInvalid)
	if msg := r.apiError(t).Message; !strings.Contains(msg, "24h") || !strings.Contains(msg, "--max-hold-ttl") {
		t.Errorf("ttl over the limit: %s", msg)
	}

	// A full model: spec.MaxHoldsPerModel live holds, and one expired.
	now := time.Now().UTC()
	doc := struct {
		Holds []spec.Hold `json:"holds"`
	}{}
	for i := range spec.MaxHoldsPerModel {
		doc.Holds = append(doc.Holds, spec.Hold{Holder: fmt.Sprintf("h%04d", i), Digests: []digest.Digest{old}, Created: now, Renewed: now, Expires: now.Add(time.Hour)})
	}
	doc.Holds = append(doc.Holds, spec.Hold{Holder: "lapsed", Digests: []digest.Digest{old}, Created: now.Add(-2 * time.Hour), Renewed: now.Add(-2 * time.Hour), Expires: now.Add(-time.Hour)})
	data, _ := json.Marshal(doc)
	h.putObject("models/"+model+"/holds.json", data)
	if got := h.holds(model); len(got) != spec.MaxHoldsPerModel || slices.ContainsFunc(got, func(x spec.Hold) bool { return x.Holder == "lapsed" }) {
		t.Fatalf("listed %d holds, want %d without the expired one", len(got), spec.MaxHoldsPerModel)
	}
	r = h.do(http.MethodPut, "/"+model+"/holds/one-more", holdBody("1h", old), nil)
	h.expect(r, http.StatusConflict, spec.ErrorConflict)
	if msg := r.apiError(t).Message; !strings.Contains(msg, fmt.Sprint(spec.MaxHoldsPerModel)) || !strings.Contains(msg, "release") {
		t.Errorf("one hold too many: %s", msg)
	}
	h.expect(h.do(http.MethodPut, "/"+model+"/holds/lapsed", holdBody("1h", old), nil), http.StatusConflict, spec.ErrorConflict)
	h.putHold(model, "h0001", holdBody("2h", old), http.StatusOK) // renewing stays possible
	h.expect(h.do(http.MethodDelete, "/"+model+"/holds/lapsed", nil, nil), http.StatusNotFound, spec.ErrorHoldUnknown)
	h.expect(h.do(http.MethodDelete, "/"+model+"/holds/h0000", nil, nil), http.StatusNoContent, "")
	h.putHold(model, "one-more", holdBody("1h", old), http.StatusCreated)

	// Expired holds hold nothing: collection drops them and the version.
	doc.Holds = []spec.Hold{
		{Holder: "lapsed", Digests: []digest.Digest{old}, Created: now.Add(-2 * time.Hour), Renewed: now.Add(-2 * time.Hour), Expires: now.Add(-time.Hour)},
		{Holder: "also-lapsed", Digests: []digest.Digest{old}, Created: now.Add(-2 * time.Hour), Renewed: now.Add(-2 * time.Hour), Expires: now.Add(-time.Minute)},
	}
	data, _ = json.Marshal(doc)
	h.putObject("models/"+model+"/holds.json", data)
	h.expect(h.do(http.MethodDelete, "/"+model+"/manifests/"+string(old), nil, nil), http.StatusNotFound, spec.ErrorManifestUnknown) // not held, and untagged
	h.pastGrace()
	if res := h.collect(); res.ManifestsDeleted != 1 || res.HoldsExpired != 2 || res.ManifestsHeld != 0 {
		t.Fatalf("collection with expired holds: %+v", res)
	}
	stored, _, err := h.store.Reader(context.Background(), "models/"+model+"/holds.json", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer stored.Close()
	if err := json.NewDecoder(stored).Decode(&doc); err != nil || len(doc.Holds) != 0 {
		t.Fatalf("holds document after the collection: %+v %v", doc, err)
	}
	// An expired hold put again is a new hold.
	_, cur := h.pushModel(model, "v2", map[string]string{"w": "current"})
	if got := h.putHold(model, "lapsed", holdBody("1h", cur), http.StatusCreated); !got.Created.Equal(got.Renewed) {
		t.Fatalf("a hold put over an expired one keeps the old creation time: %+v", got)
	}
}

// TestHoldHostileInput: bad holders, bad bodies, too many digests, a ttl
// too long and digests of other models are refused with 400 or 404 naming
// the rule or the digest, and change nothing.
func TestHoldHostileInput(t *testing.T) {
	h := newHarness(t, backends(t)[0], registry.Options{})
	_, d := h.pushModel("host/m", "v1", map[string]string{"w": "mine"})
	_, foreign := h.pushModel("host/other", "v1", map[string]string{"w": "theirs"})
	missing := digest.FromString("never pushed")
	nine := []digest.Digest{d}
	for i := range 8 {
		nine = append(nine, digest.FromString(fmt.Sprint(i)))
	}
	before := h.snapshot()
	for _, tc := range []struct {
		name, holder string
		body         []byte
		status       int
		code         spec.ErrorCode
		says         string
	}{
		{"holder starting with a dot", ".hidden", holdBody("1h", d), 400, spec.ErrorNameInvalid, "starting with a letter or digit"},
		{"holder ..", "..", holdBody("1h", d), 400, spec.ErrorNameInvalid, "letters, digits"},
		{"holder with a space", "a%20b", holdBody("1h", d), 400, spec.ErrorNameInvalid, "letters, digits"},
		{"holder with an encoded slash", "a%2Fb", holdBody("1h", d), 400, spec.ErrorNameInvalid, "letters, digits"},
		{"holder with unicode", "h%C3%A4lter", holdBody("1h", d), 400, spec.ErrorNameInvalid, "letters, digits"},
		{"holder with markup", "%3Cscript%3E", holdBody("1h", d), 400, spec.ErrorNameInvalid, "letters, digits"},
		{"holder too long", strings.Repeat("h", spec.MaxHolderLength+1), holdBody("1h", d), 400, spec.ErrorNameInvalid, "at most 253"},
		{"not JSON", "ctl", []byte("digests: [x]"), 400, spec.ErrorHoldInvalid, `{"digests"`},
		{"two documents", "ctl", append(holdBody("1h", d), holdBody("1h", d)...), 400, spec.ErrorHoldInvalid, "more than one"},
		{"unknown field", "ctl", []byte(`{"digests":["` + string(d) + `"],"holder":"other"}`), 400, spec.ErrorHoldInvalid, "holder"},
		{"no digest", "ctl", holdBody("1h"), 400, spec.ErrorHoldInvalid, "names no digest"},
		{"too many digests", "ctl", holdBody("1h", nine...), 400, spec.ErrorHoldInvalid, "over the limit of 8"},
		{"malformed digest", "ctl", holdBody("1h", "sha256:abc"), 400, spec.ErrorDigestInvalid, "sha256:abc"},
		{"uppercase digest", "ctl", holdBody("1h", digest.Digest(strings.ToUpper(string(d)))), 400, spec.ErrorDigestInvalid, "invalid"},
		{"negative ttl", "ctl", holdBody("-1h", d), 400, spec.ErrorHoldInvalid, "positive"},
		{"zero ttl", "ctl", holdBody("0s", d), 400, spec.ErrorHoldInvalid, "positive"},
		{"ttl not a duration", "ctl", holdBody("forever", d), 400, spec.ErrorHoldInvalid, "forever"},
		{"ttl too long", "ctl", holdBody("721h", d), 400, spec.ErrorHoldInvalid, "720h (--max-hold-ttl)"},
		{"another model's digest", "ctl", holdBody("1h", d, foreign), 404, spec.ErrorManifestUnknown, string(foreign)},
		{"a digest never pushed", "ctl", holdBody("1h", missing), 404, spec.ErrorManifestUnknown, string(missing)},
		{"a body too large", "ctl", []byte(`{"digests":["` + string(d) + `"],"ttl":"1h"` + strings.Repeat(" ", spec.MaxHoldRequestSize) + `}`), 413, spec.ErrorTooLarge, "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(http.MethodPut, "/host/m/holds/"+tc.holder, tc.body, nil)
			h.expect(r, tc.status, tc.code)
			if msg := r.apiError(t).Message; !strings.Contains(msg, tc.says) {
				t.Errorf("message %q does not say %q", msg, tc.says)
			}
		})
	}
	for _, holder := range []string{".hidden", "a%2Fb", strings.Repeat("h", spec.MaxHolderLength+1)} {
		h.expect(h.do(http.MethodDelete, "/host/m/holds/"+holder, nil, nil), http.StatusBadRequest, spec.ErrorNameInvalid)
	}
	h.expect(h.do(http.MethodDelete, "/host/m/holds/nobody", nil, nil), http.StatusNotFound, spec.ErrorHoldUnknown)
	h.expect(h.do(http.MethodGet, "/Host/m/holds", nil, nil), http.StatusBadRequest, spec.ErrorNameInvalid)
	if after := h.snapshot(); !maps.Equal(before, after) {
		t.Fatalf("refused hold requests changed the store:\nbefore %v\nafter  %v", before, after)
	}
	// The longest holder name, and one of every allowed character, are fine.
	h.putHold("host/m", strings.Repeat("h", spec.MaxHolderLength), holdBody("1h", d), http.StatusCreated)
	h.putHold("host/m", "A-z_0.9:x", holdBody("1h", d), http.StatusCreated)
}

// holdPolicyOptions are the tenants of tenantOptions, and the robot "ctl",
// which may hold team-a's models and nothing else.
func holdPolicyOptions(t *testing.T) registry.Options {
	opts := tenantOptions(t)
	opts.Policy.Rules = append(opts.Policy.Rules, auth.Rule{Repositories: []string{"team-a/*"}, Actions: []auth.Action{auth.Hold}, Robots: []string{"ctl"}})
	if err := opts.Policy.Validate(); err != nil {
		t.Fatal(err)
	}
	return opts
}

// TestHoldAuthorization: listing holds needs pull; putting and releasing
// need hold, which push, delete and admin imply; hold implies pull and
// nothing more; no tenant holds, lists or releases another's.
func TestHoldAuthorization(t *testing.T) {
	h := newHarness(t, backends(t)[0], holdPolicyOptions(t))
	a := h.as("team-a")
	m, d := a.pushModel("team-a/m", "v1", map[string]string{"w": "a"})
	_, pub := h.as("team-b").pushModel("public/p", "v1", map[string]string{"w": "public"})

	for _, tc := range []struct {
		who, method, path string // who "" is anonymous
		body              []byte
		status            int
	}{
		{"team-b", http.MethodPut, "/team-a/m/holds/b", holdBody("1h", d), http.StatusForbidden},
		{"", http.MethodPut, "/team-a/m/holds/x", holdBody("1h", d), http.StatusUnauthorized},
		{"", http.MethodPut, "/public/p/holds/x", holdBody("1h", pub), http.StatusUnauthorized}, // anonymous pull is not hold
		{"team-b", http.MethodGet, "/team-a/m/holds", nil, http.StatusForbidden},
		{"", http.MethodGet, "/team-a/m/holds", nil, http.StatusUnauthorized},
		{"ctl", http.MethodPut, "/team-b/x/holds/ctl", holdBody("1h", d), http.StatusForbidden},
		{"ctl", http.MethodPut, "/team-a/m/holds/ctl", holdBody("1h", d), http.StatusCreated},
		{"ctl", http.MethodGet, "/team-a/m/holds", nil, http.StatusOK}, // hold implies pull
		{"ctl", http.MethodGet, "/team-a/m/manifests/" + string(d), nil, http.StatusOK},
		{"ctl", http.MethodDelete, "/team-a/m/manifests/v1", nil, http.StatusForbidden},
		{"ctl", http.MethodPut, "/team-a/m/manifests/v2", mustJSON(&m), http.StatusForbidden},
		{"team-b", http.MethodDelete, "/team-a/m/holds/ctl", nil, http.StatusForbidden},
		{"team-a", http.MethodPut, "/team-a/m/holds/team-a", holdBody("1h", d), http.StatusCreated}, // push implies hold
		{"team-a", http.MethodDelete, "/team-a/m/holds/team-a", nil, http.StatusNoContent},
		{"", http.MethodGet, "/public/p/holds", nil, http.StatusOK},
		{"admin", http.MethodDelete, "/team-a/m/holds/ctl", nil, http.StatusNoContent},
	} {
		r := h.as(tc.who).do(tc.method, tc.path, tc.body, nil)
		if r.status != tc.status {
			t.Errorf("%s %s as %q: %d %s, want %d", tc.method, tc.path, tc.who, r.status, r.body, tc.status)
		}
	}
	if got := a.holds("team-a/m"); len(got) != 0 {
		t.Fatalf("holds left: %+v", got)
	}
}

// TestUnreadableHolds: a corrupt holds document says nothing about what it
// holds, so the model is kept whole by collection and cannot be deleted,
// and the answers say which object to repair.
func TestUnreadableHolds(t *testing.T) {
	h := newHarness(t, backends(t)[0], registry.Options{GCGracePeriod: time.Nanosecond})
	const model = "broken/holds"
	old := h.movedVersion(model, "corrupt")
	h.putObject("models/"+model+"/holds.json", []byte(`{"holds": [{"holder": "x", "dig`))
	h.pastGrace()
	res := h.collect()
	if res.ModelsSkipped != 1 || res.ManifestsDeleted != 0 || len(res.Problems) != 1 || !strings.Contains(res.Problems[0], "holds cannot be read") {
		t.Fatalf("collection with corrupt holds: %+v", res)
	}
	if !h.versionReadable(model, old) {
		t.Fatal("a version of a model with corrupt holds was collected")
	}
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/" + model + "/holds"},
		{http.MethodDelete, "/" + model + "/index"},
		{http.MethodDelete, "/" + model + "/manifests/" + string(old)},
		{http.MethodDelete, "/" + model + "/holds/x"},
	} {
		r := h.do(tc.method, tc.path, nil, nil)
		h.expect(r, http.StatusInternalServerError, spec.ErrorInternal)
		if msg := r.apiError(t).Message; !strings.Contains(msg, "models/"+model+"/holds.json") || !strings.Contains(msg, "restore or remove") {
			t.Errorf("%s %s: %s does not say what to repair", tc.method, tc.path, msg)
		}
	}
}
