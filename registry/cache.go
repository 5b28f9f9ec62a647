package registry

import (
	"sync"
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
