package ui

import (
	"context"
	"html/template"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"

	"modelx.io/modelx/spec"
)

// DefaultCacheBytes bounds, by default, the memory of the versions the UI
// keeps prepared.
const DefaultCacheBytes = 128 << 20

// Bounds of preparing versions: how many manifests are read and parsed at
// once (each may be 16 MiB, and costs a few times that to parse), how long
// a page waits for its turn before it answers that the registry is busy,
// and how long preparing may take.
const (
	concurrentLoads = 2
	loadWait        = 30 * time.Second
	prepareTimeout  = 2 * time.Minute
)

// version is what the UI shows of one version that does not depend on the
// page or the viewer, prepared once: the manifest, its files sorted by
// path with the totals of their directories, modelx.yaml and the rendered
// README. It is shared by every page that shows the version, so nothing in
// it may be modified.
type version struct {
	manifest    *spec.Manifest
	totalSize   int64
	files       []fileEntry
	dirs        map[string]dirTotal
	config      *spec.ModelConfig
	configError string
	readme      template.HTML
	readmeName  string
	readmeError string
	// size estimates the memory it holds, for the cache's bound.
	size int64
	// partial is set when reading modelx.yaml or the README failed for a
	// reason that may pass: such a version is shown, but not kept.
	partial bool
}

// dirTotal is the size and the file count of everything under a directory.
type dirTotal struct {
	size  int64
	files int
}

// versionCache keeps prepared versions by model and manifest digest, up
// to a total estimated size. A manifest's bytes never change for its
// digest, so an entry is never stale; it is keyed by model too, because
// who may see a version depends on its model. Concurrent pages of one
// version prepare it once, and at most concurrentLoads versions are
// prepared at a time.
type versionCache struct {
	limit int64
	group singleflight.Group
	loads chan struct{}

	mu    sync.Mutex
	items map[string]*version
	size  int64
}

func newVersionCache(limit int64) *versionCache {
	return &versionCache{limit: limit, loads: make(chan struct{}, concurrentLoads), items: map[string]*version{}}
}

func (c *versionCache) get(key string) (*version, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.items[key]
	return v, ok
}

// put keeps v, evicting others at random as needed. A version over half
// the bound is not kept: it would evict everything else.
func (c *versionCache) put(key string, v *version) {
	if v.size > c.limit/2 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[key]; ok {
		return
	}
	for k, old := range c.items { // map order is random: random eviction
		if c.size+v.size <= c.limit {
			break
		}
		delete(c.items, k)
		c.size -= old.size
	}
	c.items[key] = v
	c.size += v.size
}

// errBusy is the answer of a page whose version waited too long for its
// turn to be prepared.
var errBusy = &pageError{status: http.StatusServiceUnavailable, msg: "The registry is busy reading other versions; try again in a moment."}

// version returns the prepared version d of the model. keep says whether
// it may be served from and kept in the cache: only when a tag of the
// model names it, so that a version garbage collection removed is never
// shown. The page's context bounds only its own wait; a preparation that
// other pages wait for goes on without it.
func (u *UI) version(ctx context.Context, repo, name string, d digest.Digest, keep bool) (*version, error) {
	key := repo + "/" + name + "@" + string(d)
	if keep {
		if v, ok := u.versions.get(key); ok {
			return v, nil
		}
	}
	ch := u.versions.group.DoChan(key, func() (any, error) {
		if v, ok := u.versions.get(key); ok && keep {
			return v, nil // prepared by a flight that ended after the check above
		}
		ctx := context.WithoutCancel(ctx)
		wait := time.NewTimer(loadWait)
		defer wait.Stop()
		select {
		case u.versions.loads <- struct{}{}:
			defer func() { <-u.versions.loads }()
		case <-wait.C:
			return nil, errBusy
		}
		ctx, cancel := context.WithTimeout(ctx, prepareTimeout)
		defer cancel()
		v, err := u.prepare(ctx, repo, name, d)
		if err == nil && keep && !v.partial {
			u.versions.put(key, v)
		}
		return v, err
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*version), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// prepare reads and parses version d and derives what its pages show.
func (u *UI) prepare(ctx context.Context, repo, name string, d digest.Digest) (*version, error) {
	m, err := u.opts.Source.Manifest(ctx, repo, name, d)
	if err != nil {
		return nil, err
	}
	v := &version{manifest: m, totalSize: m.TotalSize(), files: manifestFiles(m)}
	v.dirs = dirTotals(v.files)
	var transient bool
	v.config, v.configError, transient = u.readConfig(ctx, repo, name, m)
	v.partial = transient
	v.readme, v.readmeName, v.readmeError, transient = u.readme(ctx, repo, name, m)
	v.partial = v.partial || transient
	v.size = v.estimateSize()
	return v, nil
}

// dirTotals sums the files under every directory of files.
func dirTotals(files []fileEntry) map[string]dirTotal {
	totals := map[string]dirTotal{}
	for _, f := range files {
		for dir := f.Path; ; {
			i := strings.LastIndexByte(dir, '/')
			if i < 0 {
				break
			}
			dir = dir[:i]
			t := totals[dir]
			t.size += f.Size
			t.files++
			totals[dir] = t
		}
	}
	return totals
}

// Estimated memory of the parts of a version, in bytes, besides the
// strings they hold.
const (
	descriptorBytes = 320 // a blob descriptor
	packedFileBytes = 80  // a file in a pack
	chunkBytes      = 32  // a chunk of a chunked file
	fileEntryBytes  = 40  // an entry of the sorted file list
	dirBytes        = 64  // an entry of the directory totals
)

// estimateSize estimates the memory v holds: the parsed manifest, the
// file list and directory totals, and the README.
func (v *version) estimateSize() int64 {
	n := int64(descriptorBytes + len(v.readme) + len(v.readmeError) + len(v.configError))
	for _, b := range v.manifest.Blobs {
		n += descriptorBytes + int64(len(b.Name)+len(b.Digest))
		for _, f := range b.Files {
			n += packedFileBytes + int64(len(f.Name)+len(f.Digest))
		}
		for _, c := range b.Chunks {
			n += chunkBytes + int64(len(c.Digest))
		}
		for k, val := range b.Annotations {
			n += int64(len(k) + len(val))
		}
	}
	n += int64(len(v.files)) * fileEntryBytes
	for dir := range v.dirs {
		n += dirBytes + int64(len(dir))
	}
	return n
}
