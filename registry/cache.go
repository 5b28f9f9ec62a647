package registry

import (
	"context"
	"errors"
	"sync"

	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
)

// manifestCacheBytes bounds the memory the manifest cache holds.
const manifestCacheBytes = 32 << 20

// manifestCache keeps manifest bytes by storage key. A manifest's bytes
// never change for its digest, so an entry is never stale; the registry
// serves from it only for digests a tag resolution just read from the
// index, so a manifest garbage-collected by another replica is never served.
type manifestCache struct {
	mu    sync.Mutex
	items map[string][]byte
	size  int
}

func (c *manifestCache) get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	data, ok := c.items[key]
	return data, ok
}

func (c *manifestCache) put(key string, data []byte) {
	if len(data) > manifestCacheBytes/16 {
		return // a huge manifest would evict everything else
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.items == nil {
		c.items = map[string][]byte{}
	}
	if _, ok := c.items[key]; ok {
		return
	}
	for k, v := range c.items { // map order is random: random eviction
		if c.size+len(data) <= manifestCacheBytes {
			break
		}
		delete(c.items, k)
		c.size -= len(v)
	}
	c.items[key] = data
	c.size += len(data)
}

func (c *manifestCache) remove(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.items[key]; ok {
		delete(c.items, key)
		c.size -= len(v)
	}
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
type indexCache struct {
	mu    sync.Mutex
	items map[string]cachedIndex
	size  int
}

type cachedIndex struct {
	etag string
	idx  spec.Index
	size int
}

func (c *indexCache) get(key string) (cachedIndex, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[key]
	return e, ok
}

func (c *indexCache) put(key string, e cachedIndex) {
	if e.size > indexCacheBytes/8 {
		c.remove(key)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.items == nil {
		c.items = map[string]cachedIndex{}
	}
	if old, ok := c.items[key]; ok {
		delete(c.items, key)
		c.size -= old.size
	}
	for k, v := range c.items { // map order is random: random eviction
		if c.size+e.size <= indexCacheBytes && len(c.items) < indexCacheEntries {
			break
		}
		delete(c.items, k)
		c.size -= v.size
	}
	c.items[key] = e
	c.size += e.size
}

func (c *indexCache) remove(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.items[key]; ok {
		delete(c.items, key)
		c.size -= v.size
	}
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
