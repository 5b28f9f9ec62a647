package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"modelx.io/modelx/client/chunker"
	"modelx.io/modelx/client/pack"
	"modelx.io/modelx/spec"
)

// PushResult reports a push.
type PushResult struct {
	Reference        string        `json:"reference"`
	Digest           digest.Digest `json:"digest"`
	UploadedBytes    int64         `json:"uploaded_bytes"`
	SkippedBytes     int64         `json:"skipped_bytes"`
	BlobsTransferred int           `json:"blobs_transferred"`
	BlobsSkipped     int           `json:"blobs_skipped"`
	Files            int           `json:"files"`
	DurationSeconds  float64       `json:"duration_seconds"`
}

// upload is one blob a push may send.
type upload struct {
	label  string
	digest digest.Digest
	size   int64
	open   func() (io.ReadCloser, error)
}

// hashedFile is a scanned file with its content identity.
type hashedFile struct {
	localFile
	digest digest.Digest
	chunks []spec.Chunk // more than one: a chunked file
}

// Push uploads the model in dir as ref (which must name a tag): blobs the
// registry lacks first, in parallel, then the manifest. Unchanged files are
// not read again (hash cache), and blobs the registry has are not sent.
func (c *Client) Push(ctx context.Context, ref Reference, dir string) (*PushResult, error) {
	start := time.Now()
	if ref.Digest != "" {
		return nil, fmt.Errorf("push needs a tag, not a digest: use %s/%s:TAG", ref.Registry, ref.Model())
	}
	files, err := scanDir(dir)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(files, func(f localFile) bool { return f.name == spec.ConfigFileName })
	if i < 0 {
		return nil, fmt.Errorf("%s has no %s: run `modelx init %s` to write one", dir, spec.ConfigFileName, dir)
	}
	configFile := files[i]
	files = slices.Delete(files, i, i+1)
	configData, err := os.ReadFile(configFile.path)
	if err != nil {
		return nil, err
	}
	if _, err := spec.ParseModelConfig(configData); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}

	cache := loadCache(dir, c.opts.Chunker)
	hashed, err := c.hashFiles(ctx, files, cache)
	if err != nil {
		return nil, err
	}
	tmpDir := filepath.Join(dir, stateDir, "tmp")
	m, uploads, packKeys, err := c.plan(ctx, hashed, cache, tmpDir)
	if err != nil {
		return nil, err
	}
	defer cleanupPacks(tmpDir)
	configDigest := digest.FromBytes(configData)
	m.Config = spec.Descriptor{Name: spec.ConfigFileName, MediaType: spec.MediaTypeConfig, Digest: configDigest, Size: int64(len(configData)), Mode: configFile.info.Mode().Perm()}
	uploads = append([]upload{{label: spec.ConfigFileName, digest: configDigest, size: int64(len(configData)),
		open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(configData)), nil }}}, uploads...)

	api := c.API(ref.Registry)
	res := &PushResult{Reference: ref.String(), Files: len(files) + 1}
	missing, current, err := c.missingBlobs(ctx, api, ref, uploads, res)
	if err != nil {
		return nil, err
	}
	if err := c.uploadAll(ctx, api, ref, missing, res); err != nil {
		return nil, err
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if d := digest.FromBytes(data); d == current && len(missing) == 0 {
		// The tag already names exactly this manifest, and every blob was
		// there: nothing to write (and no blob re-check on the registry).
		res.Digest = d
	} else if res.Digest, err = api.PutManifest(ctx, ref.Repository, ref.Name, ref.Tag, data); err != nil {
		return nil, fmt.Errorf("push manifest: %w", err)
	}
	names := map[string]bool{}
	for _, f := range hashed {
		names[f.name] = true
	}
	cache.prune(names, packKeys)
	_ = cache.save() // a read-only directory just keeps no cache
	res.DurationSeconds = time.Since(start).Seconds()
	return res, nil
}

// hashFiles finds each file's digest (small files) or chunks (large files),
// from the cache when the file is unchanged, else by reading it once.
func (c *Client) hashFiles(ctx context.Context, files []localFile, cache *hashCache) ([]hashedFile, error) {
	out := make([]hashedFile, len(files))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Concurrency)
	for i, f := range files {
		g.Go(func() error {
			if cf, ok := cache.file(f.name, f.info); ok {
				out[i] = hashedFile{localFile: f, digest: cf.Digest, chunks: cf.Chunks}
				return nil
			}
			h, err := c.hashFile(gctx, f)
			if err != nil {
				return err
			}
			out[i] = h
			cache.putFile(f.name, cachedFile{Key: keyOf(f.info), Digest: h.digest, Chunks: h.chunks})
			return nil
		})
	}
	return out, g.Wait()
}

func (c *Client) hashFile(ctx context.Context, f localFile) (hashedFile, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return hashedFile{}, err
	}
	defer fh.Close()
	if f.info.Size() < c.opts.SmallFileThreshold {
		h := sha256.New()
		if _, err := io.Copy(h, fh); err != nil {
			return hashedFile{}, fmt.Errorf("read %s: %w", f.name, err)
		}
		return hashedFile{localFile: f, digest: digest.NewDigest(digest.SHA256, h)}, nil
	}
	ck, err := chunker.New(fh, c.opts.Chunker)
	if err != nil {
		return hashedFile{}, err
	}
	var chunks []spec.Chunk
	for {
		if err := ctx.Err(); err != nil {
			return hashedFile{}, err
		}
		ch, err := ck.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return hashedFile{}, fmt.Errorf("read %s: %w", f.name, err)
		}
		chunks = append(chunks, spec.Chunk{Digest: digest.FromBytes(ch.Data), Size: int64(len(ch.Data))})
	}
	h := hashedFile{localFile: f, chunks: chunks}
	if len(chunks) == 1 {
		h.digest = chunks[0].Digest
	} else {
		h.digest = spec.ChunkListDigest(chunks)
	}
	return h, nil
}

// plan builds the manifest's blob list and the uploads behind it.
func (c *Client) plan(ctx context.Context, files []hashedFile, cache *hashCache, tmpDir string) (*spec.Manifest, []upload, map[string]bool, error) {
	m := &spec.Manifest{SchemaVersion: spec.SchemaVersion, MediaType: spec.MediaTypeManifest, Blobs: []spec.Descriptor{}}
	var uploads []upload
	byName := map[string]hashedFile{}
	var small []pack.Entry
	for _, f := range files {
		mode := f.info.Mode().Perm()
		if f.info.Size() < c.opts.SmallFileThreshold {
			byName[f.name] = f
			small = append(small, pack.Entry{Name: f.name, Mode: mode, Size: f.info.Size(), Digest: f.digest})
			continue
		}
		if len(f.chunks) == 1 {
			m.Blobs = append(m.Blobs, spec.Descriptor{Name: f.name, MediaType: spec.MediaTypeFile, Digest: f.digest, Size: f.info.Size(), Mode: mode})
		} else {
			m.Blobs = append(m.Blobs, spec.Descriptor{Name: f.name, MediaType: spec.MediaTypeChunkedFile, Digest: f.digest, Size: f.info.Size(), Mode: mode, Chunks: f.chunks})
		}
		var offset int64
		for i, ch := range f.chunks {
			label := f.name
			if len(f.chunks) > 1 {
				label = fmt.Sprintf("%s [%d/%d]", f.name, i+1, len(f.chunks))
			}
			uploads = append(uploads, upload{label: label, digest: ch.Digest, size: ch.Size, open: sectionOpener(f.path, offset, ch.Size)})
			offset += ch.Size
		}
	}
	open := func(name string) (io.ReadCloser, error) { return os.Open(byName[name].path) }
	packKeys := map[string]bool{}
	for i, group := range pack.Group(small) {
		key := groupKey(group)
		packKeys[key] = true
		p, ok := cache.pack(key)
		if !ok {
			if err := ctx.Err(); err != nil {
				return nil, nil, nil, err
			}
			data, recs, err := pack.Build(group, open)
			if err != nil {
				return nil, nil, nil, err
			}
			p = cachedPack{Digest: digest.FromBytes(data), Size: int64(len(data)), Files: recs}
			if err := writeTempPack(tmpDir, p.Digest, data); err != nil {
				return nil, nil, nil, err
			}
			cache.putPack(key, p)
		}
		name := fmt.Sprintf("pack-%04d", i)
		m.Blobs = append(m.Blobs, spec.Descriptor{Name: name, MediaType: spec.MediaTypePack, Digest: p.Digest, Size: p.Size, Files: p.Files})
		uploads = append(uploads, upload{label: fmt.Sprintf("%s (%d files)", name, len(group)), digest: p.Digest, size: p.Size,
			open: packOpener(tmpDir, p.Digest, group, open)})
	}
	return m, uploads, packKeys, nil
}

// groupKey identifies a group's content: names, digests and modes.
func groupKey(group []pack.Entry) string {
	h := sha256.New()
	for _, e := range group {
		fmt.Fprintf(h, "%s\x00%s\x00%o\n", e.Name, e.Digest, e.Mode)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func tempPackPath(tmpDir string, d digest.Digest) string {
	return filepath.Join(tmpDir, "pack-"+d.Encoded())
}

func writeTempPack(tmpDir string, d digest.Digest, data []byte) error {
	if err := os.MkdirAll(tmpDir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(tempPackPath(tmpDir, d), data, 0o644)
}

func cleanupPacks(tmpDir string) {
	matches, _ := filepath.Glob(filepath.Join(tmpDir, "pack-*"))
	for _, p := range matches {
		os.Remove(p)
	}
}

// packOpener reads the pack built during planning, or builds it again
// (deterministically) when planning found it in the cache.
func packOpener(tmpDir string, d digest.Digest, group []pack.Entry, open func(string) (io.ReadCloser, error)) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		if f, err := os.Open(tempPackPath(tmpDir, d)); err == nil {
			return f, nil
		}
		data, _, err := pack.Build(group, open)
		if err != nil {
			return nil, err
		}
		if got := digest.FromBytes(data); got != d {
			return nil, fmt.Errorf("a small file changed while pushing (pack %s is now %s); push again", d, got)
		}
		return io.NopCloser(bytes.NewReader(data)), nil
	}
}

func sectionOpener(path string, offset, size int64) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		return struct {
			io.Reader
			io.Closer
		}{io.NewSectionReader(f, offset, size), f}, nil
	}
}

// missingBlobs returns the uploads the registry lacks, and the digest of
// the manifest the tag names now ("" if none). Blobs that manifest names are
// known present; the rest are asked with HEAD.
func (c *Client) missingBlobs(ctx context.Context, api *API, ref Reference, uploads []upload, res *PushResult) ([]upload, digest.Digest, error) {
	known := map[digest.Digest]bool{}
	var current digest.Digest
	if cur, _, d, err := api.GetManifest(ctx, ref.Repository, ref.Name, ref.Tag); err == nil {
		current = d
		for _, d := range cur.Referenced() {
			known[d.Digest] = true
		}
	} else if code := Code(err); code != spec.ErrorManifestUnknown && code != spec.ErrorIndexUnknown {
		return nil, "", err
	}
	seen := map[digest.Digest]bool{}
	var unique []upload
	for _, u := range uploads {
		if !seen[u.digest] {
			seen[u.digest] = true
			unique = append(unique, u)
		}
	}
	present := make([]bool, len(unique))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4 * c.opts.Concurrency)
	for i, u := range unique {
		if known[u.digest] {
			present[i] = true
			continue
		}
		g.Go(func() error {
			ok, err := api.BlobExists(gctx, ref.Repository, ref.Name, u.digest, u.size)
			present[i] = ok
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, "", err
	}
	var missing []upload
	for i, u := range unique {
		if present[i] {
			res.BlobsSkipped++
			res.SkippedBytes += u.size
		} else {
			missing = append(missing, u)
		}
	}
	return missing, current, nil
}

func (c *Client) uploadAll(ctx context.Context, api *API, ref Reference, missing []upload, res *PushResult) error {
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Concurrency)
	for _, u := range missing {
		g.Go(func() error {
			tracker := c.opts.Progress.Start(u.label, u.size)
			var sent atomic.Int64
			open := func() (io.ReadCloser, error) {
				tracker.Add(-sent.Swap(0)) // a retry starts over
				rc, err := u.open()
				if err != nil {
					return nil, err
				}
				return &countingReadCloser{ReadCloser: rc, add: func(n int64) { sent.Add(n); tracker.Add(n) }}, nil
			}
			err := api.PutBlob(gctx, ref.Repository, ref.Name, u.digest, u.size, open)
			tracker.Done(err)
			if err != nil {
				if Code(err) == spec.ErrorDigestInvalid {
					return fmt.Errorf("upload %s: %w (did the file change during the push?)", u.label, err)
				}
				return fmt.Errorf("upload %s: %w", u.label, err)
			}
			mu.Lock()
			res.BlobsTransferred++
			res.UploadedBytes += u.size
			mu.Unlock()
			return nil
		})
	}
	return g.Wait()
}

type countingReadCloser struct {
	io.ReadCloser
	add func(int64)
}

func (c *countingReadCloser) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if n > 0 {
		c.add(int64(n))
	}
	return n, err
}
