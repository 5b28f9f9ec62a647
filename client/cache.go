package client

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/client/chunker"
	"modelx.io/modelx/spec"
)

// stateDir is the per-model-directory folder for the hash cache and partial
// downloads; push never uploads it, and spec.ValidatePath refuses it as a
// path element, so no manifest can make a pull write there.
const stateDir = spec.ClientStateDir

// cacheVersion changes when the cache's meaning changes; older caches are dropped.
const cacheVersion = 1

// fileKey identifies one version of a file without reading it.
type fileKey struct {
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime"`
	Inode   uint64 `json:"inode"`
}

func keyOf(fi os.FileInfo) fileKey {
	return fileKey{Size: fi.Size(), ModTime: fi.ModTime().UnixNano(), Inode: inodeOf(fi)}
}

// cachedFile is what hashing a file found: its digest and, for a large
// file, its chunks under the cache's chunker parameters.
type cachedFile struct {
	Key    fileKey       `json:"key"`
	Digest digest.Digest `json:"digest"`
	Chunks []spec.Chunk  `json:"chunks,omitempty"`
	// Boot is the boot a pull wrote the file in without making it durable
	// (see durable.go); empty when it was hashed from disk or synced. In
	// another boot the entry still says modelx knows the file, but its
	// digest is not trusted until the file is hashed again.
	Boot string `json:"boot,omitempty"`
}

// cachedPack remembers the pack built from a group, keyed by the group's
// names, digests and modes, so an unchanged group is not compressed again.
type cachedPack struct {
	Digest digest.Digest     `json:"digest"`
	Size   int64             `json:"size"`
	Files  []spec.PackedFile `json:"files"`
}

// hashCache is the on-disk cache in DIR/.modelx/cache.bin. It is safe for
// concurrent use.
//
// Its file entries are also the directory's record of which files modelx
// knows: each file a pull wrote, or found already holding a file of the
// version, and each file the last push sent (modelx.yaml included). Such a
// file holds a file of a version on the registry, so a pull may replace it,
// and PullOptions.Prune remove it, while it is unchanged since (see
// puller.unchangedSince); any other file is the user's (see pull_local.go).
// The cache is saved after a push or pull, also after a failed pull
// (files it placed are recorded), but not after a refused one.
type hashCache struct {
	path string
	boot string // this boot's ID (bootID)
	mu   sync.Mutex
	data struct {
		Version int                   `json:"version"`
		Chunker chunker.Params        `json:"chunker"`
		Files   map[string]cachedFile `json:"files"`
		Packs   map[string]cachedPack `json:"packs"`
	}
	dirty bool
}

// Cache file names in the state folder: the binary cache (cache_codec.go),
// and the JSON one of earlier versions, read once and replaced.
const (
	cacheFile     = "cache.bin"
	jsonCacheFile = "cache.json"
)

// loadCache reads the cache of dir; a missing, unreadable or stale cache is empty.
func loadCache(dir string, params chunker.Params) *hashCache {
	c := &hashCache{path: filepath.Join(dir, stateDir, cacheFile), boot: bootID()}
	if data, err := os.ReadFile(c.path); err == nil {
		if v, p, files, packs, err := decodeCache(data); err == nil {
			c.data.Version, c.data.Chunker, c.data.Files, c.data.Packs = v, p, files, packs
		}
	} else if data, err := os.ReadFile(filepath.Join(dir, stateDir, jsonCacheFile)); err == nil {
		_ = json.Unmarshal(data, &c.data)
		c.dirty = true // saved in the binary form
	}
	if c.data.Version != cacheVersion || c.data.Chunker != params {
		c.data.Files = nil
		c.data.Packs = nil
	}
	c.data.Version, c.data.Chunker = cacheVersion, params
	if c.data.Files == nil {
		c.data.Files = map[string]cachedFile{}
	}
	if c.data.Packs == nil {
		c.data.Packs = map[string]cachedPack{}
	}
	return c
}

func (c *hashCache) file(name string, fi os.FileInfo) (cachedFile, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.data.Files[name]
	return f, ok && f.Key == keyOf(fi) && c.durable(f)
}

// durable reports whether f's digest holds whatever crashed since it was
// recorded: it was read from disk or synced, or written in this boot.
func (c *hashCache) durable(f cachedFile) bool {
	return f.Boot == "" || f.Boot == c.boot
}

// markSynced records every file written in this boot as durable: the
// filesystem was synced since.
func (c *hashCache) markSynced() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, f := range c.data.Files {
		if f.Boot != "" && f.Boot == c.boot {
			f.Boot = ""
			c.data.Files[name] = f
			c.dirty = true
		}
	}
}

// entry returns the entry of name, whatever the file's info now.
func (c *hashCache) entry(name string) (cachedFile, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.data.Files[name]
	return f, ok
}

// fileNames returns the names of the files the cache describes, sorted.
func (c *hashCache) fileNames() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.data.Files))
}

// forget drops the entry of name, if there is one.
func (c *hashCache) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.data.Files[name]; ok {
		delete(c.data.Files, name)
		c.dirty = true
	}
}

func (c *hashCache) putFile(name string, f cachedFile) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.data.Files[name] = f
	c.dirty = true
}

// chunkedFiles returns a copy of the entries that hold a chunk list, by
// name. Their keys are not checked against the files.
func (c *hashCache) chunkedFiles() map[string]cachedFile {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]cachedFile{}
	for name, f := range c.data.Files {
		if len(f.Chunks) > 0 {
			out[name] = f
		}
	}
	return out
}

func (c *hashCache) pack(key string) (cachedPack, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.data.Packs[key]
	return p, ok
}

func (c *hashCache) putPack(key string, p cachedPack) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.data.Packs[key] = p
	c.dirty = true
}

// prune drops entries for files and packs not seen in the last scan.
func (c *hashCache) prune(files map[string]bool, packs map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name := range c.data.Files {
		if !files[name] {
			delete(c.data.Files, name)
			c.dirty = true
		}
	}
	for key := range c.data.Packs {
		if !packs[key] {
			delete(c.data.Packs, key)
			c.dirty = true
		}
	}
}

// changed reports whether the cache holds anything save has not written.
func (c *hashCache) changed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dirty
}

// save writes the cache atomically; a read-only directory just keeps no cache.
func (c *hashCache) save() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.dirty {
		return nil
	}
	data := encodeCache(c.data.Version, c.data.Chunker, c.data.Files, c.data.Packs)
	if err := os.MkdirAll(filepath.Dir(c.path), 0o755); err != nil {
		return err
	}
	if err := replaceFile(c.path, data); err != nil {
		return err
	}
	os.Remove(filepath.Join(filepath.Dir(c.path), jsonCacheFile))
	c.dirty = false
	return nil
}

// replaceFile writes data to path atomically: into a temp file beside it,
// renamed over it once complete. A failure leaves path as it was and no
// temp file. Nothing is fsynced: the state folder's files are hints a
// later run checks (see durable.go).
func replaceFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
