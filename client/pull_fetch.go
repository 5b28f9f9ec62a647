package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"modelx.io/modelx/client/pack"
	"modelx.io/modelx/content"
	"modelx.io/modelx/spec"
)

// blobFetcher reads the blobs of one model: length bytes of blob d from
// offset, or to its end when length < 0. A registry may answer a range
// that starts at 0 with the whole blob, so a caller reads no more than it
// asked for. Once a pull has its manifest, this is all it asks of the
// registry.
type blobFetcher interface {
	FetchBlob(ctx context.Context, d digest.Digest, offset, length int64) (io.ReadCloser, error)
}

// blobLocator is a blobFetcher that can ask, before a download, where to
// read the blobs it will fetch: one request instead of one a blob. What it
// starts in the background ends when ctx does.
type blobLocator interface {
	locate(ctx context.Context, blobs []spec.BlobRef)
}

// modelBlobs fetches the blobs of the model repo/name through api: from
// the URLs a batch request handed out (locate), else through the registry.
type modelBlobs struct {
	api        *API
	repo, name string

	mu        sync.Mutex
	locations map[digest.Digest]spec.BlobLocation
}

// backgroundBatches bounds the batch requests a pull of more than
// spec.MaxBatchBlobs blobs sends at once.
const backgroundBatches = 4

// locate implements blobLocator. The first spec.MaxBatchBlobs blobs (all
// of most models) are located before it returns; the rest in the
// background, backgroundBatches requests at a time, while the first are
// downloaded: a blob fetched before its URL is known is read through the
// registry, as is one left without a URL by whatever went wrong, and the
// registry's answer says what is wrong if anything is.
func (b *modelBlobs) locate(ctx context.Context, blobs []spec.BlobRef) {
	if len(blobs) < 2 {
		return // one request either way
	}
	first := blobs[:min(len(blobs), spec.MaxBatchBlobs)]
	b.learn(ctx, first)
	if rest := blobs[len(first):]; len(rest) > 0 {
		go func() {
			var g errgroup.Group
			g.SetLimit(backgroundBatches)
			for part := range slices.Chunk(rest, spec.MaxBatchBlobs) {
				g.Go(func() error { b.learn(ctx, part); return nil })
			}
			_ = g.Wait()
		}()
	}
}

// learn asks where blobs are (at most spec.MaxBatchBlobs) and keeps the
// URLs it is given.
func (b *modelBlobs) learn(ctx context.Context, blobs []spec.BlobRef) {
	locs, _ := b.api.BlobBatch(ctx, b.repo, b.name, spec.BlobBatchRequest{Operation: spec.BatchOperationDownload, Blobs: blobs})
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.locations == nil {
		b.locations = map[digest.Digest]spec.BlobLocation{}
	}
	for d, loc := range locs {
		if loc.Href != "" { // else read through the registry
			b.locations[d] = loc
		}
	}
}

// presignedSlack is how long before a URL's expiry a transfer stops using
// it: time for the request, and for clocks that differ a little.
const presignedSlack = 30 * time.Second

// usableURL reports whether loc has a URL that is not about to expire.
func usableURL(loc spec.BlobLocation) bool {
	return loc.Href != "" && time.Now().Before(loc.ExpiresAt.Add(-presignedSlack))
}

// FetchBlob implements blobFetcher.
func (b *modelBlobs) FetchBlob(ctx context.Context, d digest.Digest, offset, length int64) (io.ReadCloser, error) {
	b.mu.Lock()
	loc, ok := b.locations[d]
	b.mu.Unlock()
	if ok && usableURL(loc) {
		rc, err := b.api.GetPresigned(ctx, loc.Href, offset, length)
		if err == nil || ctx.Err() != nil {
			return rc, err
		}
		// Expired early or refused: the registry hands out a fresh URL,
		// or says what is wrong.
		b.mu.Lock()
		delete(b.locations, d)
		b.mu.Unlock()
	}
	return b.api.GetBlob(ctx, b.repo, b.name, d, offset, length)
}

// pullFile downloads a whole-file blob into a temp file, resuming a partial
// one left by a killed pull, verifies it, copies it to the targets with the
// same content (copies), and moves it into place.
func (p *puller) pullFile(ctx context.Context, t target, copies []target) error {
	tmp := filepath.Join(p.tree.tmp, t.digest.Encoded()+partSuffix)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	v := content.NewVerifier(t.size, t.digest)
	have, err := io.Copy(v, f) // what a killed pull left, hashed to continue
	if err != nil {
		return err
	}
	if have > t.size {
		if err := f.Truncate(0); err != nil {
			return err
		}
		v.Reset()
		have = 0
	}
	tracker := p.progress.Start(t.name, t.size)
	tracker.Skip(have)
	p.skipped(0, have) // a killed pull downloaded these already
	err = p.fetchBlob(ctx, t.blob.Digest, v, io.NewOffsetWriter(f, have), tracker)
	if errors.Is(err, content.ErrDigestMismatch) && have > 0 {
		// The bytes a killed pull left may be what a crash made of them
		// (see durable.go): fetch the whole blob before blaming the registry.
		if err = f.Truncate(0); err == nil {
			v.Reset()
			p.skipped(0, -have) // fetched after all
			err = p.fetchBlob(ctx, t.blob.Digest, v, io.NewOffsetWriter(f, 0), tracker)
		}
	}
	if errors.Is(err, content.ErrDigestMismatch) {
		f.Truncate(0)
		err = fmt.Errorf("%s: downloaded bytes do not match digest %s; the blob on the registry is corrupt (nothing was written)", t.name, t.digest)
	}
	tracker.Done(err)
	if err != nil {
		return err
	}
	if err := p.tree.syncFile(f); err != nil {
		return err
	}
	if err := p.tree.placeCopies(f, t, copies, p.showCopy); err != nil {
		return err
	}
	fi, err := closeTemp(f, permOf(t))
	if err != nil {
		return err
	}
	p.countBlob()
	return p.tree.place(tmp, t, fi)
}

// fetchBlob copies blob d into w from where v left off (the bytes v has
// seen are those before), through v's reader: w receives the rest of the
// blob and then nil, or an error, and never the last bytes of content
// that is not the blob (content.ErrSizeMismatch, content.ErrDigestMismatch).
func (p *puller) fetchBlob(ctx context.Context, d digest.Digest, v *content.Verifier, w io.Writer, tracker Tracker) error {
	if v.Written() == v.Size() {
		return v.Verify()
	}
	return p.fetchInto(ctx, d, v.Written(), v.Size()-v.Written(), w, tracker, v.Reader)
}

// fetchRange copies length bytes of blob d from offset into w: a range
// whose content its reader checks (a packed file's frame).
func (p *puller) fetchRange(ctx context.Context, d digest.Digest, offset, length int64, w io.Writer, tracker Tracker) error {
	return p.fetchInto(ctx, d, offset, length, w, tracker, func(r io.Reader) *content.Reader {
		// A registry that ignores a range from 0 sends the whole blob.
		return content.NewReader(io.LimitReader(r, length), length, "")
	})
}

// fetchInto copies length bytes of a blob from offset into w, read through
// verify, which yields only what it checked.
func (p *puller) fetchInto(ctx context.Context, d digest.Digest, offset, length int64, w io.Writer, tracker Tracker, verify func(io.Reader) *content.Reader) error {
	if length == 0 {
		return nil
	}
	rc, err := p.blobs.FetchBlob(ctx, d, offset, length)
	if err != nil {
		return err
	}
	defer rc.Close()
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	counted := &countingReadCloser{ReadCloser: rc, add: func(n int64) { tracker.Add(n); p.count(n) }}
	if _, err := io.CopyBuffer(w, verify(counted), *buf); err != nil {
		return fmt.Errorf("download %s: %w", d, err)
	}
	return nil
}

// pullPacked fetches the needed files of one pack, as packFetch decides.
func (p *puller) pullPacked(ctx context.Context, ts []target) error {
	blob := ts[0].blob
	whole, fetch := packFetch(ts)
	tracker := p.progress.Start(packLabel(blob.Name, len(ts)), fetch)
	var err error
	if whole {
		err = p.pullWholePack(ctx, blob, ts, tracker)
	} else {
		for _, t := range ts {
			var frame bytes.Buffer
			if err = p.fetchRange(ctx, blob.Digest, t.packed.Offset, t.packed.Length, &frame, tracker); err != nil {
				break
			}
			if err = p.writePacked(frame.Bytes(), t); err != nil {
				break
			}
		}
	}
	tracker.Done(err)
	if err == nil {
		p.countBlob()
	}
	return err
}

func (p *puller) pullWholePack(ctx context.Context, blob *spec.Descriptor, ts []target, tracker Tracker) error {
	var buf bytes.Buffer
	buf.Grow(int(blob.Size))
	// Written, not read from (Buffer.ReadFrom would grow buf past the pack).
	err := p.fetchBlob(ctx, blob.Digest, content.NewVerifier(blob.Size, blob.Digest), struct{ io.Writer }{&buf}, tracker)
	if errors.Is(err, content.ErrDigestMismatch) {
		return fmt.Errorf("pack %s does not match its digest %s; the blob on the registry is corrupt (nothing was written)", blob.Name, blob.Digest)
	}
	if err != nil {
		return err
	}
	data := buf.Bytes()
	for _, t := range ts {
		frame, err := pack.Frame(data, *t.packed)
		if err != nil {
			return err
		}
		if err := p.writePacked(frame, t); err != nil {
			return err
		}
	}
	return nil
}

// writePacked decodes and verifies one packed file, then places it.
func (p *puller) writePacked(frame []byte, t target) error {
	data, err := pack.Decode(frame, *t.packed) // checks size and digest
	if err != nil {
		return fmt.Errorf("%w; the pack on the registry is corrupt (nothing was written)", err)
	}
	return p.tree.writeFileFrom(bytes.NewReader(data), t)
}
