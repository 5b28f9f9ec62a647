package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"modelx.io/modelx/client/chunker"
	"modelx.io/modelx/content"
	"modelx.io/modelx/spec"
)

// chunkedFile assembles a chunked file in a temp file, chunk by chunk, with
// a state file that records verified chunks so a killed pull resumes.
type chunkedFile struct {
	p         *puller
	t         target
	copies    []target // other names of the same content, copied at the end
	f         *os.File
	part      string
	statePath string
	mu        sync.Mutex
	done      map[int]bool
	remaining int
	tracker   Tracker // the file's progress, over all its chunks
	ended     sync.Once
}

// end ends the file's progress; the first call counts.
func (c *chunkedFile) end(err error) {
	c.ended.Do(func() { c.tracker.Done(err) })
}

func (c *chunkedFile) saveState() error {
	data, _ := json.Marshal(c.done)
	tmp := c.statePath + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, c.statePath)
}

// chunkedJobs prepares a chunked file: chunks done by an earlier pull are
// kept; a job is returned for each other chunk, which copies the chunk from
// a local file that holds it (found by digest in local, or else, when local
// knows none of the file's chunks, at the same offset in the old copy of the
// file) or downloads it.
func (p *puller) chunkedJobs(t target, copies []target, local *chunkIndex) ([]func(context.Context) error, error) {
	// Not <digest>.part, a whole file's name: a whole file's digest could
	// equal this chunk list's.
	part := filepath.Join(p.tree.tmp, t.digest.Encoded()+chunkedPart)
	c := &chunkedFile{p: p, t: t, copies: copies, part: part, statePath: part + ".state", done: map[int]bool{}}
	if data, err := os.ReadFile(c.statePath); err == nil {
		_ = json.Unmarshal(data, &c.done)
	}
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	c.f = f
	if fi, err := f.Stat(); err != nil || fi.Size() != t.size {
		if err := f.Truncate(t.size); err != nil {
			f.Close()
			return nil, err
		}
	}
	type todo struct {
		i   int
		off int64
		src chunkLoc
	}
	var chunks []todo
	found := false
	var offset int64
	c.tracker = p.progress.Start(t.name, t.size)
	for i, ch := range t.blob.Chunks {
		off := offset
		offset += ch.Size
		// A chunk an earlier pull recorded as done is checked again: the
		// part file is not synced after every chunk (see durable.go), so
		// a crash may have lost recorded bytes.
		if c.done[i] && chunkAt(f, off, ch) {
			p.skipped(1, ch.Size)
			c.tracker.Skip(ch.Size)
			continue
		}
		delete(c.done, i)
		loc, ok := local.find(ch)
		found = found || ok
		chunks = append(chunks, todo{i: i, off: off, src: loc})
	}
	if !found {
		// No local chunk list matches this manifest's chunking (other
		// chunker parameters, say): try the old copy at the same offsets.
		if old, _ := openRegular(p.tree.localPath(t.name)); old != nil {
			local.keep(old)
			for k := range chunks {
				chunks[k].src = chunkLoc{f: old, offset: chunks[k].off}
			}
		}
	}
	c.remaining = len(chunks)
	if c.remaining == 0 {
		return []func(context.Context) error{func(context.Context) error { return c.finish() }}, nil
	}
	jobs := make([]func(context.Context) error, len(chunks))
	for k, ch := range chunks {
		jobs[k] = func(ctx context.Context) error { return c.pullChunk(ctx, ch.i, ch.off, ch.src) }
	}
	return jobs, nil
}

// chunkAt reports whether f holds the chunk at offset.
func chunkAt(f *os.File, offset int64, ch spec.Chunk) bool {
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	ok, _ := content.Holds(io.NewSectionReader(f, offset, ch.Size), ch.Size, ch.Digest, *buf)
	return ok
}

// copyChunk copies a chunk from src into dst at offset, verifying it on
// the way, and reports whether the copied bytes are the chunk. It streams
// through a pooled buffer, so a chunk of any size costs no more memory.
func copyChunk(src chunkLoc, dst *os.File, offset int64, ch spec.Chunk) bool {
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	r := content.NewReader(io.NewSectionReader(src.f, src.offset, ch.Size), ch.Size, ch.Digest)
	_, err := io.CopyBuffer(io.NewOffsetWriter(dst, offset), r, *buf)
	return err == nil
}

// pullChunk fills chunk i: a copy from src when it verifies, else a
// download.
func (c *chunkedFile) pullChunk(ctx context.Context, i int, offset int64, src chunkLoc) error {
	ch := c.t.blob.Chunks[i]
	if src.f != nil && copyChunk(src, c.f, offset, ch) {
		c.p.skipped(1, ch.Size)
		c.tracker.Skip(ch.Size)
		return c.chunkDone(i)
	}
	err := c.fetch(ctx, i, offset, ch)
	if err != nil {
		c.end(err)
	}
	return err
}

func (c *chunkedFile) fetch(ctx context.Context, i int, offset int64, ch spec.Chunk) error {
	err := c.p.fetchBlob(ctx, ch.Digest, content.NewVerifier(ch.Size, ch.Digest), io.NewOffsetWriter(c.f, offset), c.tracker)
	if errors.Is(err, content.ErrDigestMismatch) {
		err = fmt.Errorf("%s: chunk %d does not match its digest %s; the blob on the registry is corrupt (nothing was written)", c.t.name, i, ch.Digest)
	}
	if err != nil {
		return err
	}
	if c.p.tree.syncEach() {
		writeBack(c.f, offset, ch.Size)
	}
	c.p.countBlob()
	return c.chunkDone(i)
}

// chunkDone records chunk i as verified in place, and finishes the file
// after its last chunk.
func (c *chunkedFile) chunkDone(i int) error {
	c.mu.Lock()
	c.done[i] = true
	c.remaining--
	last := c.remaining == 0
	err := c.saveState()
	c.mu.Unlock()
	if err != nil {
		c.end(err)
		return err
	}
	if last {
		return c.finish()
	}
	return nil
}

// finish copies the assembled, chunk-verified file to the targets with the
// same content and moves it into place.
func (c *chunkedFile) finish() (err error) {
	defer func() { c.end(err) }()
	if err := c.p.tree.syncFile(c.f); err != nil {
		c.f.Close()
		return err
	}
	if err := c.p.tree.placeCopies(c.f, c.t, c.copies, c.p.showCopy); err != nil {
		c.f.Close()
		return err
	}
	fi, err := closeTemp(c.f, permOf(c.t))
	if err != nil {
		return err
	}
	if err := c.p.tree.place(c.part, c.t, fi); err != nil {
		return err
	}
	os.Remove(c.statePath)
	return nil
}

// chunkLoc is where a local file holds a chunk.
type chunkLoc struct {
	f      *os.File // nil: nowhere
	offset int64
}

// chunkIndex finds chunks in local files by digest, so a pull copies them
// instead of downloading them. The bytes are verified after each copy, so
// a file that changed since it was indexed costs a download, never a
// wrong byte. It is safe for concurrent use.
type chunkIndex struct {
	mu    sync.Mutex
	at    map[digest.Digest]chunkLoc
	files []*os.File
}

// openRegular opens a local file for reading, with its info; nil if it
// is not a regular file.
func openRegular(name string) (*os.File, fs.FileInfo) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil
	}
	return f, fi
}

// keep makes f a source, closed by close.
func (x *chunkIndex) keep(f *os.File) {
	x.mu.Lock()
	x.files = append(x.files, f)
	x.mu.Unlock()
}

// add makes f a source and records its chunks, which follow each other
// from offset 0.
func (x *chunkIndex) add(f *os.File, chunks []spec.Chunk) {
	x.keep(f)
	x.mu.Lock()
	defer x.mu.Unlock()
	var offset int64
	for _, ch := range chunks {
		if _, ok := x.at[ch.Digest]; !ok {
			x.at[ch.Digest] = chunkLoc{f: f, offset: offset}
		}
		offset += ch.Size
	}
}

func (x *chunkIndex) find(ch spec.Chunk) (chunkLoc, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	loc, ok := x.at[ch.Digest]
	return loc, ok
}

func (x *chunkIndex) close() {
	for _, f := range x.files {
		f.Close()
	}
}

// indexLocalChunks indexes the chunks of the local files that may hold
// chunks of targets: every file the hash cache describes with a chunk list
// (and that is unchanged since), and each target's old local copy, run
// through the chunker when the cache does not describe it.
func (p *puller) indexLocalChunks(ctx context.Context, targets []target) *chunkIndex {
	x := &chunkIndex{at: map[digest.Digest]chunkLoc{}}
	indexed := map[string]bool{}
	for name, cf := range p.cache.chunkedFiles() {
		if checkName(name) != nil {
			continue
		}
		f, fi := openRegular(p.tree.localPath(name))
		switch {
		case f == nil:
		case keyOf(fi) == cf.Key && fi.Size() == chunksSize(cf.Chunks):
			x.add(f, cf.Chunks)
			indexed[name] = true
		default:
			f.Close() // changed since it was hashed
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(min(p.concurrency, runtime.GOMAXPROCS(0))) // hashing: CPU-bound
	for _, t := range targets {
		if indexed[t.name] {
			continue
		}
		f, _ := openRegular(p.tree.localPath(t.name))
		if f == nil {
			continue
		}
		g.Go(func() error {
			chunks, err := chunkFile(gctx, f, p.chunking)
			if err != nil {
				f.Close()
				return nil // a source less
			}
			x.add(f, chunks)
			return nil
		})
	}
	g.Wait()
	return x
}

// chunkFile cuts f into content-defined chunks and hashes each.
func chunkFile(ctx context.Context, f *os.File, params chunker.Params) ([]spec.Chunk, error) {
	return hashChunks(ctx, io.NewSectionReader(f, 0, 1<<62), params, nil)
}
