package registry

import (
	"context"
	"errors"
	"sync"

	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
)

// cacheBounds are the limits a boundedCache keeps within; 0 is no limit.
type cacheBounds struct {
	entries int // the most entries kept
	bytes   int // the most bytes of values kept
	item    int // a value over this many bytes is not kept
}

// boundedCache is a map safe for concurrent use that keeps within bounds
// by evicting at random (map order is random). The zero value is empty.
type boundedCache[V any] struct {
	mu    sync.Mutex
	items map[string]sizedValue[V]
	size  int // bytes of the values kept
}

type sizedValue[V any] struct {
	value V
	size  int
}

func (c *boundedCache[V]) get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[key]
	return e.value, ok
}

// put keeps v, counted as size bytes, under key, replacing what was there
// and evicting until it fits b. A value over b.item is not kept, and
// neither is the one it would have replaced.
func (c *boundedCache[V]) put(key string, v V, size int, b cacheBounds) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeLocked(key)
	if b.item > 0 && size > b.item {
		return
	}
	if c.items == nil {
		c.items = map[string]sizedValue[V]{}
	}
	for k, e := range c.items {
		if (b.bytes == 0 || c.size+size <= b.bytes) && (b.entries == 0 || len(c.items) < b.entries) {
			break
		}
		delete(c.items, k)
		c.size -= e.size
	}
	c.items[key] = sizedValue[V]{value: v, size: size}
	c.size += size
}

func (c *boundedCache[V]) remove(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeLocked(key)
}

func (c *boundedCache[V]) removeLocked(key string) {
	if e, ok := c.items[key]; ok {
		delete(c.items, key)
		c.size -= e.size
	}
}

// manifestCacheBytes bounds the memory the manifest cache holds.
const manifestCacheBytes = 32 << 20

// manifestCache keeps manifest bytes by storage key. A manifest's bytes
// never change for its digest, so an entry is never stale; the registry
// serves from it only for digests a tag resolution just read from the
// index, so a manifest garbage-collected by another replica is never served.
type manifestCache struct{ boundedCache[[]byte] }

// put keeps a manifest, unless it is so large that it would evict
// everything else.
func (c *manifestCache) put(key string, data []byte) {
	c.boundedCache.put(key, data, len(data), cacheBounds{bytes: manifestCacheBytes, item: manifestCacheBytes / 16})
}

// Bounds of the index cache: entries, and bytes of index documents (a
// parsed index takes about three times its document's size). A document
// over an eighth of the bytes is not kept.
const (
	indexCacheEntries = 4096
	indexCacheBytes   = 32 << 20
)

// indexCache keeps parsed index documents with the ETag they were read
// at. Every use revalidates with the backend (one stat on the local
// filesystem, a GET with If-None-Match on S3), so an index changed by any
// replica is seen at once; what the cache saves is reading and parsing
// an index that did not change, which for a model with many tags is most
// of the cost of resolving a tag.
type indexCache struct{ boundedCache[cachedIndex] }

type cachedIndex struct {
	etag string
	idx  spec.Index
	size int // of the document
}

// put keeps an index, or drops the older one when it is too large to keep.
func (c *indexCache) put(key string, e cachedIndex) {
	c.boundedCache.put(key, e, e.size, cacheBounds{entries: indexCacheEntries, bytes: indexCacheBytes, item: indexCacheBytes / 8})
}

// viewIndex returns the index document at key for reading only: it may be
// shared with other requests, so neither it nor its descriptors may be
// modified. It is never stale (see indexCache).
func (reg *Registry) viewIndex(ctx context.Context, key string) (spec.Index, error) {
	cached, _ := reg.indexes.get(key)
	data, info, err := storage.ReadAllIfChanged(ctx, reg.store, key, cached.etag, maxIndexSize)
	switch {
	case errors.Is(err, storage.ErrNotModified):
		return cached.idx, nil
	case errors.Is(err, storage.ErrNotFound):
		reg.indexes.remove(key)
		return spec.NewIndex(), nil
	case errors.Is(err, storage.ErrTooLarge):
		return spec.Index{}, &unreadableIndexError{key: key, err: err}
	case err != nil:
		return spec.Index{}, internal("read index", err)
	}
	idx, err := parseIndex(key, data)
	if err != nil {
		return spec.Index{}, err
	}
	reg.indexes.put(key, cachedIndex{etag: info.ETag, idx: idx, size: len(data)})
	return idx, nil
}
