package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
)

// Garbage collection, over the whole registry or one model.
//
//   - A manifest is garbage when no tag points to it and no unexpired
//     hold names it (holds.go).
//   - A link is garbage when no remaining manifest of its model names its
//     blob.
//   - A blob is garbage when no remaining manifest of any model names it
//     and no remaining link points to it.
//   - Staged uploads and upload claims are garbage once old; so is an OCI
//     upload session whose every part is old.
//   - Expired holds are garbage.
//
// OCI manifests (oci.go) are kept like modelx manifests, and also when a
// kept OCI index lists them or when the manifest they refer to (their
// subject) is kept: an image index's manifests and an artifact's
// signatures are pushed by digest, untagged, and live as long as what
// holds them. A version and its views (ociview.go, modelxview.go,
// imageview.go) keep each other: a view lives as long as its version, and
// a view a hold names keeps the version whose blobs its derived layers are
// made from. An OCI manifest names its config and layers as blobs. A
// referrer or view record goes once its manifest is gone, and a
// derived-layer record once no kept manifest names its layer.
//
// A collection runs in three phases, each a method of gcRun:
//
//  1. mark (no lease): list every index, holds document, manifest, link
//     and staged upload in scope, and mark the blobs that the manifests
//     which stay name, per model.
//  2. sweepManifests (under the sweep lease, gcstate.go, so pushes wait
//     before they tag): read each model's index and holds again and delete
//     the manifests still unkept; mark the manifests stored since the
//     listing; delete the links no marked manifest of their model needs,
//     old staged uploads and expired holds.
//  3. sweepBlobs (same lease, whole registry only): delete the blobs that
//     no marked manifest names and no kept link points to, with the links
//     written to them meanwhile, and expired upload claims.
//
// A manifest, link, staged upload, blob or claim that the listing found
// old is deleted only if its time, read again (stillOld), is still old and
// the lease still holds (mayDelete).
//
// A model's collection (what its owners may ask for) deletes only that
// model's manifests, links and staged uploads; the bytes of blobs it no
// longer holds are freed by the next collection of the whole registry,
// which knows whether another model still holds them.

// maxReported bounds the problems one collection lists in its result; the
// log has all of them.
const maxReported = 50

// gcScope is what one collection covers: the whole registry, or one model.
type gcScope struct {
	repo, name string // empty for the whole registry
}

func (s gcScope) whole() bool { return s.repo == "" }

func (s gcScope) prefix() string {
	if s.whole() {
		return modelsPrefix
	}
	return modelPrefix(s.repo, s.name)
}

func (s gcScope) String() string {
	if s.whole() {
		return "registry"
	}
	return s.repo + "/" + s.name
}

// storedObject is a stored manifest, link or staged upload found by listing.
type storedObject struct {
	key     string
	model   string // "REPO/NAME"
	digest  digest.Digest
	modTime time.Time
	size    int64
}

// gcRun is the state of one collection.
type gcRun struct {
	reg    *Registry
	scope  gcScope
	cutoff time.Time
	res    spec.GCResult

	tagged    map[string]bool                   // manifest keys some tag points to
	held      map[string]bool                   // manifest keys some unexpired hold names
	expired   map[gcScope]bool                  // models whose holds document has expired holds
	manifests []storedObject                    // every stored manifest in scope
	links     []storedObject                    // every link in scope
	staged    []storedObject                    // every staged upload in scope
	sessions  map[string][]storedObject         // session prefix → its objects, every OCI upload session in scope
	records   []storedObject                    // every OCI referrer and view record in scope
	derived   []storedObject                    // every derived-layer record in scope
	keptWith  map[string][]string               // manifest key → the keys of the manifests kept with it: its referrers, views and image form
	skipped   map[string]bool                   // models kept whole: something of theirs is unreadable
	marked    map[string]bool                   // manifest keys whose blobs are marked
	refs      map[string]map[digest.Digest]bool // model → blobs its live manifests name
	solid     map[string]map[digest.Digest]bool // the same, for manifests kept for more than their youth
	keptNow   map[string]*keptBy                // model → what kept its manifests at the sweep's re-read
	mayDelete func() bool
}

// CollectGarbage collects the whole registry: manifests no tag points to,
// links no manifest of their model needs, and blobs no model holds.
func (reg *Registry) CollectGarbage(ctx context.Context) (spec.GCResult, error) {
	return reg.collect(ctx, gcScope{})
}

// CollectModelGarbage collects one model: its manifests no tag points to
// and its links no remaining manifest of it needs. Blob bytes are freed
// by the next collection of the whole registry.
func (reg *Registry) CollectModelGarbage(ctx context.Context, repo, name string) (spec.GCResult, error) {
	return reg.collect(ctx, gcScope{repo: repo, name: name})
}

func (reg *Registry) collect(ctx context.Context, scope gcScope) (res spec.GCResult, err error) {
	start, began := reg.now(), time.Now() // start on the registry's clock for the cutoff; began on the real one for durations
	defer func() { reg.metrics.recordGC(res, time.Since(began), err) }()
	run := newGCRun(reg, scope, start)
	if err := run.mark(ctx); err != nil {
		return run.res, err
	}
	// From here until the last delete, pushes wait for this sweep before
	// they tag (see gcStateKey).
	sw, err := reg.beginSweep(ctx)
	if errors.Is(err, errSweepRunning) {
		return run.res, spec.Errorf(spec.ErrorConflict, "another garbage collection is running; try again when it has finished")
	}
	if err != nil {
		return run.res, err
	}
	defer func() {
		if err := sw.end(ctx); err != nil {
			reg.log.ErrorContext(ctx, "garbage collection could not release its sweep lease", "error", err)
		}
	}()
	run.mayDelete = sw.mayDelete
	if err := run.sweepManifests(ctx); err != nil {
		return run.res, err
	}
	if scope.whole() {
		if err := run.sweepBlobs(ctx); err != nil {
			return run.res, err
		}
	}
	run.res.DurationSeconds = time.Since(began).Seconds()
	run.logDone(ctx)
	return run.res, nil
}

// newGCRun starts a collection of scope at start.
func newGCRun(reg *Registry, scope gcScope, start time.Time) *gcRun {
	run := &gcRun{
		reg: reg, scope: scope, cutoff: start.Add(-reg.opts.GCGracePeriod),
		tagged: map[string]bool{}, held: map[string]bool{}, expired: map[gcScope]bool{},
		skipped: map[string]bool{}, marked: map[string]bool{},
		sessions: map[string][]storedObject{}, keptWith: map[string][]string{},
		refs: map[string]map[digest.Digest]bool{}, solid: map[string]map[digest.Digest]bool{}, keptNow: map[string]*keptBy{},
	}
	run.res.Scope = scope.String()
	run.res.GracePeriodSeconds = reg.opts.GCGracePeriod.Seconds()
	return run
}

// mark is the first phase, before the lease: it lists what is in scope
// and marks the blobs named by every manifest that stays (tagged, held,
// young, or of a model kept whole).
func (run *gcRun) mark(ctx context.Context) error {
	if err := run.list(ctx); err != nil {
		return err
	}
	for _, mo := range run.manifests {
		young := !mo.modTime.Before(run.cutoff)
		if run.tagged[mo.key] || run.held[mo.key] || young || run.skipped[mo.model] {
			if run.held[mo.key] && !run.tagged[mo.key] && !young && !run.skipped[mo.model] {
				run.res.ManifestsHeld++
			}
			onlyYoung := young && !run.tagged[mo.key] && !run.held[mo.key] && !run.skipped[mo.model]
			if onlyYoung {
				run.res.ManifestsYoung++
			}
			if err := run.markManifest(ctx, mo, onlyYoung); err != nil {
				return err
			}
		}
	}
	return nil
}

// sweepManifests is the second phase, within the lease: it deletes the
// manifests that are still unkept when read again, marks the manifests
// stored since the listing, and then deletes the links no marked manifest
// needs, old staged uploads and expired holds.
func (run *gcRun) sweepManifests(ctx context.Context) error {
	for _, step := range []func(context.Context) error{run.deleteUnkeptManifests, run.markNewManifests, run.deleteUnneededLinks, run.deleteOldStaged, run.deleteOldSessions, run.deleteOrphanRecords, run.dropExpiredHolds} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return nil
}

// sweepBlobs is the last phase, within the lease and only for the whole
// registry: it deletes the blobs no model needs any more, and expired
// upload claims.
func (run *gcRun) sweepBlobs(ctx context.Context) error {
	if err := run.deleteUnreferencedBlobs(ctx); err != nil {
		return err
	}
	return run.deleteExpiredClaims(ctx)
}

// logDone logs the result of a finished collection.
func (run *gcRun) logDone(ctx context.Context) {
	res := run.res
	run.reg.log.InfoContext(ctx, "garbage collection done", "scope", res.Scope,
		"manifests_deleted", res.ManifestsDeleted, "links_deleted", res.LinksDeleted,
		"blobs_deleted", res.BlobsDeleted, "bytes_freed", res.BytesFreed, "models_skipped", len(run.skipped),
		"manifests_held", res.ManifestsHeld, "holds_expired", res.HoldsExpired,
		"manifests_young", res.ManifestsYoung, "links_young", res.LinksYoung,
		"blobs_young", res.BlobsYoung, "bytes_young", res.BytesYoung)
}

// errSweepLost stops a collection whose lease may have run out.
var errSweepLost = fmt.Errorf("garbage collection stopped: its sweep lease in %s could not be renewed in time", gcStateKey)

// skip keeps a model whole and reports why.
func (run *gcRun) skip(ctx context.Context, model, why string) {
	if !run.skipped[model] {
		run.skipped[model] = true
		run.res.ModelsSkipped++
	}
	run.reg.log.WarnContext(ctx, "garbage collection keeps a model whole", "model", model, "reason", why)
	if len(run.res.Problems) < maxReported {
		run.res.Problems = append(run.res.Problems, model+": "+why)
	}
}

// list reads every index and holds document and lists every manifest,
// link and staged upload in scope.
func (run *gcRun) list(ctx context.Context) error {
	err := run.reg.store.List(ctx, run.scope.prefix(), func(info storage.Info) error {
		repo, name, rest, ok := parseModelKey(info.Key)
		if !ok {
			return nil
		}
		model := repo + "/" + name
		obj := storedObject{key: info.Key, model: model, modTime: info.ModTime, size: info.Size}
		switch {
		case rest == indexFile:
			idx, _, err := run.reg.readIndex(ctx, info.Key)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				run.skip(ctx, model, "its index cannot be read: "+err.Error())
				return nil
			}
			for _, desc := range idx.Manifests {
				if spec.ValidateDigest(desc.Digest) == nil {
					run.tagged[manifestKey(repo, name, desc.Digest)] = true
				}
			}
		case rest == holdsFile:
			held, expired, err := run.readHeld(ctx, repo, name)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				run.skip(ctx, model, "its holds cannot be read: "+err.Error())
				return nil
			}
			for key := range held {
				run.held[key] = true
			}
			if expired {
				run.expired[gcScope{repo: repo, name: name}] = true
			}
		case strings.HasPrefix(rest, manifestsDir):
			run.manifests = append(run.manifests, obj)
		case strings.HasPrefix(rest, linksDir):
			if obj.digest, ok = digestFromKey(info.Key); ok {
				run.links = append(run.links, obj)
			}
		case strings.HasPrefix(rest, stagedDir):
			run.staged = append(run.staged, obj)
		case strings.HasPrefix(rest, sessionsDir):
			if id, _, ok := strings.Cut(strings.TrimPrefix(rest, sessionsDir), "/"); ok {
				prefix := sessionPrefix(repo, name, id)
				run.sessions[prefix] = append(run.sessions[prefix], obj)
			}
		case strings.HasPrefix(rest, referrersDir), strings.HasPrefix(rest, viewsDir), strings.HasPrefix(rest, imagesDir):
			if keeps, kept, ok := recordPair(repo, name, info.Key); ok {
				run.records = append(run.records, obj)
				run.keptWith[keeps] = append(run.keptWith[keeps], kept)
				if !strings.HasPrefix(rest, referrersDir) {
					// A view keeps its source too: its derived layers are
					// made from the source's blobs (a hold may name the view).
					run.keptWith[kept] = append(run.keptWith[kept], keeps)
				}
			}
		case strings.HasPrefix(rest, derivedDir):
			if obj.digest, ok = digestFromKey(info.Key); ok {
				run.derived = append(run.derived, obj)
			}
		}
		return nil
	})
	if err != nil {
		return internal("list models", err)
	}
	return nil
}

// markManifest reads a manifest and marks the blobs it names as needed by its
// model; onlyYoung says the manifest is kept only because it is younger
// than the grace period. The manifests an OCI index lists, and those that
// refer to the manifest, are kept with it. An unreadable manifest keeps
// its model whole.
func (run *gcRun) markManifest(ctx context.Context, mo storedObject, onlyYoung bool) error {
	if run.marked[mo.key] {
		return nil
	}
	run.marked[mo.key] = true
	data, _, err := storage.ReadAll(ctx, run.reg.store, mo.key, run.reg.opts.MaxManifestSize)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	run.res.ManifestsKept++
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	var mt *manifestToStore
	if err == nil {
		mt, err = parseStoredManifest(data)
	}
	if err != nil {
		d, _ := digestFromKey(mo.key)
		run.skip(ctx, mo.model, fmt.Sprintf("manifest %s cannot be read: %v", d, err))
		return nil
	}
	addDigests(run.refs, mo.model, mt.blobs)
	if !onlyYoung {
		addDigests(run.solid, mo.model, mt.blobs)
	}
	repo, name, _, _ := parseModelKey(mo.key)
	kept := run.keptWith[mo.key]
	for _, d := range mt.manifests {
		kept = append(kept, manifestKey(repo, name, d))
	}
	for _, key := range kept {
		if err := run.markManifest(ctx, storedObject{key: key, model: mo.model}, onlyYoung); err != nil {
			return err
		}
	}
	return nil
}

// unionDigests merges the sets of every model into one.
func unionDigests(sets map[string]map[digest.Digest]bool) map[digest.Digest]bool {
	all := map[digest.Digest]bool{}
	for _, set := range sets {
		for d := range set {
			all[d] = true
		}
	}
	return all
}

// addDigests adds the digests of descs to the set of model in sets.
func addDigests(sets map[string]map[digest.Digest]bool, model string, descs []spec.Descriptor) {
	set := sets[model]
	if set == nil {
		set = map[digest.Digest]bool{}
		sets[model] = set
	}
	for _, desc := range descs {
		set[desc.Digest] = true
	}
}

// readHeld reads a model's holds: the keys of the manifests its unexpired
// holds name, and whether it has expired holds.
func (run *gcRun) readHeld(ctx context.Context, repo, name string) (map[string]bool, bool, error) {
	doc, _, err := run.reg.readHolds(ctx, repo, name)
	if err != nil {
		return nil, false, err
	}
	now, held, expired := run.reg.now(), map[string]bool{}, false
	for _, h := range doc.Holds {
		if h.Expired(now) {
			expired = true
			continue
		}
		for _, d := range h.Digests {
			if spec.ValidateDigest(d) == nil {
				held[manifestKey(repo, name, d)] = true
			}
		}
	}
	return held, expired, nil
}

// keptBy is what keeps a model's manifests, by manifest key.
type keptBy struct {
	tagged, held map[string]bool
}

// keptNowBy reads the model's index and holds again within the lease: a
// push may have tagged the manifest, or a holder held it, since the
// listing. It says whether the manifest is tagged, and whether it is held
// (untagged). A model whose index or holds cannot be read is skipped.
func (run *gcRun) keptNowBy(ctx context.Context, mo storedObject) (tagged, held bool, err error) {
	k := run.keptNow[mo.model]
	if k == nil {
		repo, name, _, _ := parseModelKey(mo.key)
		idx, _, err := run.reg.readIndex(ctx, modelIndexKey(repo, name))
		if err != nil {
			if ctx.Err() != nil {
				return false, false, ctx.Err()
			}
			run.skip(ctx, mo.model, "its index cannot be read: "+err.Error())
			return false, false, nil
		}
		k = &keptBy{tagged: map[string]bool{}}
		if k.held, _, err = run.readHeld(ctx, repo, name); err != nil {
			if ctx.Err() != nil {
				return false, false, ctx.Err()
			}
			run.skip(ctx, mo.model, "its holds cannot be read: "+err.Error())
			return false, false, nil
		}
		for _, desc := range idx.Manifests {
			if spec.ValidateDigest(desc.Digest) == nil {
				k.tagged[manifestKey(repo, name, desc.Digest)] = true
			}
		}
		run.keptNow[mo.model] = k
	}
	return k.tagged[mo.key], k.held[mo.key] && !k.tagged[mo.key], nil
}

// deleteUnkeptManifests deletes old manifests that no tag points to and no
// unexpired hold names, as read again within the lease, and that no kept
// manifest keeps (an index listing them, a subject they refer to). It
// first marks every manifest kept now, then deletes the rest.
func (run *gcRun) deleteUnkeptManifests(ctx context.Context) error {
	for _, mo := range run.manifests {
		if run.marked[mo.key] || run.skipped[mo.model] {
			continue
		}
		if tagged, held, err := run.keptNowBy(ctx, mo); err != nil {
			return err
		} else if tagged || held || run.skipped[mo.model] {
			if held {
				run.res.ManifestsHeld++
			}
			if err := run.markManifest(ctx, mo, false); err != nil {
				return err
			}
		}
	}
	for _, mo := range run.manifests {
		if run.marked[mo.key] || run.skipped[mo.model] {
			continue
		}
		if !run.reg.stillOld(ctx, mo.key, run.cutoff) {
			run.res.ManifestsYoung++ // stored again since the listing
			continue
		}
		if !run.mayDelete() {
			return errSweepLost
		}
		if err := run.reg.store.Delete(ctx, mo.key); err != nil {
			return internal("delete manifest", err)
		}
		run.reg.manifests.remove(mo.key)
		run.res.ManifestsDeleted++
	}
	return nil
}

// markNewManifests marks the manifests stored since the listing: they name
// blobs too, and must be marked before any link or blob goes.
func (run *gcRun) markNewManifests(ctx context.Context) error {
	listed := make(map[string]bool, len(run.manifests))
	for _, mo := range run.manifests {
		listed[mo.key] = true
	}
	var fresh []storedObject
	err := run.reg.store.List(ctx, run.scope.prefix(), func(info storage.Info) error {
		repo, name, rest, ok := parseModelKey(info.Key)
		if ok && strings.HasPrefix(rest, manifestsDir) && !listed[info.Key] {
			fresh = append(fresh, storedObject{key: info.Key, model: repo + "/" + name, modTime: info.ModTime})
		}
		return nil
	})
	if err != nil {
		return internal("list models", err)
	}
	for _, mo := range fresh {
		if err := run.markManifest(ctx, mo, true); err != nil {
			return err
		}
	}
	return nil
}

// linkKept says whether a link stays: its model is kept whole, a live
// manifest of its model names its blob, or it is young.
func (run *gcRun) linkKept(l storedObject) bool {
	return run.skipped[l.model] || run.refs[l.model][l.digest] || !l.modTime.Before(run.cutoff)
}

// linkSolid says whether a link stays for more than youth (its own, or
// that of the manifests naming its blob): its model is kept whole, or a
// manifest kept for another reason (a tag, a hold) names its blob.
func (run *gcRun) linkSolid(l storedObject) bool {
	return run.skipped[l.model] || run.solid[l.model][l.digest]
}

// deleteUnneededLinks deletes old links that no live manifest of their model needs.
func (run *gcRun) deleteUnneededLinks(ctx context.Context) error {
	for i := range run.links {
		l := &run.links[i]
		if run.linkKept(*l) {
			run.res.LinksKept++
			if !run.linkSolid(*l) {
				run.res.LinksYoung++
			}
			continue
		}
		if !run.reg.stillOld(ctx, l.key, run.cutoff) {
			run.res.LinksKept++
			run.res.LinksYoung++
			l.modTime = run.cutoff // written again: young, so kept for the blob sweep
			continue
		}
		if !run.mayDelete() {
			return errSweepLost
		}
		if err := run.reg.store.Delete(ctx, l.key); err != nil {
			return internal("delete blob link", err)
		}
		run.res.LinksDeleted++
	}
	return nil
}

// deleteOldStaged deletes old staged uploads: a pusher that completes its
// push commits them within minutes.
func (run *gcRun) deleteOldStaged(ctx context.Context) error {
	for _, s := range run.staged {
		if !s.modTime.Before(run.cutoff) || !run.reg.stillOld(ctx, s.key, run.cutoff) {
			continue
		}
		if !run.mayDelete() {
			return errSweepLost
		}
		if err := run.reg.store.Delete(ctx, s.key); err != nil {
			return internal("delete staged upload", err)
		}
		run.res.BytesFreed += s.size
	}
	return nil
}

// deleteOldSessions deletes the OCI upload sessions whose every object
// (start marker and parts) is old: a client still sending chunks keeps
// its session.
func (run *gcRun) deleteOldSessions(ctx context.Context) error {
	for _, objs := range run.sessions {
		if slices.ContainsFunc(objs, func(o storedObject) bool { return !o.modTime.Before(run.cutoff) }) {
			continue
		}
		for _, o := range objs {
			if !run.reg.stillOld(ctx, o.key, run.cutoff) {
				break // written since the listing: in use
			}
			if !run.mayDelete() {
				return errSweepLost
			}
			if err := run.reg.store.Delete(ctx, o.key); err != nil {
				return internal("delete upload session", err)
			}
			run.res.BytesFreed += o.size
		}
	}
	return nil
}

// recordPair returns the manifest keys a referrer, view or image record
// names: the manifest that keeps the other (a subject, a version), and the
// one it keeps (a referrer, a view, an image form's index).
func recordPair(repo, name, key string) (keeps, kept string, ok bool) {
	if k1, k2, ok := parseReferrerKey(repo, name, key); ok {
		return k1, k2, true
	}
	if k1, k2, ok := parseImageKey(repo, name, key); ok {
		return k1, k2, true
	}
	return parseViewKey(repo, name, key)
}

// deleteOrphanRecords deletes the old referrer and view records whose
// referrer or view is gone, so the referrers API lists no missing
// manifest, and the old derived-layer records no kept manifest names.
func (run *gcRun) deleteOrphanRecords(ctx context.Context) error {
	var doomed []string
	for _, rec := range run.records {
		if !rec.modTime.Before(run.cutoff) {
			continue
		}
		repo, name, _, _ := parseModelKey(rec.key)
		_, kept, _ := recordPair(repo, name, rec.key)
		if _, err := run.reg.store.Stat(ctx, kept); err == nil {
			continue
		} else if !errors.Is(err, storage.ErrNotFound) {
			return internal("stat manifest", err)
		}
		doomed = append(doomed, rec.key)
	}
	for _, rec := range run.derived {
		if rec.modTime.Before(run.cutoff) && !run.skipped[rec.model] && !run.refs[rec.model][rec.digest] {
			doomed = append(doomed, rec.key)
		}
	}
	for _, key := range doomed {
		if !run.reg.stillOld(ctx, key, run.cutoff) {
			continue
		}
		if !run.mayDelete() {
			return errSweepLost
		}
		if err := run.reg.store.Delete(ctx, key); err != nil {
			return internal("delete record", err)
		}
	}
	return nil
}

// deleteUnreferencedBlobs deletes old blobs that no live manifest names and no kept
// link points to. Only a collection of the whole registry sees every
// model, and so only it deletes blobs.
func (run *gcRun) deleteUnreferencedBlobs(ctx context.Context) error {
	live := unionDigests(run.refs)
	solid := unionDigests(run.solid) // live for more than youth
	for _, l := range run.links {
		if run.linkKept(l) {
			live[l.digest] = true
		}
		if run.linkSolid(l) {
			solid[l.digest] = true
		}
	}
	// Links written since the listing belong to pushes in flight: young,
	// so their blobs stay.
	err := run.reg.store.List(ctx, modelsPrefix, func(info storage.Info) error {
		if _, _, rest, ok := parseModelKey(info.Key); ok && strings.HasPrefix(rest, linksDir) && !info.ModTime.Before(run.cutoff) {
			if d, ok := digestFromKey(info.Key); ok {
				live[d] = true
			}
		}
		return nil
	})
	if err != nil {
		return internal("list models", err)
	}
	var doomed []storage.Info
	err = run.reg.store.List(ctx, blobsPrefix, func(info storage.Info) error {
		d, ok := digestFromKey(info.Key)
		if !ok {
			return nil // not a blob of ours; leave it
		}
		if live[d] || !info.ModTime.Before(run.cutoff) {
			run.res.BlobsKept++
			if !solid[d] {
				run.res.BlobsYoung++
				run.res.BytesYoung += info.Size
			}
			return nil
		}
		doomed = append(doomed, info)
		return nil
	})
	if err != nil {
		return internal("list blobs", err)
	}
	deleted := map[digest.Digest]bool{}
	for _, info := range doomed {
		if !run.reg.stillOld(ctx, info.Key, run.cutoff) {
			run.res.BlobsKept++
			run.res.BlobsYoung++
			run.res.BytesYoung += info.Size
			continue
		}
		if !run.mayDelete() {
			return errSweepLost
		}
		if err := run.reg.store.Delete(ctx, info.Key); err != nil {
			return internal("delete blob", err)
		}
		d, _ := digestFromKey(info.Key)
		deleted[d] = true
		run.res.BlobsDeleted++
		run.res.BytesFreed += info.Size
	}
	return run.dropDanglingLinks(ctx, deleted)
}

// dropDanglingLinks deletes the links to blobs this sweep deleted: links
// written after the listings above (a pusher that sent the bytes of a
// stored blob, which was garbage, again). See writeLink for why no link
// outlives its blob.
func (run *gcRun) dropDanglingLinks(ctx context.Context, deleted map[digest.Digest]bool) error {
	if len(deleted) == 0 {
		return nil
	}
	dangling, err := run.reg.listKeys(ctx, modelsPrefix, "models", func(info storage.Info) bool {
		_, _, rest, ok := parseModelKey(info.Key)
		d, isDigest := digestFromKey(info.Key)
		return ok && strings.HasPrefix(rest, linksDir) && isDigest && deleted[d]
	})
	if err != nil {
		return err
	}
	for _, key := range dangling {
		d, _ := digestFromKey(key)
		if _, err := run.reg.store.Stat(ctx, blobKey(d)); err == nil {
			continue // uploaded again since: the link stands
		} else if !errors.Is(err, storage.ErrNotFound) {
			return internal("stat blob", err)
		}
		run.reg.links.remove(key)
		if err := run.reg.store.Delete(ctx, key); err != nil {
			return internal("delete blob link", err)
		}
		run.res.LinksDeleted++
	}
	return nil
}

// dropExpiredHolds removes the expired holds the listing found. A hold
// put again since is not expired any more, and stays.
func (run *gcRun) dropExpiredHolds(ctx context.Context) error {
	for m := range run.expired {
		if run.skipped[m.String()] {
			continue
		}
		dropped := 0
		err := run.reg.updateHolds(ctx, m.repo, m.name, func(doc *holdsDoc) (bool, error) {
			dropped = doc.dropExpired(run.reg.now())
			return dropped > 0, nil
		})
		if err != nil {
			return err
		}
		run.res.HoldsExpired += dropped
	}
	return nil
}

// deleteExpiredClaims deletes upload claims that are old and expired.
func (run *gcRun) deleteExpiredClaims(ctx context.Context) error {
	old, err := run.reg.listKeys(ctx, claimsPrefix, "upload claims", func(info storage.Info) bool {
		return info.ModTime.Before(run.cutoff)
	})
	if err != nil {
		return err
	}
	for _, key := range old {
		d, ok := digestFromKey(key)
		if !ok {
			continue
		}
		c, _, exists, err := run.reg.readClaim(ctx, d)
		if err != nil {
			return err
		}
		if !exists || run.reg.now().Before(c.Until) || !run.reg.stillOld(ctx, key, run.cutoff) {
			continue
		}
		if !run.mayDelete() {
			return errSweepLost
		}
		if err := run.reg.store.Delete(ctx, key); err != nil {
			return internal("delete upload claim", err)
		}
	}
	return nil
}

// listKeys returns the keys under prefix that match; what names the
// listing in an error.
func (reg *Registry) listKeys(ctx context.Context, prefix, what string, match func(storage.Info) bool) ([]string, error) {
	var keys []string
	err := reg.store.List(ctx, prefix, func(info storage.Info) error {
		if match(info) {
			keys = append(keys, info.Key)
		}
		return nil
	})
	if err != nil {
		return nil, internal("list "+what, err)
	}
	return keys, nil
}

// stillOld re-reads an object's time just before it is deleted: a push that
// stored it again since the listing made it young and so keeps it.
func (reg *Registry) stillOld(ctx context.Context, key string, cutoff time.Time) bool {
	info, err := reg.store.Stat(ctx, key)
	return err == nil && info.ModTime.Before(cutoff)
}

// garbageCollect collects one model: POST /{repository}/{name}/garbage-collect.
func (reg *Registry) garbageCollect(w http.ResponseWriter, r *http.Request) error {
	repo, name, err := model(r)
	if err != nil {
		return err
	}
	res, err := reg.CollectModelGarbage(r.Context(), repo, name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

// garbageCollectRegistry collects the whole registry: POST /garbage-collect.
func (reg *Registry) garbageCollectRegistry(w http.ResponseWriter, r *http.Request) error {
	res, err := reg.CollectGarbage(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

// RunGC collects the whole registry every interval until ctx ends.
func (reg *Registry) RunGC(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, err := reg.CollectGarbage(ctx)
			var apiErr *spec.Error
			switch {
			case err == nil || ctx.Err() != nil:
			case errors.As(err, &apiErr) && apiErr.Code == spec.ErrorConflict:
				// Another replica is collecting: its run covers ours.
				reg.log.InfoContext(ctx, "scheduled garbage collection skipped", "reason", apiErr.Message)
			default:
				reg.log.ErrorContext(ctx, "scheduled garbage collection failed", "error", err)
			}
		}
	}
}
