package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
)

// manifestObject is a stored manifest found by listing.
type manifestObject struct {
	key     string
	modTime time.Time
}

// CollectGarbage deletes manifests no tag points to and blobs no remaining
// manifest names. Anything younger than the grace period is kept: a push
// uploads its blobs, then its manifest, then its tag, and each of those
// steps may be in flight. Blobs are shared by every model, so collection
// always covers the whole registry.
func (reg *Registry) CollectGarbage(ctx context.Context) (res spec.GCResult, err error) {
	start := nowFunc()
	defer func(began time.Time) { reg.metrics.recordGC(res, time.Since(began), err) }(time.Now())
	cutoff := start.Add(-reg.opts.GCGracePeriod)

	// Mark: every manifest a tag points to, or too young to judge.
	tagged := map[string]bool{} // manifest keys some tag points to
	var manifests []manifestObject
	err = reg.store.List(ctx, modelsPrefix, func(info storage.Info) error {
		repo, name, rest, ok := parseModelKey(info.Key)
		switch {
		case !ok:
		case rest == indexFile:
			idx, _, err := reg.readIndex(ctx, info.Key)
			if err != nil {
				return err
			}
			for _, desc := range idx.Manifests {
				if spec.ValidateDigest(desc.Digest) == nil {
					tagged[manifestKey(repo, name, desc.Digest)] = true
				}
			}
		case strings.HasPrefix(rest, "manifests/"):
			manifests = append(manifests, manifestObject{key: info.Key, modTime: info.ModTime})
		}
		return nil
	})
	if err != nil {
		return res, internal("list models", err)
	}
	live := map[digest.Digest]bool{}
	markManifest := func(key string) error {
		data, _, err := storage.ReadAll(ctx, reg.store, key, reg.opts.MaxManifestSize)
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		if err != nil {
			return internal("read manifest", err)
		}
		m, err := spec.ParseManifest(data)
		if err != nil {
			// Unreadable: what it names is unknown, so nothing may go.
			return fmt.Errorf("garbage collection stopped before deleting any blob: manifest %s is unreadable: %w", key, err)
		}
		for _, desc := range m.Referenced() {
			live[desc.Digest] = true
		}
		return nil
	}
	seen := map[string]bool{}
	for _, mo := range manifests {
		seen[mo.key] = true
		if !tagged[mo.key] && mo.modTime.Before(cutoff) {
			continue
		}
		if err := markManifest(mo.key); err != nil {
			return res, err
		}
		res.ManifestsKept++
	}

	// From here until the last delete, pushes wait for this sweep before
	// they tag (see gcStateKey).
	sw, err := reg.beginSweep(ctx)
	if errors.Is(err, errSweepRunning) {
		return res, spec.Errorf(spec.ErrorConflict, "another garbage collection is running; try again when it has finished")
	}
	if err != nil {
		return res, err
	}
	defer func() {
		if err := sw.end(ctx); err != nil {
			reg.log.ErrorContext(ctx, "garbage collection could not release its sweep lease", "error", err)
		}
	}()
	lost := fmt.Errorf("garbage collection stopped: its sweep lease in %s could not be renewed in time", gcStateKey)

	// Sweep manifests: untagged and older than the grace period. A push
	// may have tagged one since the mark read the indexes, so each model
	// with candidates has its index read again, within the lease.
	retagged := map[string]map[string]bool{} // model prefix → manifest keys tagged now
	taggedNow := func(key string) (bool, error) {
		repo, name, _, _ := parseModelKey(key)
		p := modelPrefix(repo, name)
		if retagged[p] == nil {
			idx, _, err := reg.readIndex(ctx, modelIndexKey(repo, name))
			if err != nil {
				return false, err
			}
			retagged[p] = map[string]bool{}
			for _, desc := range idx.Manifests {
				if spec.ValidateDigest(desc.Digest) == nil {
					retagged[p][manifestKey(repo, name, desc.Digest)] = true
				}
			}
		}
		return retagged[p][key], nil
	}
	for _, mo := range manifests {
		if tagged[mo.key] || !mo.modTime.Before(cutoff) {
			continue
		}
		if now, err := taggedNow(mo.key); err != nil {
			return res, err
		} else if now {
			if err := markManifest(mo.key); err != nil {
				return res, err
			}
			res.ManifestsKept++
			continue
		}
		if !reg.stillOld(ctx, mo.key, cutoff) {
			continue
		}
		if !sw.mayDelete() {
			return res, lost
		}
		if err := reg.store.Delete(ctx, mo.key); err != nil {
			return res, internal("delete manifest", err)
		}
		reg.manifests.remove(mo.key)
		res.ManifestsDeleted++
	}

	// Manifests stored while we marked name blobs too: mark them before
	// any blob goes.
	err = reg.store.List(ctx, modelsPrefix, func(info storage.Info) error {
		if _, _, rest, ok := parseModelKey(info.Key); ok && strings.HasPrefix(rest, "manifests/") && !seen[info.Key] {
			return markManifest(info.Key)
		}
		return nil
	})
	if err != nil {
		return res, err
	}

	// Sweep blobs: unmarked and older than the grace period.
	var doomed []storage.Info
	err = reg.store.List(ctx, blobsPrefix, func(info storage.Info) error {
		d, ok := digestFromKey(info.Key)
		if ok && (live[d] || !info.ModTime.Before(cutoff)) {
			res.BlobsKept++
			return nil
		}
		if !ok {
			return nil // not a blob of ours; leave it
		}
		doomed = append(doomed, info)
		return nil
	})
	if err != nil {
		return res, internal("list blobs", err)
	}
	for _, info := range doomed {
		if !reg.stillOld(ctx, info.Key, cutoff) {
			res.BlobsKept++
			continue
		}
		if !sw.mayDelete() {
			return res, lost
		}
		if err := reg.store.Delete(ctx, info.Key); err != nil {
			return res, internal("delete blob", err)
		}
		res.BlobsDeleted++
		res.BytesFreed += info.Size
	}
	res.DurationSeconds = nowFunc().Sub(start).Seconds()
	reg.log.InfoContext(ctx, "garbage collection done",
		"manifests_deleted", res.ManifestsDeleted, "blobs_deleted", res.BlobsDeleted, "bytes_freed", res.BytesFreed)
	return res, nil
}

// stillOld re-reads an object's time just before it is deleted: a push that
// stored it again since the listing made it young and so keeps it.
func (reg *Registry) stillOld(ctx context.Context, key string, cutoff time.Time) bool {
	info, err := reg.store.Stat(ctx, key)
	return err == nil && info.ModTime.Before(cutoff)
}

func (reg *Registry) garbageCollect(w http.ResponseWriter, r *http.Request) error {
	if _, _, err := model(r); err != nil {
		return err
	}
	res, err := reg.CollectGarbage(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

// RunGC collects garbage every interval until ctx ends.
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
