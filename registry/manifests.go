package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
)

// statConcurrency bounds the parallel blob checks of one manifest PUT.
const statConcurrency = 64

func manifestParams(r *http.Request) (repo, name string, ref spec.Reference, err error) {
	if repo, name, err = model(r); err != nil {
		return
	}
	ref, err = spec.ParseReference(chi.URLParam(r, "reference"))
	return
}

// resolve turns a reference into a manifest digest: a digest as is, a tag
// through the model's index.
func (reg *Registry) resolve(ctx context.Context, repo, name string, ref spec.Reference) (digest.Digest, error) {
	if ref.Digest != "" {
		return ref.Digest, nil
	}
	idx, err := reg.viewIndex(ctx, modelIndexKey(repo, name))
	if err != nil {
		return "", err
	}
	i := idx.Find(ref.Tag)
	if i < 0 {
		return "", spec.Errorf(spec.ErrorManifestUnknown, "model %s/%s has no tag %q", repo, name, ref.Tag)
	}
	return idx.Manifests[i].Digest, nil
}

// getManifest answers the manifest bytes exactly as pushed (GET) or just
// its headers (HEAD), by tag or by digest.
func (reg *Registry) getManifest(w http.ResponseWriter, r *http.Request) error {
	repo, name, ref, err := manifestParams(r)
	if err != nil {
		return err
	}
	d, data, err := reg.readManifest(r.Context(), repo, name, ref)
	if err != nil {
		return err
	}
	if ref.Tag != "" && spec.IsOCIManifestType(manifestMediaType(data)) {
		// A tag of an OCI artifact, answered as a modelx version
		// (modelxview.go); by digest, the bytes must hash to it.
		if d, data, err = reg.modelxView(r.Context(), repo, name, d, data); err != nil {
			return err
		}
	}
	serveManifest(w, r, d, data, ref.Tag != "")
	return nil
}

// readManifest returns the digest and bytes of the model's manifest that
// ref names.
func (reg *Registry) readManifest(ctx context.Context, repo, name string, ref spec.Reference) (digest.Digest, []byte, error) {
	d, err := reg.resolve(ctx, repo, name, ref)
	if err != nil {
		return "", nil, err
	}
	key := manifestKey(repo, name, d)
	data, cached := []byte(nil), false
	if ref.Tag != "" { // the index just named it: it is referenced, serve from memory
		data, cached = reg.manifests.get(key)
	}
	if !cached {
		data, _, err = storage.ReadAll(ctx, reg.store, key, reg.opts.MaxManifestSize)
		if errors.Is(err, storage.ErrNotFound) {
			return "", nil, spec.Errorf(spec.ErrorManifestUnknown, "model %s/%s has no manifest %s", repo, name, d)
		}
		if err != nil {
			return "", nil, internal("read manifest", err)
		}
		reg.manifests.put(key, data)
	}
	return d, data, nil
}

// serveManifest answers a manifest's bytes (just its headers to HEAD),
// with its media type and digest; byTag says it was asked for by tag, which
// may move, so caches must revalidate.
func serveManifest(w http.ResponseWriter, r *http.Request, d digest.Digest, data []byte, byTag bool) {
	h := w.Header()
	h.Set("Content-Type", manifestMediaType(data))
	h.Set(spec.DigestHeader, string(d))
	h.Set(spec.OCIDigestHeader, string(d))
	h.Set("ETag", `"`+string(d)+`"`)
	h.Set("Content-Length", strconv.Itoa(len(data)))
	if byTag {
		h.Set("Cache-Control", "no-cache")
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(data)
	}
}

// manifestMediaType is the media type of stored manifest bytes: the
// document's mediaType field; without one, a modelx manifest (which names
// blobs), an OCI index (manifests) or an OCI image manifest. It reads the
// top-level keys in order and stops at mediaType, which every client
// writes near the start: a GET of a large manifest does not pay a parse.
func manifestMediaType(data []byte) string {
	dec := json.NewDecoder(bytes.NewReader(data))
	blobs, manifests := false, false
	if tok, err := dec.Token(); err == nil && tok == json.Delim('{') {
		for dec.More() {
			key, err := dec.Token()
			if err != nil {
				break
			}
			switch key {
			case "mediaType":
				var mediaType string
				if dec.Decode(&mediaType) == nil && mediaType != "" {
					return mediaType
				}
				continue
			case "blobs":
				blobs = true
			case "manifests":
				manifests = true
			}
			var skip presence
			if dec.Decode(&skip) != nil {
				break
			}
		}
	}
	switch {
	case blobs:
		return spec.MediaTypeManifest
	case manifests:
		return spec.MediaTypeOCIIndex
	default:
		return spec.MediaTypeOCIManifest
	}
}

// presence records whether a JSON field is there, without keeping its value.
type presence bool

func (p *presence) UnmarshalJSON([]byte) error { *p = true; return nil }

// parseStoredManifest parses the bytes of a stored manifest, modelx or OCI.
func parseStoredManifest(data []byte) (*manifestToStore, error) {
	if mediaType := manifestMediaType(data); !spec.IsOCIManifestType(mediaType) {
		m, err := spec.ParseManifest(data)
		if err != nil {
			return nil, err
		}
		return modelxManifest(data, m), nil
	}
	m, err := spec.ParseOCIManifest(data, "")
	if err != nil {
		return nil, err
	}
	return ociManifest(data, m), nil
}

// manifestToStore is a parsed manifest on its way into a model: its bytes,
// and what the registry checks and records of it. modelx and OCI manifests
// differ only here; storeManifest stores both.
type manifestToStore struct {
	data      []byte
	digest    digest.Digest
	mediaType string
	// blobs must be linked to the model with their sizes; a name says
	// where each sits in the manifest, for errors.
	blobs []spec.Descriptor
	// manifests must be stored in the model already (an index's).
	manifests []digest.Digest
	// indexAnnotations go into the tag's entry of the model's index.
	indexAnnotations map[string]string
	// modelx is set for a modelx manifest, whose modelFiles are checked.
	modelx *spec.Manifest
	// subject is the manifest an OCI referrer refers to, and referrer how
	// the referrers API lists this manifest.
	subject  *spec.OCIDescriptor
	referrer spec.OCIDescriptor
}

// modelxManifest is what storeManifest needs of a modelx manifest.
func modelxManifest(data []byte, m *spec.Manifest) *manifestToStore {
	annotations := maps.Clone(m.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[spec.AnnotationModelSize] = strconv.FormatInt(m.TotalSize(), 10)
	return &manifestToStore{data: data, digest: digest.FromBytes(data), mediaType: spec.MediaTypeManifest,
		blobs: m.Referenced(), indexAnnotations: annotations, modelx: m}
}

// readManifestBody admits a manifest PUT (limits.go: the memory of reading
// and parsing it, and the upload rate floor) and reads its body; release
// gives the memory back.
func (reg *Registry) readManifestBody(w http.ResponseWriter, r *http.Request) (data []byte, release func(), err error) {
	release, err = reg.admitManifest(w, r)
	if err != nil {
		return nil, nil, err
	}
	limit := reg.opts.MaxManifestSize
	if r.ContentLength > limit {
		release()
		return nil, nil, spec.Errorf(spec.ErrorTooLarge, "manifest is %d bytes, over the limit of %d", r.ContentLength, limit)
	}
	data, err = io.ReadAll(io.LimitReader(r.Body, limit+1))
	switch {
	case errors.Is(err, errUploadTooSlow):
		release()
		return nil, nil, err // 429: the client retries
	case err != nil:
		release()
		return nil, nil, spec.Errorf(spec.ErrorManifestInvalid, "reading the manifest body failed: %v", err)
	case int64(len(data)) > limit:
		release()
		return nil, nil, spec.Errorf(spec.ErrorTooLarge, "manifest is over the limit of %d bytes", limit)
	}
	return data, release, nil
}

// putManifest stores a manifest and, for a tag, points the tag at it. The
// manifest is the client's promise that every blob it names is uploaded:
// the registry checks each blob exists with the declared size before it
// stores anything.
func (reg *Registry) putManifest(w http.ResponseWriter, r *http.Request) error {
	data, release, err := reg.readManifestBody(w, r)
	if err != nil {
		return err
	}
	defer release()
	repo, name, ref, err := manifestParams(r)
	if err != nil {
		return err
	}
	mt, err := parsePushedModelxManifest(data)
	if err != nil {
		return err
	}
	if err := reg.storeManifest(r.Context(), repo, name, ref, nil, mt); err != nil {
		return err
	}
	h := w.Header()
	h.Set(spec.DigestHeader, string(mt.digest))
	h.Set("Location", "/"+repo+"/"+name+"/manifests/"+string(mt.digest))
	w.WriteHeader(http.StatusCreated)
	return nil
}

// storeManifest stores a manifest in the model and points the tag of ref,
// if any, and moreTags at it, once every blob and manifest it names is in
// the model.
func (reg *Registry) storeManifest(ctx context.Context, repo, name string, ref spec.Reference, moreTags []string, mt *manifestToStore) error {
	d := mt.digest
	if ref.Digest != "" && ref.Digest != d {
		return spec.Errorf(spec.ErrorDigestInvalid, "the manifest's digest is %s, not %s as the URL says", d, ref.Digest)
	}
	tags := moreTags
	if ref.Tag != "" {
		tags = append([]string{ref.Tag}, moreTags...)
	}
	for _, tag := range tags {
		if _, immutable := reg.immutableTag(repo, name, tag); immutable {
			// Refused before anything is stored; tag checks again atomically.
			if cur, err := reg.resolve(ctx, repo, name, spec.Reference{Tag: tag}); err == nil && cur != d {
				return reg.checkMutable(repo, name, tag)
			}
		}
	}
	before, _, err := reg.readGCState(ctx)
	if err != nil {
		return err
	}
	sweptBefore := before.sweeping(reg.now())
	if err := reg.checkContents(ctx, repo, name, mt); err != nil {
		return err
	}
	key := manifestKey(repo, name, d)
	if mt.modelx != nil {
		if err := reg.checkModelFiles(ctx, key, mt.modelx); err != nil {
			return err
		}
	}
	sum, _ := digestSum(d)
	if err := reg.store.Put(ctx, key, bytes.NewReader(mt.data), int64(len(mt.data)), sum); err != nil {
		return internal("store manifest", err)
	}
	if mt.subject != nil {
		if err := reg.writeReferrer(ctx, repo, name, mt.subject.Digest, mt.referrer); err != nil {
			return err
		}
	}
	for _, tag := range tags {
		if err := reg.tag(ctx, repo, name, tag, d, mt.mediaType, int64(len(mt.data)), mt.indexAnnotations); err != nil {
			return err
		}
	}
	if err := reg.confirmAfterSweeps(ctx, before, sweptBefore, repo, name, key, mt); err != nil {
		// A collection took what the push relied on: take back what it
		// wrote, so nothing names a missing object.
		// Any other tag on this manifest was written by a push that
		// overlapped the same sweep, which takes its tag back too.
		ctx := context.WithoutCancel(ctx)
		for _, tag := range tags {
			if uerr := reg.untag(ctx, repo, name, tag, d); uerr != nil {
				return uerr
			}
		}
		if derr := reg.store.Delete(ctx, key); derr != nil && !errors.Is(derr, storage.ErrNotFound) {
			return internal("delete manifest", derr)
		}
		reg.manifests.remove(key)
		return err
	}
	return nil
}

// checkContents checks that every blob and manifest mt names is in the model.
func (reg *Registry) checkContents(ctx context.Context, repo, name string, mt *manifestToStore) error {
	if err := reg.checkBlobs(ctx, repo, name, mt.blobs); err != nil {
		return err
	}
	return reg.checkManifests(ctx, repo, name, mt.manifests)
}

// checkManifests checks that the model stores every manifest of ds.
func (reg *Registry) checkManifests(ctx context.Context, repo, name string, ds []digest.Digest) error {
	var missing []string
	for _, d := range ds {
		if _, err := reg.store.Stat(ctx, manifestKey(repo, name, d)); errors.Is(err, storage.ErrNotFound) {
			missing = append(missing, string(d))
		} else if err != nil {
			return internal("stat manifest", err)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return spec.Errorf(spec.ErrorManifestBlobUnknown, "%d manifest(s) the index names are not in %s/%s; push them first, then the index", len(missing), repo, name).
			WithDetail(map[string]any{"missing": missing})
	}
	return nil
}

// checkModelFiles refuses a manifest whose modelx.yaml lists modelFiles
// entries that match none of its files: a deployment that pulls only the
// modelFiles would fail on them, long after the push. A config that does
// not parse, or is over spec.MaxConfigSize, is not checked (older clients
// pushed such configs, and pulls still work). Neither is a manifest the
// model stores already, so tagging an existing version never fails here.
func (reg *Registry) checkModelFiles(ctx context.Context, key string, m *spec.Manifest) error {
	if m.Config.Size > spec.MaxConfigSize {
		return nil
	}
	if _, err := reg.store.Stat(ctx, key); err == nil {
		return nil
	}
	data, _, err := storage.ReadAll(ctx, reg.store, blobKey(m.Config.Digest), spec.MaxConfigSize)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return internal("read config blob", err)
	}
	cfg, err := spec.ParseModelConfig(data)
	if err != nil || len(cfg.ModelFiles) == 0 {
		return nil
	}
	files, dirs := m.FileNames()
	unmatched := spec.UnmatchedModelFiles(cfg.ModelFiles, files, dirs)
	if len(unmatched) == 0 {
		return nil
	}
	quoted := make([]string, len(unmatched))
	for i, e := range unmatched {
		quoted[i] = strconv.Quote(e)
	}
	return spec.Errorf(spec.ErrorManifestInvalid, "%s lists modelFiles that match no file of the version: %s; fix modelFiles (a file's path, or \"dir/\" for a directory), or add the files, then push again", spec.ConfigFileName, strings.Join(quoted, ", ")).
		WithDetail(map[string]any{"modelFiles": unmatched})
}

// immutableTag returns the policy rule that makes a tag of the model immutable.
func (reg *Registry) immutableTag(repo, name, tag string) (auth.ImmutableTags, bool) {
	return reg.opts.Policy.ImmutableTag(repo+"/"+name, tag)
}

// checkMutable refuses to move or delete an immutable tag, naming the rule.
func (reg *Registry) checkMutable(repo, name, tag string) error {
	if rule, ok := reg.immutableTag(repo, name, tag); ok {
		return spec.Errorf(spec.ErrorConflict, "tag %s of %s/%s is immutable (policy immutableTags: %s): it cannot be moved or deleted; push the new version under a new tag", tag, repo, name, rule)
	}
	return nil
}

// parsePushedModelxManifest parses and checks a modelx manifest a client
// pushes, through either API.
func parsePushedModelxManifest(data []byte) (*manifestToStore, error) {
	m, err := spec.ParseManifest(data)
	if err != nil {
		return nil, err
	}
	if err := checkIndexAnnotations(m); err != nil {
		return nil, err
	}
	return modelxManifest(data, m), nil
}

// checkIndexAnnotations refuses a modelx manifest whose annotations, which
// its tag copies into the model's index, are over maxIndexAnnotations.
func checkIndexAnnotations(m *spec.Manifest) error {
	if n := annotationsSize(m.Annotations); n > maxIndexAnnotations {
		return spec.Errorf(spec.ErrorTooLarge, "the manifest's annotations are %d bytes, over the %d that a version may copy into its model's index; %s", n, maxIndexAnnotations, indexAnnotationsHint)
	}
	return nil
}

// annotationsSize is the bytes of keys and values of annotations.
func annotationsSize(a map[string]string) int {
	n := 0
	for k, v := range a {
		n += len(k) + len(v)
	}
	return n
}

// confirmAfterSweeps makes sure no garbage collection sweep deleted the
// manifest just stored at key and tagged, or a blob it names, since they
// were checked (see gcStateKey). before is the collection state read before
// the check.
func (reg *Registry) confirmAfterSweeps(ctx context.Context, before gcState, sweptBefore bool, repo, name, key string, mt *manifestToStore) error {
	after, err := reg.afterSweeps(ctx)
	if err != nil {
		return err
	}
	if !sweptBefore && after.Generation == before.Generation {
		return nil // no sweep overlapped the check
	}
	if _, err := reg.store.Stat(ctx, key); errors.Is(err, storage.ErrNotFound) {
		return spec.Errorf(spec.ErrorConflict, "garbage collection removed the manifest while it was being pushed; push it again")
	} else if err != nil {
		return internal("stat manifest", err)
	}
	// The client uploads blobs this finds missing and pushes again.
	return reg.checkContents(ctx, repo, name, mt)
}

// untag removes tag from the model's index if it still names d.
func (reg *Registry) untag(ctx context.Context, repo, name, tag string, d digest.Digest) error {
	_, err := reg.updateIndex(ctx, modelIndexKey(repo, name), func(idx *spec.Index) (bool, error) {
		i := idx.Find(tag)
		if i < 0 || idx.Manifests[i].Digest != d {
			return false, nil
		}
		idx.Manifests = slices.Delete(idx.Manifests, i, i+1)
		return true, nil
	})
	return err
}

// checkBlobs verifies that every blob the manifest names is linked to the
// model with the declared size (committing redirected uploads that have
// completed); it names every missing blob in the error's detail. A link
// implies its blob: see writeLink and gcRun.dropDanglingLinks.
func (reg *Registry) checkBlobs(ctx context.Context, repo, name string, refs []spec.Descriptor) error {
	unique := spec.UniqueDigests(refs)
	linked := make([]int64, len(unique)) // linked size, -1 when not linked; one slot per goroutine
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(statConcurrency)
	for i, desc := range unique {
		g.Go(func() error {
			size, ok, err := reg.linkedSize(gctx, repo, name, desc.Digest, desc.Size)
			if err != nil {
				return err
			}
			linked[i] = -1
			if ok {
				linked[i] = size
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	var missing, wrong []string
	sizes := make(map[digest.Digest]int64, len(unique))
	for i, desc := range unique {
		sizes[desc.Digest] = linked[i]
		if linked[i] < 0 {
			missing = append(missing, string(desc.Digest))
		}
	}
	for _, desc := range refs {
		if size := sizes[desc.Digest]; size >= 0 && size != desc.Size {
			wrong = append(wrong, desc.Name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return spec.Errorf(spec.ErrorManifestBlobUnknown, "%d blob(s) the manifest names are not uploaded to %s/%s; upload them, then push the manifest again", len(missing), repo, name).
			WithDetail(map[string]any{"missing": missing})
	}
	if len(wrong) > 0 {
		slices.Sort(wrong)
		return spec.Errorf(spec.ErrorManifestInvalid, "the declared size of %d blob(s) differs from the stored blob", len(wrong)).
			WithDetail(map[string]any{"names": wrong})
	}
	return nil
}

// tag points tag at the manifest d, of mediaType, in the model's index,
// then makes sure the model is in the global index.
func (reg *Registry) tag(ctx context.Context, repo, name, tag string, d digest.Digest, mediaType string, size int64, annotations map[string]string) error {
	desc := spec.Descriptor{Name: tag, MediaType: mediaType, Digest: d, Size: size, Modified: reg.now().UTC(), Annotations: annotations}
	if _, err := reg.updateIndex(ctx, modelIndexKey(repo, name), func(idx *spec.Index) (bool, error) {
		if i := idx.Find(tag); i >= 0 {
			if idx.Manifests[i].Digest == d {
				if _, ok := reg.immutableTag(repo, name, tag); ok {
					return false, nil // an immutable tag keeps its first record too
				}
			} else if err := reg.checkMutable(repo, name, tag); err != nil {
				return false, err
			}
			idx.Manifests[i] = desc
		} else {
			idx.Manifests = append(idx.Manifests, desc)
		}
		return true, nil
	}); err != nil {
		return err
	}
	return reg.addModelToGlobal(ctx, repo, name)
}

// deleteManifest removes a tag, or every tag pointing at a digest. The
// manifest and its blobs stay until garbage collection. A digest that a
// hold keeps is not deleted; a tag is, as a tag may move: the hold keeps
// the version it pointed at.
func (reg *Registry) deleteManifest(w http.ResponseWriter, r *http.Request) error {
	repo, name, ref, err := manifestParams(r)
	if err != nil {
		return err
	}
	if ref.Digest != "" {
		if err := reg.refuseHeld(r.Context(), repo, name, ref.Digest); err != nil {
			return err
		}
	}
	removed := 0
	idx, err := reg.updateIndex(r.Context(), modelIndexKey(repo, name), func(idx *spec.Index) (bool, error) {
		before := len(idx.Manifests)
		named := func(desc spec.Descriptor) bool {
			return desc.Name == ref.Tag || (ref.Digest != "" && desc.Digest == ref.Digest)
		}
		for _, desc := range idx.Manifests {
			if named(desc) {
				if err := reg.checkMutable(repo, name, desc.Name); err != nil {
					return false, err
				}
			}
		}
		idx.Manifests = slices.DeleteFunc(idx.Manifests, named)
		removed = before - len(idx.Manifests)
		return removed > 0, nil
	})
	if err != nil {
		return err
	}
	if removed == 0 {
		return spec.Errorf(spec.ErrorManifestUnknown, "model %s/%s has no tag or manifest %s", repo, name, ref)
	}
	if len(idx.Manifests) == 0 {
		if err := reg.removeModelFromGlobal(r.Context(), repo, name); err != nil {
			return err
		}
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}
