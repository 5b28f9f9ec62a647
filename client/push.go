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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"modelx.io/modelx/client/pack"
	"modelx.io/modelx/content"
	"modelx.io/modelx/internal/humanize"
	"modelx.io/modelx/spec"
)

// PushResult reports a push.
type PushResult struct {
	Reference string        `json:"reference"`
	Digest    digest.Digest `json:"digest"`
	// PreviousDigest is the version the tag named before, when the push
	// moved it.
	PreviousDigest digest.Digest `json:"previous_digest,omitempty"`
	// UploadedBytes and BlobsTransferred count the blobs sent; SkippedBytes
	// and BlobsSkipped those not sent because the registry held them for
	// the model already (or mounted them from --from).
	UploadedBytes int64 `json:"uploaded_bytes"`
	Transfer
}

// upload is one blob a push may send.
type upload struct {
	label   string
	digest  digest.Digest
	size    int64
	open    func() (io.ReadCloser, error)
	release func()       // if set, called once the upload is over
	file    *fileTracker // the progress of the file the blob belongs to
	held    bool         // a send slot is taken for it already (sender.hold)
}

// PushOptions tune a push.
type PushOptions struct {
	// From names a model on the same registry, "REPOSITORY/NAME", that may
	// hold blobs of this push (the model the directory was pulled from, or
	// an earlier copy): where the caller may pull it, the registry links
	// those blobs to the pushed model without any bytes being sent.
	From string
}

// Push uploads the model in dir as ref; see PushWithOptions.
func (c *Client) Push(ctx context.Context, ref Reference, dir string) (*PushResult, error) {
	return c.PushWithOptions(ctx, ref, dir, PushOptions{})
}

// PushWithOptions uploads the model in dir as ref (which must name a tag), then its
// manifest. Hashing and uploading overlap: each blob is sent as soon as its
// digest is known, while later files are still being read. Unchanged files
// are not read again (hash cache), blobs the tag's current manifest names
// are not offered, and blobs the registry stores anyway cost one body-less
// request.
func (c *Client) PushWithOptions(ctx context.Context, ref Reference, dir string, opts PushOptions) (*PushResult, error) {
	start := time.Now()
	ctx, span := phase(ctx, "modelx.push")
	defer span.End()
	if opts.From != "" {
		if err := validateModelName(opts.From); err != nil {
			return nil, &OptionError{Option: "PushOptions.From", Err: err}
		}
	}
	if ref.Digest != "" {
		return nil, fmt.Errorf("push needs a tag, not a digest: use %s/%s:TAG", ref.Registry, ref.Model())
	}
	_, scan := phase(ctx, "modelx.push.scan")
	files, tree, err := scanDir(dir)
	scan.End()
	if err != nil {
		return nil, err
	}
	if unchanged := c.unchangedPush(ctx, ref, dir, tree); unchanged != nil {
		unchanged.DurationSeconds = time.Since(start).Seconds()
		return unchanged, nil
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
	cfg, err := spec.ParseModelConfig(configData)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if err := checkModelFiles(dir, cfg, files); err != nil {
		return nil, err
	}

	res := &PushResult{Reference: ref.String(), Transfer: Transfer{Files: len(files) + 1}}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s := c.newSender(ctx, cancel, c.API(ref.Registry), ref, res)
	s.from = opts.From
	go s.loadCurrent()

	_, load := phase(ctx, "modelx.push.cache.load")
	cache := loadCache(dir, c.opts.Chunker)
	load.End()
	_, lay := phase(ctx, "modelx.push.layout")
	layout := c.layoutOf(files, cache)
	lay.End()
	c.opts.Progress.Plan(int64(len(configData))+layout.plannedBytes(), 0)
	configDigest := digest.FromBytes(configData)
	configProgress := startFile(c.opts.Progress, spec.ConfigFileName, int64(len(configData)))
	s.send(upload{label: spec.ConfigFileName, digest: configDigest, size: int64(len(configData)), file: configProgress,
		open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(configData)), nil }})
	configProgress.seal(nil)
	// Recorded like every other file pushed, so that a pull of a newer
	// version may replace it (see hashCache). Its key is from before the
	// read: a change in between makes it look changed, never unchanged.
	cache.putFile(spec.ConfigFileName, cachedFile{Key: keyOf(configFile.info), Digest: configDigest})
	bctx, blobs := phase(ctx, "modelx.push.blobs")
	m, packKeys, buildErr := c.buildManifest(bctx, cancel, layout, cache, s)
	err = s.wait()
	blobs.End()
	if err != nil {
		return nil, err
	}
	if buildErr != nil {
		return nil, buildErr
	}
	m.Config = spec.Descriptor{Name: spec.ConfigFileName, MediaType: spec.MediaTypeConfig, Digest: configDigest, Size: int64(len(configData)), Mode: configFile.info.Mode().Perm()}
	mctx, put := phase(ctx, "modelx.push.manifest")
	defer put.End() // ended early below; a second End is ignored
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if d := digest.FromBytes(data); d == s.currentDigest && res.BlobsTransferred == 0 {
		// The tag already names exactly this manifest, and every blob was
		// there: nothing to write (and no blob re-check on the registry).
		res.Digest = d
	} else if res.Digest, err = s.putManifest(mctx, data); err != nil {
		return nil, fmt.Errorf("push manifest: %w", err)
	}
	put.End()
	if s.currentDigest != res.Digest {
		res.PreviousDigest = s.currentDigest
	}
	names := map[string]bool{spec.ConfigFileName: true}
	for _, f := range files {
		names[f.name] = true
	}
	_, save := phase(ctx, "modelx.push.cache.save")
	cache.prune(names, packKeys)
	_ = cache.save() // a read-only directory just keeps no cache
	save.End()
	c.recordPush(ref, dir, tree, res)
	res.DurationSeconds = time.Since(start).Seconds()
	return res, nil
}

// checkModelFiles refuses modelFiles entries that match no file the push
// would send (files, and the config): a deployment that pulls only the
// modelFiles would fail on them. It names each, and says when the path
// is there but left out (.modelxignore, or a .git or .modelx directory).
func checkModelFiles(dir string, cfg *spec.ModelConfig, files []localFile) error {
	if len(cfg.ModelFiles) == 0 {
		return nil
	}
	names := make([]string, 0, len(files)+1)
	names = append(names, spec.ConfigFileName)
	for _, f := range files {
		names = append(names, f.name)
	}
	unmatched := spec.UnmatchedModelFiles(cfg.ModelFiles, names, nil)
	if len(unmatched) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: modelFiles lists %d %s that match no file in %s (an entry names a file, or a directory as \"dir/\"):", spec.ConfigFileName, len(unmatched), humanize.Plural(len(unmatched), "entry", "entries"), dir)
	for _, e := range unmatched {
		fmt.Fprintf(&b, "\n  %q", e)
		if _, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(strings.TrimSuffix(e, "/")))); err == nil {
			fmt.Fprintf(&b, ": it is there, but push leaves it out (%s, .git or .modelx)", IgnoreFile)
		} else {
			b.WriteString(": no such file or directory")
		}
	}
	fmt.Fprintf(&b, "\nfix the entries in %s, or add the files, then push again", filepath.Join(dir, spec.ConfigFileName))
	return errors.New(b.String())
}

// pushLayout is how a push cuts the model's files into blobs.
type pushLayout struct {
	large  []localFile          // chunked, file by file
	groups [][]pack.Entry       // packed, group by group
	byName map[string]localFile // the packed files
	packed []int64              // each group's planned bytes
}

// layoutOf sorts the files into large and small and groups the small ones
// into packs, with the digests the cache knows.
func (c *Client) layoutOf(files []localFile, cache *hashCache) pushLayout {
	l := pushLayout{byName: map[string]localFile{}}
	var small []pack.Entry
	for _, f := range files {
		if f.info.Size() >= c.opts.SmallFileThreshold {
			l.large = append(l.large, f)
			continue
		}
		l.byName[f.name] = f
		e := pack.Entry{Name: f.name, Mode: f.info.Mode().Perm(), Size: f.info.Size()}
		if cf, ok := cache.file(f.name, f.info); ok {
			e.Digest = cf.Digest
		}
		small = append(small, e)
	}
	l.groups = pack.Group(small)
	l.packed = make([]int64, len(l.groups))
	for i, group := range l.groups {
		if p, ok := cachedGroup(group, cache); ok {
			l.packed[i] = p.Size
			continue
		}
		for _, e := range group {
			l.packed[i] += e.Size // until the pack is built
		}
	}
	return l
}

// plannedBytes is what the push moves or skips, as far as it is known
// before any file is read: the large files' sizes, and each pack's size
// when the cache knows it, else the sizes of its files.
func (l pushLayout) plannedBytes() int64 {
	var n int64
	for _, f := range l.large {
		n += f.info.Size()
	}
	for _, p := range l.packed {
		n += p
	}
	return n
}

// cachedGroup returns the pack of a group whose files and pack are all in
// the cache.
func cachedGroup(group []pack.Entry, cache *hashCache) (cachedPack, bool) {
	if slices.ContainsFunc(group, func(e pack.Entry) bool { return e.Digest == "" }) {
		return cachedPack{}, false
	}
	return cache.pack(groupKey(group))
}

// buildManifest hashes the files (large ones into chunks, small ones into
// packs, both from the cache when unchanged) and hands every blob to s as
// soon as it is known. Files are worked on Concurrency at a time; a full
// sender holds them back, so memory stays bounded.
func (c *Client) buildManifest(ctx context.Context, cancel context.CancelCauseFunc, l pushLayout, cache *hashCache, s *sender) (*spec.Manifest, map[string]bool, error) {
	large, groups, byName := l.large, l.groups, l.byName
	blobs := make([]spec.Descriptor, len(large)+len(groups))
	packKeys := make([]string, len(groups))

	var g errgroup.Group
	g.SetLimit(c.opts.Concurrency)
	work := func(f func() error) {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return context.Cause(ctx)
			}
			err := f()
			if err != nil {
				cancel(err)
			}
			return err
		})
	}
	for i, f := range large {
		work(func() (err error) {
			blobs[i], err = c.pushLargeFile(ctx, f, cache, s)
			return err
		})
	}
	open := func(name string) (io.ReadCloser, error) { return os.Open(byName[name].path) }
	for i, group := range groups {
		work(func() (err error) {
			name := fmt.Sprintf("pack-%04d", i)
			blobs[len(large)+i], packKeys[i], err = c.pushPack(name, group, l.packed[i], byName, open, cache, s)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	keys := map[string]bool{}
	for _, k := range packKeys {
		keys[k] = true
	}
	return &spec.Manifest{SchemaVersion: spec.SchemaVersion, MediaType: spec.MediaTypeManifest, Blobs: blobs}, keys, nil
}

// pushLargeFile sends a large file's chunks as they are found (or, from
// the cache, at once) and returns its descriptor.
func (c *Client) pushLargeFile(ctx context.Context, f localFile, cache *hashCache, s *sender) (spec.Descriptor, error) {
	chunks, err := c.fileChunks(ctx, f, cache, s)
	if err != nil {
		return spec.Descriptor{}, err
	}
	d := spec.Descriptor{Name: f.name, MediaType: spec.MediaTypeFile, Digest: chunks[0].Digest, Size: f.info.Size(), Mode: f.info.Mode().Perm()}
	if len(chunks) > 1 {
		d.MediaType, d.Digest, d.Chunks = spec.MediaTypeChunkedFile, spec.ChunkListDigest(chunks), chunks
	}
	return d, nil
}

// fileChunks returns a large file's chunks, sending each to s. Its
// progress is one file, planned at the size the scan saw.
func (c *Client) fileChunks(ctx context.Context, f localFile, cache *hashCache, s *sender) (chunks []spec.Chunk, err error) {
	progress := startFile(c.opts.Progress, f.name, f.info.Size())
	defer func() {
		if err == nil && chunksSize(chunks) != f.info.Size() { // changed since the scan
			c.opts.Progress.Plan(chunksSize(chunks)-f.info.Size(), 0)
		}
		progress.seal(err)
	}()
	emit := func(chunks []spec.Chunk, offset int64) {
		ch := chunks[len(chunks)-1]
		label := fmt.Sprintf("%s [%d]", f.name, len(chunks))
		s.send(upload{label: label, digest: ch.Digest, size: ch.Size, open: sectionOpener(f.path, offset, ch.Size), file: progress})
	}
	if cf, ok := cache.file(f.name, f.info); ok && len(cf.Chunks) > 0 {
		var offset int64
		for i := range cf.Chunks {
			emit(cf.Chunks[:i+1], offset)
			offset += cf.Chunks[i].Size
		}
		return cf.Chunks, nil
	}
	fh, err := os.Open(f.path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	chunks, err = hashChunks(ctx, fh, c.opts.Chunker, emit)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("read %s: %w", f.name, err)
	}
	if len(chunks) == 0 { // emptied since the scan
		return nil, fmt.Errorf("%s changed while it was being pushed (now empty); push again", f.name)
	}
	cache.putFile(f.name, cachedFile{Key: keyOf(f.info), Digest: chunkedDigest(chunks), Chunks: chunks})
	return chunks, nil
}

// chunkedDigest is a large file's digest: its one chunk's, or the digest of
// its chunk list.
func chunkedDigest(chunks []spec.Chunk) digest.Digest {
	if len(chunks) == 1 {
		return chunks[0].Digest
	}
	return spec.ChunkListDigest(chunks)
}

// pushPack sends the pack of one group of small files and returns its
// descriptor and cache key. A group whose files and pack are all in the
// cache is not read; its pack is built again only if the registry asks for
// the bytes. Otherwise each file is read once, to hash and compress it.
//
// planned is what the push planned for the pack: its size is planned
// again once known.
func (c *Client) pushPack(name string, group []pack.Entry, planned int64, byName map[string]localFile, open func(string) (io.ReadCloser, error), cache *hashCache, s *sender) (spec.Descriptor, string, error) {
	label := fmt.Sprintf("%s (%d files)", name, len(group))
	send := func(u upload) {
		if u.size != planned {
			c.opts.Progress.Plan(u.size-planned, 0)
		}
		u.file = startFile(c.opts.Progress, packLabel(name, len(group)), u.size)
		s.send(u)
		u.file.seal(nil)
	}
	if p, ok := cachedGroup(group, cache); ok {
		send(upload{label: label, digest: p.Digest, size: p.Size, open: packBuilder(p.Digest, p.Size, group, open)})
		return spec.Descriptor{Name: name, MediaType: spec.MediaTypePack, Digest: p.Digest, Size: p.Size, Files: p.Files}, groupKey(group), nil
	}
	if !s.hold() {
		return spec.Descriptor{}, "", context.Cause(s.ctx)
	}
	buf := packBuffers.Get().(*[]byte)
	data, recs, err := pack.Build(*buf, group, open)
	if err != nil {
		packBuffers.Put(buf)
		s.unhold()
		return spec.Descriptor{}, "", err
	}
	for i, r := range recs {
		if group[i].Digest == "" {
			f := byName[r.Name]
			cache.putFile(r.Name, cachedFile{Key: keyOf(f.info), Digest: r.Digest})
			group[i].Digest = r.Digest
		}
	}
	p := cachedPack{Digest: digest.FromBytes(data), Size: int64(len(data)), Files: recs}
	key := groupKey(group)
	cache.putPack(key, p)
	// The built pack is sent from memory; once that memory is released,
	// a later attempt (the registry lost the blob) builds it again.
	var released atomic.Bool
	rebuild := packBuilder(p.Digest, p.Size, group, open)
	send(upload{label: label, digest: p.Digest, size: p.Size, held: true,
		open: func() (io.ReadCloser, error) {
			if released.Load() {
				return rebuild()
			}
			return io.NopCloser(bytes.NewReader(data)), nil
		},
		release: func() { released.Store(true); *buf = data[:0]; packBuffers.Put(buf) }})
	return spec.Descriptor{Name: name, MediaType: spec.MediaTypePack, Digest: p.Digest, Size: p.Size, Files: recs}, key, nil
}

// packBuffers hold the memory of packs between building and sending them:
// fresh memory costs the kernel's zeroing.
var packBuffers = sync.Pool{New: func() any { return new([]byte) }}

// groupKey identifies a group's content: names, digests and modes.
func groupKey(group []pack.Entry) string {
	h := sha256.New()
	for _, e := range group {
		fmt.Fprintf(h, "%s\x00%s\x00%o\n", e.Name, e.Digest, e.Mode)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// packBuilder builds a cached group's pack (size bytes with digest d)
// again, deterministically, when the registry asks for its bytes.
func packBuilder(d digest.Digest, size int64, group []pack.Entry, open func(string) (io.ReadCloser, error)) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		data, _, err := pack.Build(nil, group, open)
		if err != nil {
			return nil, err
		}
		if err := content.VerifyBytes(data, size, d); err != nil {
			return nil, fmt.Errorf("a small file changed while pushing (pack %s: %w); push again", d, err)
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

// sender uploads the blobs of one push as they become known: each digest
// once, none that the tag's current manifest names, Concurrency at a time.
//
// Blobs are offered to the registry in batches (offerBatcher) ahead of
// their uploads, so an upload slot waits on the object store only: on a
// network the registry's answer, and its own round trips to the store,
// are no longer paid blob after blob. send blocks while 2×Concurrency
// blobs are between send and the end of their upload, which holds back
// hashing; a pack takes its slot before it is built (hold), so at most
// 2×Concurrency packs are in memory.
type sender struct {
	c      *Client
	api    *API
	ref    Reference
	res    *PushResult
	ctx    context.Context
	cancel context.CancelCauseFunc
	g      errgroup.Group

	from          string        // a model to mount blobs from, or ""
	ready         chan struct{} // closed once known and currentDigest are set
	known         map[digest.Digest]bool
	currentDigest digest.Digest
	currentErr    error

	slots      chan struct{}  // one per blob from send to the end of its upload
	inflight   sync.WaitGroup // blobs sent and not yet uploaded
	offers     *offerBatcher
	dispatch   chan offered // offered blobs, to upload
	dispatched chan struct{}

	mu   sync.Mutex
	seen map[digest.Digest]bool
	all  map[digest.Digest]upload
}

// offered is a blob to upload and, if the registry answered a batch offer
// of it, that answer.
type offered struct {
	u   upload
	loc spec.BlobLocation // the zero value: no answer
}

func (c *Client) newSender(ctx context.Context, cancel context.CancelCauseFunc, api *API, ref Reference, res *PushResult) *sender {
	s := &sender{c: c, api: api, ref: ref, res: res, ctx: ctx, cancel: cancel, ready: make(chan struct{}), seen: map[digest.Digest]bool{}, all: map[digest.Digest]upload{},
		slots: make(chan struct{}, 2*c.opts.Concurrency), dispatch: make(chan offered, 2*c.opts.Concurrency), dispatched: make(chan struct{})}
	s.g.SetLimit(c.opts.Concurrency)
	s.offers = &offerBatcher{s: s}
	go s.uploads()
	return s
}

// uploads starts an upload for each offered blob, Concurrency at a time,
// until wait closes dispatch.
func (s *sender) uploads() {
	defer close(s.dispatched)
	for o := range s.dispatch {
		s.g.Go(func() error {
			defer func() { s.unhold(); s.inflight.Done() }()
			if o.u.release != nil {
				defer o.u.release()
			}
			err := s.upload(o.u, o.loc)
			o.u.file.end(err)
			if err != nil {
				s.cancel(err)
				return err
			}
			return nil
		})
	}
}

// loadCurrent fetches the manifest the tag names now or, for a new tag,
// the model's most recently tagged one: the blobs it names are stored and
// need not be offered.
func (s *sender) loadCurrent() {
	defer close(s.ready)
	_, span := phase(s.ctx, "modelx.push.current")
	defer span.End()
	s.known = map[digest.Digest]bool{}
	base, _, d, err := s.api.GetManifest(s.ctx, s.ref.Repository, s.ref.Name, s.ref.Tag)
	var invalid *spec.Error
	if err == nil {
		s.currentDigest = d
	} else if errors.As(err, &invalid) && invalid.Code == spec.ErrorManifestInvalid {
		// This client refuses the manifest the tag names (pushed under
		// older rules: a .git file, say). Only a shortcut: the push
		// replaces it, offering every blob.
		base, err = nil, nil
	} else if Code(err) == spec.ErrorManifestUnknown {
		// Only a shortcut: without it every blob is offered.
		base, err = s.latestManifest()
		if err != nil {
			base, err = nil, nil
		}
	}
	if err != nil {
		if code := Code(err); code != spec.ErrorManifestUnknown && code != spec.ErrorIndexUnknown {
			s.currentErr = err
			s.cancel(err)
		}
		return
	}
	if base != nil {
		for _, b := range base.Referenced() {
			s.known[b.Digest] = true
		}
	}
}

// latestManifest returns the manifest of the model's most recently tagged
// version, or nil when the model has none.
func (s *sender) latestManifest() (*spec.Manifest, error) {
	idx, err := s.api.Index(s.ctx, s.ref.Repository, s.ref.Name, "")
	if err != nil || len(idx.Manifests) == 0 {
		return nil, err
	}
	latest := idx.Manifests[0]
	for _, t := range idx.Manifests[1:] {
		if t.Modified.After(latest.Modified) {
			latest = t
		}
	}
	m, _, _, err := s.api.GetManifest(s.ctx, s.ref.Repository, s.ref.Name, string(latest.Digest))
	return m, err
}

// send hands u to an upload. A digest sent before moves once: progress
// shows the repeat as skipped, the result counts the blob once.
func (s *sender) send(u upload) {
	u.file.begin()
	s.mu.Lock()
	dup := s.seen[u.digest]
	if !dup {
		s.seen[u.digest] = true
		s.all[u.digest] = u
	}
	s.mu.Unlock()
	if dup {
		if u.held {
			s.unhold()
		}
		if u.release != nil {
			u.release()
		}
		u.file.Skip(u.size)
		u.file.end(nil)
		return
	}
	if !u.held && !s.hold() {
		if u.release != nil {
			u.release()
		}
		u.file.end(context.Cause(s.ctx))
		return
	}
	s.inflight.Add(1)
	s.offers.add(u)
}

// hold takes a send slot, waiting for one; it reports false when the push
// is canceled first. A pack takes its slot before it is built, so that
// packs in memory are bounded by the slots alone: the built ones waiting
// or uploading, none built and waiting for a slot.
func (s *sender) hold() bool {
	select {
	case s.slots <- struct{}{}:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// unhold gives back a slot: a blob's, once it is uploaded or not sent.
func (s *sender) unhold() { <-s.slots }

// maxManifestRetries bounds how often a push uploads blobs the registry
// found missing at the manifest (a garbage collection took them) and tries
// the manifest again.
const maxManifestRetries = 3

// putManifest stores the manifest. When the registry answers that blobs are
// missing, which happens when a garbage collection deleted old blobs this
// push found stored, it uploads them and tries again; when it answers with a
// conflict (a collection took the manifest, or the tag's index kept
// changing), it tries again after a pause.
func (s *sender) putManifest(ctx context.Context, data []byte) (digest.Digest, error) {
	for attempt := 0; ; attempt++ {
		d, err := s.api.PutManifest(ctx, s.ref.Repository, s.ref.Name, s.ref.Tag, data)
		missing := missingBlobs(err)
		if err == nil || attempt == maxManifestRetries {
			return d, err
		}
		if Code(err) == spec.ErrorConflict {
			select {
			case <-ctx.Done():
				return "", err
			case <-time.After(time.Duration(100<<attempt) * time.Millisecond):
			}
			continue
		}
		if len(missing) == 0 {
			return d, err
		}
		var g errgroup.Group
		g.SetLimit(s.c.opts.Concurrency)
		for _, md := range missing {
			s.mu.Lock()
			u, ok := s.all[md]
			s.mu.Unlock()
			if !ok {
				return "", err // not a blob of this push: nothing to do about it
			}
			// Counted once more, in the plan as in the result.
			s.c.opts.Progress.Plan(u.size, 0)
			u.file = startFile(s.c.opts.Progress, u.label, u.size)
			g.Go(func() error {
				err := s.transfer(u, spec.BlobLocation{})
				u.file.Done(err)
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return "", err
		}
	}
}

// missingBlobs returns the digests a MANIFEST_BLOB_UNKNOWN error lists.
func missingBlobs(err error) []digest.Digest {
	var e *Error
	if !errors.As(err, &e) || e.API.Code != spec.ErrorManifestBlobUnknown {
		return nil
	}
	detail, _ := e.API.Detail.(map[string]any)
	list, _ := detail["missing"].([]any)
	var out []digest.Digest
	for _, v := range list {
		if str, ok := v.(string); ok && spec.ValidateDigest(digest.Digest(str)) == nil {
			out = append(out, digest.Digest(str))
		}
	}
	return out
}

// upload sends u unless the tag's current manifest names it; loc is the
// registry's answer to a batch offer of u (the zero value: none).
func (s *sender) upload(u upload, loc spec.BlobLocation) error {
	select {
	case <-s.ready:
	case <-s.ctx.Done():
		return context.Cause(s.ctx)
	}
	if s.currentErr != nil {
		return s.currentErr
	}
	if err := s.ctx.Err(); err != nil {
		return context.Cause(s.ctx)
	}
	if s.known[u.digest] {
		s.count(u, false)
		return nil
	}
	return s.transfer(u, loc)
}

// transfer sends one blob as loc, the registry's answer to a batch offer
// of it, says: nothing when present, the bytes to its URL. Without an
// answer, or when that URL fails (expired, say), it offers the blob with a
// PUT to the registry, sending the bytes if asked. Its progress counts the
// bytes as they are read (a retry starts over) and, once answered, settles
// on the figure the result counts: size moved when the bytes were sent,
// size skipped when not.
func (s *sender) transfer(u upload, loc spec.BlobLocation) error {
	// The body is opened on the HTTP transport's goroutine, and only when
	// the registry wants the bytes. The transport may close a body after
	// PutBlob returns; u's memory is released only once every body
	// opened is closed.
	meter := &sendMeter{file: u.file}
	var open sync.WaitGroup
	defer open.Wait()
	body := func() (io.ReadCloser, error) {
		meter.reopened() // a retry starts over
		rc, err := u.open()
		if err != nil {
			return nil, err
		}
		open.Add(1)
		return &countingReadCloser{ReadCloser: &closeOnce{ReadCloser: rc, done: open.Done}, add: meter.add}, nil
	}
	var sent bool
	var err error
	if !loc.Present {
		sent, err = s.api.sendOffered(s.ctx, s.ref.Repository, s.ref.Name, s.from, u.digest, u.size, body, loc)
	}
	meter.settle(sent, u.size, err)
	if err != nil {
		if Code(err) == spec.ErrorDigestInvalid {
			return fmt.Errorf("upload %s: %w (did the file change during the push?)", u.label, err)
		}
		return fmt.Errorf("upload %s: %w", u.label, err)
	}
	s.count(u, sent)
	return nil
}

// count counts u in the result as sent or skipped; the bytes of a skipped
// blob are skipped in its file's progress too.
func (s *sender) count(u upload, sent bool) {
	if !sent {
		u.file.Skip(u.size)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sent {
		s.res.BlobsTransferred++
		s.res.UploadedBytes += u.size
	} else {
		s.res.BlobsSkipped++
		s.res.SkippedBytes += u.size
	}
}

// wait waits for every upload and returns the first failure.
func (s *sender) wait() error {
	s.inflight.Wait() // every send is over: no more blobs come
	close(s.dispatch)
	<-s.dispatched
	err := s.g.Wait()
	<-s.ready
	if err == nil && s.currentErr != nil {
		err = s.currentErr
	}
	return err
}

// closeOnce calls done after the first Close.
type closeOnce struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (c *closeOnce) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(c.done)
	return err
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

// pushKey is what, besides the directory, shapes the manifest a push makes.
func (c *Client) pushKey() string {
	return transferKey(c.opts.Chunker, c.opts.SmallFileThreshold)
}

// unchangedPush returns, when the last transfer from dir was a push of ref
// with the same options over the same tree (tree, scanDir's fingerprint)
// and the tag still names its manifest, the result of a push with nothing
// to send: no file read, no cache loaded, one HEAD request (see
// summary.go). Otherwise nil.
func (c *Client) unchangedPush(ctx context.Context, ref Reference, dir, tree string) *PushResult {
	last := loadSummary(dir)
	if !last.matches("push", ref.String(), c.pushKey(), tree) {
		return nil
	}
	ctx, span := phase(ctx, "modelx.push.unchanged")
	defer span.End()
	d, err := c.API(ref.Registry).ManifestDigest(ctx, ref.Repository, ref.Name, ref.ManifestRef())
	if err != nil || d != last.Manifest {
		return nil // the full push says what is wrong
	}
	c.opts.Progress.Plan(0, last.SkippedBytes)
	return &PushResult{Reference: ref.String(), Digest: d,
		Transfer: Transfer{Files: last.Files, BlobsSkipped: last.BlobsSkipped, SkippedBytes: last.SkippedBytes}}
}

// recordPush records a successful push of dir, whose tree had the
// fingerprint tree before it started.
func (c *Client) recordPush(ref Reference, dir, tree string, res *PushResult) {
	if tree == "" {
		return
	}
	saveSummary(dir, lastTransfer{Op: "push", Ref: ref.String(), Options: c.pushKey(), Manifest: res.Digest, Tree: tree,
		Files: res.Files, BlobsSkipped: res.BlobsSkipped + res.BlobsTransferred, SkippedBytes: res.SkippedBytes + res.UploadedBytes})
}
