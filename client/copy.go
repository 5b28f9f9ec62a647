package client

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"modelx.io/modelx/content"
	"modelx.io/modelx/spec"
)

// CopyResult reports a copy. Every blob of the version is counted once, in
// one of three ways: skipped, mounted or copied.
type CopyResult struct {
	Source      string        `json:"source"`
	Destination string        `json:"destination"`
	Digest      digest.Digest `json:"digest"`
	// PreviousDigest is the version the destination's tag named before,
	// when the copy moved it.
	PreviousDigest digest.Digest `json:"previous_digest,omitempty"`
	// BlobsSkipped were held by the destination model already.
	BlobsSkipped int   `json:"blobs_skipped"`
	SkippedBytes int64 `json:"skipped_bytes"`
	// BlobsMounted were linked to the destination model from the source
	// model on the same registry, without bytes moving.
	BlobsMounted int   `json:"blobs_mounted"`
	MountedBytes int64 `json:"mounted_bytes"`
	// BlobsCopied were read from the source and sent to the destination.
	BlobsCopied     int     `json:"blobs_copied"`
	CopiedBytes     int64   `json:"copied_bytes"`
	DurationSeconds float64 `json:"duration_seconds"`
}

// Copy copies the model version src to dst, which names a tag or the same
// digest. Blobs the destination model holds already are skipped. On one
// registry no bytes move: each other blob is mounted from the source model,
// which the caller can read. Across registries, or where the destination
// refuses the mount, each other blob is streamed from the source, verified
// against its digest, and uploaded. Both registries are asked in batches
// (copyLocations), so with redirects the bytes go from store to store with
// no request per blob to either registry. The manifest is copied byte for byte,
// so the version keeps its digest. Each registry gets its own token.
func (c *Client) Copy(ctx context.Context, src, dst Reference) (*CopyResult, error) {
	start := time.Now()
	if dst.Digest != "" && src.Digest != "" && src.Digest != dst.Digest {
		return nil, fmt.Errorf("destination %s names a digest other than the source's: give the destination a tag", dst)
	}
	srcAPI, dstAPI := c.API(src.Registry), c.API(dst.Registry)
	m, data, d, err := srcAPI.GetManifest(ctx, src.Repository, src.Name, src.ManifestRef())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", src, err)
	}
	if dst.Digest != "" && dst.Digest != d {
		return nil, fmt.Errorf("destination %s: the source's digest is %s; give the destination a tag, or the source's digest", dst, d)
	}
	res := &CopyResult{Source: src.String(), Destination: dst.String(), Digest: d}
	if res.PreviousDigest, err = dstAPI.ManifestDigest(ctx, dst.Repository, dst.Name, dst.ManifestRef()); err != nil {
		return nil, fmt.Errorf("read %s: %w", dst, err)
	}
	if res.PreviousDigest == d {
		res.PreviousDigest = ""
		// The destination names this version already, so it holds every
		// blob: nothing to send or write.
		for _, desc := range m.ReferencedOnce() {
			res.BlobsSkipped++
			res.SkippedBytes += desc.Size
		}
		res.DurationSeconds = time.Since(start).Seconds()
		return res, nil
	}
	from := ""
	if src.Registry == dst.Registry {
		from = src.Model()
	}
	blobs := copyBlobs(m)
	var planned int64
	for _, b := range blobs {
		planned += b.desc.Size
	}
	c.opts.Progress.Plan(planned, 0)
	offers, reads := c.copyLocations(ctx, srcAPI, dstAPI, src, dst, from, blobs)
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Concurrency)
	files := map[int]*fileTracker{}
	for _, b := range blobs {
		desc := b.desc
		file := files[b.file]
		if file == nil {
			file = startFile(c.opts.Progress, b.label, b.fileSize)
			files[b.file] = file
		}
		file.begin()
		if b.last {
			file.seal(nil)
		}
		g.Go(func() error {
			offer, offered := offers[desc.Digest]
			held := offer.Present
			if !offered {
				// Without a batch answer, a blob the destination holds
				// costs one HEAD. A failed HEAD is no answer: the PUT below
				// says what is wrong, if anything.
				ok, err := dstAPI.BlobExists(gctx, dst.Repository, dst.Name, desc.Digest, desc.Size)
				held = err == nil && ok
			}
			if held {
				mu.Lock()
				if offer.Mounted {
					res.BlobsMounted++
					res.MountedBytes += desc.Size
				} else {
					res.BlobsSkipped++
					res.SkippedBytes += desc.Size
				}
				mu.Unlock()
				file.Skip(desc.Size)
				file.end(nil)
				return nil
			}
			open := func() (io.ReadCloser, error) {
				rc, err := reads.FetchBlob(gctx, desc.Digest, 0, -1)
				if err != nil {
					return nil, err
				}
				return struct {
					io.Reader
					io.Closer
				}{content.NewReader(rc, desc.Size, desc.Digest), rc}, nil
			}
			meter := &sendMeter{file: file}
			counted := func() (io.ReadCloser, error) {
				meter.reopened() // a retry starts over
				rc, err := open()
				if err != nil {
					return nil, err
				}
				return &countingReadCloser{ReadCloser: rc, add: meter.add}, nil
			}
			sent, err := dstAPI.sendOffered(gctx, dst.Repository, dst.Name, from, desc.Digest, desc.Size, counted, offer)
			meter.settle(sent, desc.Size, err)
			mu.Lock()
			switch {
			case err != nil:
			case sent:
				res.BlobsCopied++
				res.CopiedBytes += desc.Size
			default:
				file.Skip(desc.Size)
				res.BlobsMounted++
				res.MountedBytes += desc.Size
			}
			mu.Unlock()
			file.end(err)
			if err != nil {
				return fmt.Errorf("copy %s (%s): %w", desc.Name, desc.Digest, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if _, err := dstAPI.PutManifest(ctx, dst.Repository, dst.Name, dst.ManifestRef(), data); err != nil {
		return nil, fmt.Errorf("write %s: %w", dst, err)
	}
	res.DurationSeconds = time.Since(start).Seconds()
	return res, nil
}

// copyLocations asks, in batches, what the destination needs of blobs
// (present, mounted from the source on one registry, or where to send the
// bytes) and where the source has the ones to send, and returns the
// destination's answers by digest and a reader of the source's blobs that
// uses the URLs it got. A registry without the batch endpoint, or any
// other failure, leaves blobs unanswered: they are offered and read one
// by one, as without batches.
func (c *Client) copyLocations(ctx context.Context, srcAPI, dstAPI *API, src, dst Reference, from string, blobs []copyBlob) (map[digest.Digest]spec.BlobLocation, *modelBlobs) {
	refs := make([]spec.BlobRef, len(blobs))
	for i, b := range blobs {
		refs[i] = spec.BlobRef{Digest: b.desc.Digest, Size: b.desc.Size}
	}
	offers, _ := dstAPI.BlobBatch(ctx, dst.Repository, dst.Name, spec.BlobBatchRequest{Operation: spec.BatchOperationUpload, From: from, Blobs: refs})
	var send []spec.BlobRef
	for _, r := range refs {
		if !offers[r.Digest].Present {
			send = append(send, r)
		}
	}
	reads := &modelBlobs{api: srcAPI, repo: src.Repository, name: src.Name}
	reads.locate(ctx, send)
	return offers, reads
}

// copyBlob is one blob a copy moves, and the file it belongs to.
type copyBlob struct {
	desc     spec.Descriptor
	file     int    // the file's index in the manifest: 0 the config, i+1 Blobs[i]
	label    string // the file, as progress names it
	fileSize int64  // the file's planned bytes: its blobs copied by this copy
	last     bool   // the file's last blob
}

// copyBlobs lists the blobs of m once each, file by file: a chunked file's
// chunks are one file in progress. A blob that repeats one listed before
// is left out, as its bytes move once.
func copyBlobs(m *spec.Manifest) []copyBlob {
	var out []copyBlob
	seen := map[digest.Digest]bool{}
	add := func(file int, label string, descs []spec.Descriptor) {
		first := len(out)
		var size int64
		for _, d := range descs {
			if seen[d.Digest] {
				continue
			}
			seen[d.Digest] = true
			size += d.Size
			out = append(out, copyBlob{desc: d, file: file, label: label})
		}
		for i := first; i < len(out); i++ {
			out[i].fileSize = size
		}
		if len(out) > first {
			out[len(out)-1].last = true
		}
	}
	add(0, m.Config.Name, []spec.Descriptor{m.Config})
	for i, b := range m.Blobs {
		switch b.MediaType {
		case spec.MediaTypeChunkedFile:
			descs := make([]spec.Descriptor, len(b.Chunks))
			for k, ch := range b.Chunks {
				descs[k] = spec.Descriptor{Name: fmt.Sprintf("%s#%d", b.Name, k), Digest: ch.Digest, Size: ch.Size}
			}
			add(i+1, b.Name, descs)
		case spec.MediaTypePack:
			add(i+1, packLabel(b.Name, len(b.Files)), []spec.Descriptor{b})
		default:
			add(i+1, b.Name, []spec.Descriptor{b})
		}
	}
	return out
}

// validateModelName checks "REPOSITORY/NAME".
func validateModelName(s string) error {
	repo, name, ok := strings.Cut(s, "/")
	if !ok {
		return fmt.Errorf("model %q is not REPOSITORY/NAME", s)
	}
	if err := spec.ValidateRepository(repo); err != nil {
		return err
	}
	return spec.ValidateComponent("name", name)
}
