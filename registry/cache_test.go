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
