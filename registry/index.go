package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"

	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
)

// maxIndexSize bounds an index document read from storage.
const maxIndexSize = 64 << 20

// maxUpdateAttempts bounds the compare-and-swap retries of an index update.
const maxUpdateAttempts = 64

// readIndex returns the index document at key and its ETag; a missing
// document reads as an empty index with no ETag.
func (reg *Registry) readIndex(ctx context.Context, key string) (spec.Index, string, error) {
	data, info, err := storage.ReadAll(ctx, reg.store, key, maxIndexSize)
	if errors.Is(err, storage.ErrNotFound) {
		return spec.NewIndex(), "", nil
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
		return spec.Index{}, fmt.Errorf("index %s is corrupt: %w", key, err)
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
		changed, err := mutate(&idx)
		if err != nil || !changed {
			return idx, err
		}
		idx.SchemaVersion, idx.MediaType = spec.SchemaVersion, spec.MediaTypeIndex
		data, err := json.Marshal(idx)
		if err != nil {
			return spec.Index{}, err
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
		// Lost the race: back off with jitter, then read again.
		backoff := time.Duration(1<<min(attempt, 7)) * time.Millisecond
		select {
		case <-ctx.Done():
			return spec.Index{}, ctx.Err()
		case <-time.After(backoff/2 + rand.N(backoff)):
		}
	}
	return spec.Index{}, spec.Errorf(spec.ErrorConflict, "index %s changed on every one of %d attempts; retry the request", key, maxUpdateAttempts)
}

// addModelToGlobal lists the model in the global index if it is not there.
func (reg *Registry) addModelToGlobal(ctx context.Context, repo, name string) error {
	full := repo + "/" + name
	_, err := reg.updateIndex(ctx, globalIndexKey, func(idx *spec.Index) (bool, error) {
		if idx.Find(full) >= 0 {
			return false, nil
		}
		idx.Manifests = append(idx.Manifests, spec.Descriptor{Name: full, MediaType: spec.MediaTypeIndex, Modified: nowFunc().UTC()})
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
			reg.challenge(w, r, "")
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
	return writeIndex(w, filtered(idx, r.URL.Query().Get("search")))
}

// deleteIndex removes every tag of a model and the model from the global
// index. Manifests and blobs stay until garbage collection. The tags are
// cleared by a compare-and-swap write, so a push racing the delete either
// lands after it (and its tag stays) or before it (and is deleted).
func (reg *Registry) deleteIndex(w http.ResponseWriter, r *http.Request) error {
	repo, name, err := model(r)
	if err != nil {
		return err
	}
	existed := false
	if _, err := reg.updateIndex(r.Context(), modelIndexKey(repo, name), func(idx *spec.Index) (bool, error) {
		existed = len(idx.Manifests) > 0
		idx.Manifests = []spec.Descriptor{}
		return existed, nil
	}); err != nil {
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
