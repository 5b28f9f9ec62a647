package client

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
)

// CopyResult reports a copy.
type CopyResult struct {
	Source      string        `json:"source"`
	Destination string        `json:"destination"`
	Digest      digest.Digest `json:"digest"`
	// BlobsMounted were linked on the registry without bytes moving: the
	// destination held them already, or took them from the source model.
	BlobsMounted int   `json:"blobs_mounted"`
	MountedBytes int64 `json:"mounted_bytes"`
	// BlobsCopied were read from the source and sent to the destination.
	BlobsCopied     int     `json:"blobs_copied"`
	CopiedBytes     int64   `json:"copied_bytes"`
	DurationSeconds float64 `json:"duration_seconds"`
}

// Copy copies the model version src to dst, which names a tag or the same
// digest. On one registry no bytes move: each blob is mounted from the
// source model, which the caller can read. Across registries, or where the
// destination refuses the mount, each blob is streamed from the source,
// verified against its digest, and uploaded. The manifest is copied byte
// for byte, so the version keeps its digest.
func (c *Client) Copy(ctx context.Context, src, dst Reference) (*CopyResult, error) {
	start := time.Now()
	if dst.Digest != "" && src.Digest != dst.Digest {
		return nil, fmt.Errorf("destination %s names a digest other than the source's: give the destination a tag", dst)
	}
	srcAPI, dstAPI := c.API(src.Registry), c.API(dst.Registry)
	m, data, d, err := srcAPI.GetManifest(ctx, src.Repository, src.Name, src.ManifestRef())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", src, err)
	}
	if dst.Digest != "" && dst.Digest != d {
		return nil, fmt.Errorf("destination %s: the source's digest is %s", dst, d)
	}
	from := ""
	if src.Registry == dst.Registry {
		from = src.Model()
	}
	res := &CopyResult{Source: src.String(), Destination: dst.String(), Digest: d}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Concurrency)
	for _, desc := range m.ReferencedOnce() {
		g.Go(func() error {
			open := func() (io.ReadCloser, error) {
				rc, err := srcAPI.GetBlob(gctx, src.Repository, src.Name, desc.Digest, 0, -1)
				if err != nil {
					return nil, err
				}
				sum, _ := digestBytes(desc.Digest)
				return struct {
					io.Reader
					io.Closer
				}{storage.NewVerifyingReader(rc, desc.Size, sum), rc}, nil
			}
			var tracker Tracker
			counted := func() (io.ReadCloser, error) {
				rc, err := open()
				if err != nil {
					return nil, err
				}
				mu.Lock()
				if tracker == nil {
					tracker = c.opts.Progress.Start(desc.Name, desc.Size)
				}
				mu.Unlock()
				return &countingReadCloser{ReadCloser: rc, add: func(n int64) { tracker.Add(n) }}, nil
			}
			sent, err := dstAPI.MountBlob(gctx, dst.Repository, dst.Name, from, desc.Digest, desc.Size, counted)
			mu.Lock()
			defer mu.Unlock()
			if tracker != nil {
				tracker.Done(err)
			}
			if err != nil {
				return fmt.Errorf("copy %s (%s): %w", desc.Name, desc.Digest, err)
			}
			if sent {
				res.BlobsCopied++
				res.CopiedBytes += desc.Size
			} else {
				res.BlobsMounted++
				res.MountedBytes += desc.Size
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

// digestBytes returns the raw sum of a sha256 digest.
func digestBytes(d digest.Digest) ([]byte, error) {
	if err := spec.ValidateDigest(d); err != nil {
		return nil, err
	}
	return hex.DecodeString(d.Encoded())
}

// validateModelName checks "REPOSITORY/NAME".
func validateModelName(s string) error {
	repo, name, ok := strings.Cut(s, "/")
	if !ok {
		return fmt.Errorf("model %q is not REPOSITORY/NAME", s)
	}
	if err := spec.ValidateComponent("repository", repo); err != nil {
		return err
	}
	return spec.ValidateComponent("name", name)
}
