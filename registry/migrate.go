package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
)

// LayoutVersion is the storage layout this registry writes and reads:
// 2 is blobs reached through per-model links (links.go). Registries written
// before links existed are version 1 (no layout.json); Migrate upgrades them.
const LayoutVersion = 2

// layout is the document at layoutKey.
type layout struct {
	Version  int       `json:"version"`
	Migrated time.Time `json:"migrated,omitzero"`
}

// MigrationResult reports what Migrate did.
type MigrationResult struct {
	// From is the layout version found; equal to LayoutVersion when there
	// was nothing to do.
	From int `json:"from"`
	// Manifests counts the manifests read; LinksWritten the links written.
	Manifests    int `json:"manifests"`
	LinksWritten int `json:"linksWritten"`
	// Problems names manifests that could not be read or that name blobs
	// no longer stored: their models stay pullable only for what was linked.
	Problems []string `json:"problems,omitempty"`
}

// readLayout returns the stored layout version and whether layout.json
// exists: without it, 1 when models exist, LayoutVersion for an empty store.
func (reg *Registry) readLayout(ctx context.Context) (int, bool, error) {
	data, _, err := storage.ReadAll(ctx, reg.store, layoutKey, 4<<10)
	if errors.Is(err, storage.ErrNotFound) {
		empty := true
		err := reg.store.List(ctx, modelsPrefix, func(storage.Info) error {
			empty = false
			return errStopList
		})
		if err != nil && !errors.Is(err, errStopList) {
			return 0, false, internal("list models", err)
		}
		if empty {
			return LayoutVersion, false, nil
		}
		return 1, false, nil
	}
	if err != nil {
		return 0, false, internal("read layout", err)
	}
	var l layout
	if err := json.Unmarshal(data, &l); err != nil || l.Version < 1 {
		return 0, false, fmt.Errorf("%s is corrupt (%q): restore it, or delete it to migrate again", layoutKey, data)
	}
	return l.Version, true, nil
}

var errStopList = errors.New("stop listing")

// Migrate upgrades the storage layout to LayoutVersion: it links to each
// model every stored blob that a stored manifest of the model names, then
// records the version (also in a new, empty store, so that its first start
// is never taken for an old layout's). It is idempotent, so an interrupted
// migration is simply run again, and safe while pushes go on (they link
// what they upload) and on several replicas at once.
func (reg *Registry) Migrate(ctx context.Context) (MigrationResult, error) {
	var res MigrationResult
	v, recorded, err := reg.readLayout(ctx)
	if err != nil {
		return res, err
	}
	res.From = v
	if v > LayoutVersion {
		return res, fmt.Errorf("the storage layout is version %d, newer than this modelxd's %d: run a modelxd at least as new as the one that wrote it", v, LayoutVersion)
	}
	if recorded && v == LayoutVersion {
		return res, nil
	}
	if v < LayoutVersion {
		if err := reg.linkStoredManifests(ctx, &res); err != nil {
			return res, err
		}
	}
	data, _ := json.Marshal(layout{Version: LayoutVersion, Migrated: reg.now().UTC()})
	if err := reg.store.PutIfAbsent(ctx, layoutKey, data); err != nil && !errors.Is(err, storage.ErrPreconditionFailed) {
		return res, internal("write layout", err)
	}
	return res, nil
}

// linkStoredManifests writes the links of every stored manifest.
func (reg *Registry) linkStoredManifests(ctx context.Context, res *MigrationResult) error {
	keys, err := reg.listKeys(ctx, modelsPrefix, "models", func(info storage.Info) bool {
		_, _, rest, ok := parseModelKey(info.Key)
		return ok && strings.HasPrefix(rest, manifestsDir)
	})
	if err != nil {
		return err
	}
	problem := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		reg.log.WarnContext(ctx, "migration: "+msg)
		if len(res.Problems) < maxReported {
			res.Problems = append(res.Problems, msg)
		}
	}
	for _, key := range keys {
		repo, name, _, _ := parseModelKey(key)
		data, _, err := storage.ReadAll(ctx, reg.store, key, reg.opts.MaxManifestSize)
		if errors.Is(err, storage.ErrNotFound) {
			continue // collected meanwhile
		}
		var m *spec.Manifest
		if err == nil {
			m, err = spec.ParseManifest(data)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			problem("%s/%s: manifest %s cannot be read: %v", repo, name, key, err)
			continue
		}
		res.Manifests++
		refs := m.ReferencedOnce()
		written := make([]bool, len(refs))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(statConcurrency)
		for i, desc := range refs {
			g.Go(func() error {
				if _, ok, err := reg.readLink(gctx, repo, name, desc.Digest); ok || err != nil {
					return err
				}
				info, err := reg.store.Stat(gctx, blobKey(desc.Digest))
				if errors.Is(err, storage.ErrNotFound) {
					return nil
				}
				if err != nil {
					return internal("stat blob", err)
				}
				written[i], err = linkedUnlessCollected(reg.writeLink(gctx, repo, name, desc.Digest, info.Size))
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		for i, desc := range refs {
			if written[i] {
				res.LinksWritten++
			} else if ok, _ := reg.linked(ctx, repo, name, desc.Digest, desc.Size); !ok {
				problem("%s/%s: manifest %s names blob %s, which is not stored with its declared size", repo, name, key, desc.Digest)
			}
		}
	}
	return nil
}
