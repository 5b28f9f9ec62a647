package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"

	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
)

// Bounds of index documents. A model's index grows by one descriptor per
// tag, each bounded by the tag, digest and copied annotations, so the
// write bound allows about 10,000 ordinary tags; the global index grows by
// one short descriptor per model. An update that would grow an index past
// its bound is refused; one that shrinks it always goes through. Indexes
// written before these bounds may be larger: they are read up to
// maxIndexSize, and one past that can still be deleted.
const (
	maxIndexSize         = 64 << 20
	maxModelIndexWrite   = 4 << 20
	maxGlobalIndexWrite  = 32 << 20
	maxIndexAnnotations  = 8 << 10
	indexAnnotationsHint = "keep large metadata in a file of the model, such as README.md"
)

// unreadableIndexError is an index document that exists but cannot be
// used: corrupt, or over maxIndexSize. The handler adapter answers it with
// what the model's owners can do about it.
type unreadableIndexError struct {
	key string
	err error
}

func (e *unreadableIndexError) Error() string {
	return fmt.Sprintf("index %s cannot be read: %v", e.key, e.err)
}

func (e *unreadableIndexError) Unwrap() error { return e.err }

// apiError says which index is unreadable, and that deleting the model
// (or, for the global index, a restore) replaces it.
func (e *unreadableIndexError) apiError() *spec.Error {
	if repo, name, _, ok := parseModelKey(e.key); ok {
		return spec.Errorf(spec.ErrorInternal, "the index of model %s/%s is corrupt or too large to read; deleting the model (DELETE /%s/%s/index, `modelx delete`) replaces it with an empty one", repo, name, repo, name)
	}
	return spec.Errorf(spec.ErrorInternal, "the global index is corrupt or too large to read; see docs/operations.md, Backups")
}

// maxUpdateAttempts bounds the compare-and-swap retries of an index update.
const maxUpdateAttempts = 64

// readIndex returns the index document at key and its ETag; a missing
// document reads as an empty index with no ETag.
func (reg *Registry) readIndex(ctx context.Context, key string) (spec.Index, string, error) {
	data, info, err := storage.ReadAll(ctx, reg.store, key, maxIndexSize)
	if errors.Is(err, storage.ErrNotFound) {
		return spec.NewIndex(), "", nil
	}
	if errors.Is(err, storage.ErrTooLarge) {
		return spec.Index{}, "", &unreadableIndexError{key: key, err: err}
	}
	if err != nil {
		return spec.Index{}, "", internal("read index", err)
	}
	idx, err := parseIndex(key, data)
	if err != nil {
		return spec.Index{}, "", err
	}
	return idx, info.ETag, nil
}

// parseIndex decodes the index document read from key.
func parseIndex(key string, data []byte) (spec.Index, error) {
	var idx spec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return spec.Index{}, &unreadableIndexError{key: key, err: err}
	}
	if idx.Manifests == nil {
		idx.Manifests = []spec.Descriptor{}
	}
	return idx, nil
}

// updateIndex applies mutate to the index at key with compare-and-swap
// writes, retrying on conflict, so concurrent updates through any number of
// registry replicas are never lost. mutate reports whether it changed
// anything; an unchanged index is not written.
func (reg *Registry) updateIndex(ctx context.Context, key string, mutate func(*spec.Index) (bool, error)) (spec.Index, error) {
	for attempt := range maxUpdateAttempts {
		idx, etag, err := reg.readIndex(ctx, key)
		if err != nil {
			return spec.Index{}, err
		}
		before := len(idx.Manifests)
		changed, err := mutate(&idx)
		if err != nil || !changed {
			return idx, err
		}
		idx.SchemaVersion, idx.MediaType = spec.SchemaVersion, spec.MediaTypeIndex
		data, err := json.Marshal(idx)
		if err != nil {
			return spec.Index{}, err
		}
		if limit := indexWriteLimit(key); len(data) > limit && len(idx.Manifests) >= before {
			if key == globalIndexKey {
				return spec.Index{}, spec.Errorf(spec.ErrorTooLarge, "the global index would be %d bytes, over its bound of %d: delete unused models", len(data), limit)
			}
			repo, name, _, _ := parseModelKey(key)
			return spec.Index{}, spec.Errorf(spec.ErrorTooLarge, "the index of model %s/%s would be %d bytes (%d tags), over its bound of %d: delete old tags", repo, name, len(data), len(idx.Manifests), limit)
		}
		if etag == "" {
			err = reg.store.PutIfAbsent(ctx, key, data)
		} else {
			err = reg.store.PutIfMatch(ctx, key, data, etag)
		}
		if err == nil {
			return idx, nil
		}
		if !errors.Is(err, storage.ErrPreconditionFailed) {
			return spec.Index{}, internal("write index", err)
		}
		if err := retryBackoff(ctx, attempt); err != nil {
			return spec.Index{}, err
		}
	}
	return spec.Index{}, spec.Errorf(spec.ErrorConflict, "index %s changed on every one of %d attempts; retry the request", key, maxUpdateAttempts)
}

// retryBackoff waits before the next attempt of a compare-and-swap update
// that lost the race: exponentially longer, with jitter.
func retryBackoff(ctx context.Context, attempt int) error {
	backoff := time.Duration(1<<min(attempt, 7)) * time.Millisecond
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(backoff/2 + rand.N(backoff)):
		return nil
	}
}

// indexWriteLimit is the bound an update may not grow the index at key past.
func indexWriteLimit(key string) int {
	if key == globalIndexKey {
		return maxGlobalIndexWrite
	}
	return maxModelIndexWrite
}

// resetIndex replaces an unreadable index with an empty one, if it has not
// changed since it was found unreadable.
func (reg *Registry) resetIndex(ctx context.Context, key string) error {
	info, err := reg.store.Stat(ctx, key)
	if err != nil {
		return internal("stat index", err)
	}
	data, _ := json.Marshal(spec.NewIndex())
	if err := reg.store.PutIfMatch(ctx, key, data, info.ETag); err != nil {
		if errors.Is(err, storage.ErrPreconditionFailed) {
			return spec.Errorf(spec.ErrorConflict, "the index changed while it was being reset; retry")
		}
		return internal("reset index", err)
	}
	reg.indexes.remove(key)
	reg.log.WarnContext(ctx, "unreadable index replaced with an empty one", "key", key)
	return nil
}

// addModelToGlobal lists the model in the global index if it is not there.
func (reg *Registry) addModelToGlobal(ctx context.Context, repo, name string) error {
	full := repo + "/" + name
	_, err := reg.updateIndex(ctx, globalIndexKey, func(idx *spec.Index) (bool, error) {
		if idx.Find(full) >= 0 {
			return false, nil
		}
		idx.Manifests = append(idx.Manifests, spec.Descriptor{Name: full, MediaType: spec.MediaTypeIndex, Modified: reg.now().UTC()})
		slices.SortFunc(idx.Manifests, func(a, b spec.Descriptor) int { return strings.Compare(a.Name, b.Name) })
		return true, nil
	})
	return err
}

// removeModelFromGlobal drops the model from the global index, then lists
// it again if a concurrent push gave it a tag meanwhile.
func (reg *Registry) removeModelFromGlobal(ctx context.Context, repo, name string) error {
	full := repo + "/" + name
	if _, err := reg.updateIndex(ctx, globalIndexKey, func(idx *spec.Index) (bool, error) {
		i := idx.Find(full)
		if i < 0 {
			return false, nil
		}
		idx.Manifests = slices.Delete(idx.Manifests, i, i+1)
		return true, nil
	}); err != nil {
		return err
	}
	idx, _, err := reg.readIndex(ctx, modelIndexKey(repo, name))
	if err != nil {
		return err
	}
	if len(idx.Manifests) > 0 {
		return reg.addModelToGlobal(ctx, repo, name)
	}
	return nil
}

// filtered returns idx with only the descriptors whose name contains search.
func filtered(idx spec.Index, search string) spec.Index {
	if search == "" {
		return idx
	}
	out := idx
	out.Manifests = []spec.Descriptor{}
	for _, d := range idx.Manifests {
		if strings.Contains(d.Name, search) {
			out.Manifests = append(out.Manifests, d)
		}
	}
	return out
}

func (reg *Registry) getGlobalIndex(w http.ResponseWriter, r *http.Request) error {
	idx, err := reg.viewIndex(r.Context(), globalIndexKey)
	if err != nil {
		return err
	}
	if reg.opts.Policy != nil {
		id := identityOf(r.Context())
		if id == nil && !reg.opts.Policy.AnyAnonymous() {
			modelxAPI.challenge(reg, w, r, "", nil, "")
			return spec.Errorf(spec.ErrorUnauthorized, "authentication required")
		}
		// List only the models the caller may pull.
		visible := idx.Manifests[:0:0]
		for _, d := range idx.Manifests {
			if reg.canList(id, d.Name) {
				visible = append(visible, d)
			}
		}
		idx.Manifests = visible
	}
	return writeIndex(w, filtered(idx, r.URL.Query().Get("search")))
}

// markImmutable returns idx with AnnotationImmutableTag set on the tags
// the policy makes immutable; the shared idx itself is not changed.
func (reg *Registry) markImmutable(repo, name string, idx spec.Index) spec.Index {
	out := idx
	out.Manifests = nil
	for i, desc := range idx.Manifests {
		if _, ok := reg.immutableTag(repo, name, desc.Name); ok {
			if out.Manifests == nil {
				out.Manifests = slices.Clone(idx.Manifests)
			}
			desc.Annotations = maps.Clone(desc.Annotations)
			if desc.Annotations == nil {
				desc.Annotations = map[string]string{}
			}
			desc.Annotations[spec.AnnotationImmutableTag] = "true"
			out.Manifests[i] = desc
		}
	}
	if out.Manifests == nil {
		return idx
	}
	return out
}

func writeIndex(w http.ResponseWriter, idx spec.Index) error {
	w.Header().Set("Cache-Control", "no-cache")
	idx.SchemaVersion, idx.MediaType = spec.SchemaVersion, spec.MediaTypeIndex
	return writeJSON(w, http.StatusOK, idx)
}

func (reg *Registry) getIndex(w http.ResponseWriter, r *http.Request) error {
	repo, name, err := model(r)
	if err != nil {
		return err
	}
	idx, err := reg.viewIndex(r.Context(), modelIndexKey(repo, name))
	if err != nil {
		return err
	}
	if len(idx.Manifests) == 0 {
		return spec.Errorf(spec.ErrorIndexUnknown, "model %s/%s has no versions in the registry", repo, name)
	}
	return writeIndex(w, reg.markImmutable(repo, name, filtered(idx, r.URL.Query().Get("search"))))
}

// deleteIndex removes every tag of a model and the model from the global
// index. Manifests and blobs stay until garbage collection. The tags are
// cleared by a compare-and-swap write, so a push racing the delete either
// lands after it (and its tag stays) or before it (and is deleted). A
// model with unexpired holds is not deleted.
func (reg *Registry) deleteIndex(w http.ResponseWriter, r *http.Request) error {
	repo, name, err := model(r)
	if err != nil {
		return err
	}
	if err := reg.refuseHeld(r.Context(), repo, name, ""); err != nil {
		return err
	}
	existed := false
	_, err = reg.updateIndex(r.Context(), modelIndexKey(repo, name), func(idx *spec.Index) (bool, error) {
		for _, desc := range idx.Manifests {
			if err := reg.checkMutable(repo, name, desc.Name); err != nil {
				return false, err
			}
		}
		existed = len(idx.Manifests) > 0
		idx.Manifests = []spec.Descriptor{}
		return existed, nil
	})
	var unreadable *unreadableIndexError
	if errors.As(err, &unreadable) {
		// Whatever it held, deleting the model empties it.
		err, existed = reg.resetIndex(r.Context(), modelIndexKey(repo, name)), true
	}
	if err != nil {
		return err
	}
	if !existed {
		return spec.Errorf(spec.ErrorIndexUnknown, "model %s/%s has no versions in the registry", repo, name)
	}
	if err := reg.removeModelFromGlobal(r.Context(), repo, name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}
