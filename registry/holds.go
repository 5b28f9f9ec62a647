package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
)

// Holds: named references that keep manifests from garbage collection.
//
// A model's holds are one small document, models/REPO/NAME/holds.json,
// changed only by compare-and-swap writes, so concurrent puts and releases
// through any number of replicas are never lost, and a reader sees the
// old document or the new one. An expired hold holds nothing: it is left
// out of listings, counts as absent, and is dropped by the next write of
// the document or by garbage collection.
//
// Holds meet garbage collection as pushes do (see gcStateKey): a
// collection reads a model's holds again within its sweep lease, before
// it deletes an untagged manifest; a hold PUT reads the collection state
// before it checks the manifests, and again after it has written the hold,
// and, if a sweep overlapped, checks the manifests and their blobs again
// and takes back the digests a sweep deleted. So a hold PUT that succeeds
// never names a deleted manifest.

// DefaultMaxHoldTTL is the longest a hold may last when Options.MaxHoldTTL
// is not set.
const DefaultMaxHoldTTL = 720 * time.Hour

// maxHoldsDocSize bounds the holds document read: MaxHoldsPerModel holds
// of the longest holders and most digests take about 1 MiB.
const maxHoldsDocSize = 4 << 20

// holdsDoc is the document at holdsKey.
type holdsDoc struct {
	Holds []spec.Hold `json:"holds"`
}

// find returns the position of the holder's hold, expired or not, or -1.
func (doc *holdsDoc) find(holder string) int {
	return slices.IndexFunc(doc.Holds, func(h spec.Hold) bool { return h.Holder == holder })
}

// live returns the unexpired holds, sorted by holder.
func (doc *holdsDoc) live(now time.Time) []spec.Hold {
	out := []spec.Hold{}
	for _, h := range doc.Holds {
		if !h.Expired(now) {
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b spec.Hold) int { return strings.Compare(a.Holder, b.Holder) })
	return out
}

// holders returns the holders of unexpired holds on d, or on anything
// when d is "", sorted.
func (doc *holdsDoc) holders(d digest.Digest, now time.Time) []string {
	var out []string
	for _, h := range doc.live(now) {
		if d == "" || h.Holds(d, now) {
			out = append(out, h.Holder)
		}
	}
	return out
}

// dropExpired removes the expired holds and reports how many went.
func (doc *holdsDoc) dropExpired(now time.Time) int {
	before := len(doc.Holds)
	doc.Holds = slices.DeleteFunc(doc.Holds, func(h spec.Hold) bool { return h.Expired(now) })
	return before - len(doc.Holds)
}

// readHolds returns the model's holds document and its ETag; a missing
// document reads as no holds and no ETag.
func (reg *Registry) readHolds(ctx context.Context, repo, name string) (holdsDoc, string, error) {
	key := holdsKey(repo, name)
	data, info, err := storage.ReadAll(ctx, reg.store, key, maxHoldsDocSize)
	if errors.Is(err, storage.ErrNotFound) {
		return holdsDoc{}, "", nil
	}
	if err == nil {
		var doc holdsDoc
		if err = json.Unmarshal(data, &doc); err == nil {
			return doc, info.ETag, nil
		}
	} else if !errors.Is(err, storage.ErrTooLarge) {
		return holdsDoc{}, "", internal("read holds", err)
	}
	// Corrupt or too large: nothing says what it holds, so nothing of the
	// model may go, and only an operator can repair it.
	reg.log.ErrorContext(ctx, "holds cannot be read", "key", key, "error", err)
	return holdsDoc{}, "", spec.Errorf(spec.ErrorInternal, "the holds of model %s/%s (%s) are corrupt or too large to read: restore or remove that object in storage (docs/operations.md, Backup and restore); until then the model cannot be deleted and garbage collection keeps it whole", repo, name, key)
}

// updateHolds applies mutate to the model's holds document with
// compare-and-swap writes, retrying on conflict. mutate reports whether
// it changed anything; an unchanged document is not written. Expired holds
// are dropped from every document written.
func (reg *Registry) updateHolds(ctx context.Context, repo, name string, mutate func(*holdsDoc) (bool, error)) error {
	key := holdsKey(repo, name)
	for attempt := range maxUpdateAttempts {
		doc, etag, err := reg.readHolds(ctx, repo, name)
		if err != nil {
			return err
		}
		changed, err := mutate(&doc)
		if err != nil || !changed {
			return err
		}
		doc.dropExpired(reg.now())
		if doc.Holds == nil {
			doc.Holds = []spec.Hold{}
		}
		data, err := json.Marshal(doc)
		if err != nil {
			return err
		}
		if etag == "" {
			err = reg.store.PutIfAbsent(ctx, key, data)
		} else {
			err = reg.store.PutIfMatch(ctx, key, data, etag)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, storage.ErrPreconditionFailed) {
			return internal("write holds", err)
		}
		if err := retryBackoff(ctx, attempt); err != nil {
			return err
		}
	}
	return spec.Errorf(spec.ErrorConflict, "the holds of %s/%s changed on every one of %d attempts; retry the request", repo, name, maxUpdateAttempts)
}

// holdParams returns the validated model and holder of the request path.
func holdParams(r *http.Request) (repo, name, holder string, err error) {
	if repo, name, err = model(r); err != nil {
		return "", "", "", err
	}
	holder = chi.URLParam(r, "holder")
	return repo, name, holder, spec.ValidateHolder(holder)
}

// listHolds answers the model's unexpired holds: GET /{repository}/{name}/holds.
func (reg *Registry) listHolds(w http.ResponseWriter, r *http.Request) error {
	repo, name, err := model(r)
	if err != nil {
		return err
	}
	doc, _, err := reg.readHolds(r.Context(), repo, name)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-cache")
	return writeJSON(w, http.StatusOK, spec.HoldList{Holds: doc.live(reg.now())})
}

// holdTTL applies the default to a ttl not asked for and refuses one over
// the registry's limit.
func (reg *Registry) holdTTL(asked time.Duration) (time.Duration, error) {
	limit := reg.opts.MaxHoldTTL
	if asked == 0 {
		return min(spec.DefaultHoldTTL, limit), nil
	}
	if asked > limit {
		return 0, spec.Errorf(spec.ErrorHoldInvalid, "ttl %s is over this registry's limit of %s (--max-hold-ttl): ask for at most %s and put the hold again before it expires", shortDuration(asked), shortDuration(limit), shortDuration(limit))
	}
	return asked, nil
}

// shortDuration writes 720h for 720h0m0s and 10m for 10m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// putHold creates or replaces the holder's hold:
// PUT /{repository}/{name}/holds/{holder}. It answers 201 with the hold
// when it is new (or replaces an expired one), 200 when it replaces one.
func (reg *Registry) putHold(w http.ResponseWriter, r *http.Request) error {
	repo, name, holder, err := holdParams(r)
	if err != nil {
		return err
	}
	data, err := readRequestBody(r, spec.MaxHoldRequestSize, "the hold request", spec.ErrorHoldInvalid, "")
	if err != nil {
		return err
	}
	digests, ttl, err := spec.ParseHoldRequest(data)
	if err != nil {
		return err
	}
	if ttl, err = reg.holdTTL(ttl); err != nil {
		return err
	}
	ctx := r.Context()
	before, _, err := reg.readGCState(ctx)
	if err != nil {
		return err
	}
	sweptBefore := before.sweeping(reg.now())
	if err := reg.checkHeldManifests(ctx, repo, name, digests); err != nil {
		return err
	}
	var put spec.Hold
	created := false
	err = reg.updateHolds(ctx, repo, name, func(doc *holdsDoc) (bool, error) {
		now := reg.now()
		put = spec.Hold{Holder: holder, Digests: digests, Created: now.UTC(), Renewed: now.UTC(), Expires: now.Add(ttl).UTC()}
		i := doc.find(holder)
		created = i < 0 || doc.Holds[i].Expired(now)
		if !created {
			put.Created = doc.Holds[i].Created
		} else if n := len(doc.live(now)); n >= spec.MaxHoldsPerModel {
			return false, spec.Errorf(spec.ErrorConflict, "model %s/%s has %d holds, the most a model may have: release the holds no longer needed (modelx hold release), or let them expire", repo, name, n)
		}
		if i >= 0 {
			doc.Holds[i] = put
		} else {
			doc.Holds = append(doc.Holds, put)
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	if err := reg.confirmHoldAfterSweeps(ctx, before, sweptBefore, repo, name, put); err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return writeJSON(w, status, put)
}

// checkHeldManifests refuses a hold on digests that are not manifests of
// the model, naming them.
func (reg *Registry) checkHeldManifests(ctx context.Context, repo, name string, digests []digest.Digest) error {
	var missing []string
	for _, d := range digests {
		if _, err := reg.store.Stat(ctx, manifestKey(repo, name, d)); errors.Is(err, storage.ErrNotFound) {
			missing = append(missing, string(d))
		} else if err != nil {
			return internal("stat manifest", err)
		}
	}
	if len(missing) > 0 {
		return spec.Errorf(spec.ErrorManifestUnknown, "model %s/%s has no manifest %s: a hold names only versions of its own model", repo, name, strings.Join(missing, ", ")).
			WithDetail(map[string]any{"missing": missing})
	}
	return nil
}

// confirmHoldAfterSweeps makes sure that no garbage collection sweep
// deleted a held manifest, or a blob one names, since they were checked
// (see gcStateKey). If one did, it takes those digests out of the hold
// (unless the hold was put again since) and answers MANIFEST_UNKNOWN
// naming them.
func (reg *Registry) confirmHoldAfterSweeps(ctx context.Context, before gcState, sweptBefore bool, repo, name string, put spec.Hold) error {
	after, err := reg.afterSweeps(ctx)
	if err != nil {
		return err
	}
	if !sweptBefore && after.Generation == before.Generation {
		return nil // no sweep overlapped the check
	}
	var gone []digest.Digest
	for _, d := range put.Digests {
		ok, err := reg.manifestIntact(ctx, repo, name, d)
		if err != nil {
			return err
		}
		if !ok {
			gone = append(gone, d)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	if err := reg.updateHolds(ctx, repo, name, func(doc *holdsDoc) (bool, error) {
		i := doc.find(put.Holder)
		if i < 0 || !sameHold(doc.Holds[i], put) {
			return false, nil // put again or released since: not this request's
		}
		kept := slices.DeleteFunc(slices.Clone(put.Digests), func(d digest.Digest) bool { return slices.Contains(gone, d) })
		if len(kept) == 0 {
			doc.Holds = slices.Delete(doc.Holds, i, i+1)
		} else {
			doc.Holds[i].Digests = kept
		}
		return true, nil
	}); err != nil {
		return err
	}
	missing := make([]string, len(gone))
	for i, d := range gone {
		missing[i] = string(d)
	}
	return spec.Errorf(spec.ErrorManifestUnknown, "garbage collection deleted %s of %s/%s while the hold was being put; it is not held: hold a version that exists", strings.Join(missing, ", "), repo, name).
		WithDetail(map[string]any{"missing": missing})
}

// sameHold reports whether a stored hold is the one a request put.
func sameHold(a, b spec.Hold) bool {
	return a.Holder == b.Holder && a.Renewed.Equal(b.Renewed) && a.Expires.Equal(b.Expires) && slices.Equal(a.Digests, b.Digests)
}

// manifestIntact reports whether the model's manifest d is stored and
// every blob it names is linked to the model. A manifest that cannot be
// parsed counts as intact: garbage collection keeps its model whole.
func (reg *Registry) manifestIntact(ctx context.Context, repo, name string, d digest.Digest) (bool, error) {
	data, _, err := storage.ReadAll(ctx, reg.store, manifestKey(repo, name, d), reg.opts.MaxManifestSize)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, internal("read manifest", err)
	}
	mt, err := parseStoredManifest(data)
	if err != nil {
		return true, nil
	}
	err = reg.checkContents(ctx, repo, name, mt)
	var apiErr *spec.Error
	if errors.As(err, &apiErr) && apiErr.Code == spec.ErrorManifestBlobUnknown {
		return false, nil
	}
	return err == nil, err
}

// releaseHold removes the holder's hold: DELETE /{repository}/{name}/holds/{holder}.
// An absent or expired hold answers 404 HOLD_UNKNOWN.
func (reg *Registry) releaseHold(w http.ResponseWriter, r *http.Request) error {
	repo, name, holder, err := holdParams(r)
	if err != nil {
		return err
	}
	found := false
	err = reg.updateHolds(r.Context(), repo, name, func(doc *holdsDoc) (bool, error) {
		i := doc.find(holder)
		if i < 0 {
			found = false
			return false, nil
		}
		found = !doc.Holds[i].Expired(reg.now())
		doc.Holds = slices.Delete(doc.Holds, i, i+1)
		return true, nil
	})
	if err != nil {
		return err
	}
	if !found {
		return spec.Errorf(spec.ErrorHoldUnknown, "model %s/%s has no hold %q: it was released, or it expired", repo, name, holder)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// maxHoldersNamed bounds the holders an error message names.
const maxHoldersNamed = 5

// refuseHeld refuses to delete what unexpired holds keep: the manifest d,
// or, when d is "", the whole model. The error names the holders and how
// to release them.
func (reg *Registry) refuseHeld(ctx context.Context, repo, name string, d digest.Digest) error {
	doc, _, err := reg.readHolds(ctx, repo, name)
	if err != nil {
		return err
	}
	holders := doc.holders(d, reg.now())
	if len(holders) == 0 {
		return nil
	}
	named := strings.Join(holders[:min(len(holders), maxHoldersNamed)], ", ")
	if len(holders) > maxHoldersNamed {
		named += fmt.Sprintf(" and %d more", len(holders)-maxHoldersNamed)
	}
	what := "version " + string(d) + " of " + repo + "/" + name + " is"
	if d == "" {
		what = "model " + repo + "/" + name + " has versions"
	}
	return spec.Errorf(spec.ErrorConflict, "%s held by %s: release the holds first (modelx hold release REGISTRY/%s/%s HOLDER, or DELETE /%s/%s/holds/HOLDER) or let them expire", what, named, repo, name, repo, name).
		WithDetail(map[string]any{"holders": holders[:min(len(holders), 100)]})
}
