package registry

import (
	"fmt"
	"testing"
)

func TestManifestCacheBound(t *testing.T) {
	var c manifestCache
	item := make([]byte, manifestCacheBytes/32)
	for i := range 100 {
		c.put(fmt.Sprint(i), item)
		if c.size > manifestCacheBytes {
			t.Fatalf("cache holds %d bytes, over the bound %d", c.size, manifestCacheBytes)
		}
	}
	if _, ok := c.get("99"); !ok {
		t.Fatal("the newest entry was evicted")
	}
	c.remove("99")
	if _, ok := c.get("99"); ok {
		t.Fatal("a removed entry is still served")
	}
	c.put("huge", make([]byte, manifestCacheBytes))
	if _, ok := c.get("huge"); ok {
		t.Fatal("a huge manifest was cached")
	}
}

func TestIndexCacheBounds(t *testing.T) {
	var c indexCache
	for i := range 2 * indexCacheEntries {
		c.put(fmt.Sprint(i), cachedIndex{etag: fmt.Sprint(i), size: indexCacheBytes / 64})
		if c.size > indexCacheBytes || len(c.items) > indexCacheEntries {
			t.Fatalf("cache holds %d bytes in %d entries, over the bounds %d, %d", c.size, len(c.items), indexCacheBytes, indexCacheEntries)
		}
	}
	for i := range 2 * indexCacheEntries {
		c.put(fmt.Sprint(i), cachedIndex{etag: fmt.Sprint(i), size: 10})
		if len(c.items) > indexCacheEntries {
			t.Fatalf("cache holds %d entries, over the bound %d", len(c.items), indexCacheEntries)
		}
	}
	c.put("a", cachedIndex{etag: "1", size: 100})
	c.put("a", cachedIndex{etag: "2", size: 50}) // replaces, and the size follows
	if e, ok := c.get("a"); !ok || e.etag != "2" {
		t.Fatalf("replaced entry: %+v %v", e, ok)
	}
	sum := 0
	for _, e := range c.items {
		sum += e.size
	}
	if sum != c.size {
		t.Fatalf("size %d, entries sum to %d", c.size, sum)
	}
	c.put("a", cachedIndex{etag: "3", size: indexCacheBytes}) // too big: dropped, not kept stale
	if _, ok := c.get("a"); ok {
		t.Fatal("an index over the per-entry bound is cached, or its older version stayed")
	}
}
