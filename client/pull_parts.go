package client

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/client/pack"
	"modelx.io/modelx/spec"
)

// chunkedFile assembles a chunked file in a temp file, chunk by chunk, with
// a state file that records verified chunks so a killed pull resumes.
type chunkedFile struct {
	p         *puller
	t         target
	f         *os.File
	part      string
	statePath string
	mu        sync.Mutex
	done      map[int]bool
	remaining int
}

func (c *chunkedFile) saveState() error {
	data, _ := json.Marshal(c.done)
	tmp := c.statePath + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, c.statePath)
}

// chunkedJobs prepares a chunked file: chunks done by an earlier pull, or
// matching the old local copy at the same offset, are kept; a job is
// returned for each chunk still to download.
func (p *puller) chunkedJobs(t target) ([]func(context.Context) error, error) {
	part := filepath.Join(p.tmp, t.digest.Encoded()+".part")
	c := &chunkedFile{p: p, t: t, part: part, statePath: part + ".state", done: map[int]bool{}}
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
	old, _ := os.Open(filepath.Join(p.dir, filepath.FromSlash(t.name)))
	var jobs []func(context.Context) error
	var offset int64
	for i, ch := range t.blob.Chunks {
		off := offset
		offset += ch.Size
		// A chunk an earlier pull recorded as done is checked again: the
		// part file is synced once at the end, not after every chunk, so a
		// crash may have lost recorded bytes.
		if c.done[i] && chunkAt(f, off, ch) {
			p.skip(ch.Size)
			continue
		}
		delete(c.done, i)
		if old != nil && copyIfMatches(old, f, off, ch) {
			c.done[i] = true
			p.skip(ch.Size)
			continue
		}
		c.remaining++
		jobs = append(jobs, func(ctx context.Context) error { return c.fetch(ctx, i, off, ch) })
	}
	if old != nil {
		old.Close()
	}
	if c.remaining == 0 {
		return []func(context.Context) error{func(context.Context) error { return c.finish() }}, nil
	}
	return jobs, nil
}

func (p *puller) skip(n int64) {
	p.mu.Lock()
	p.res.SkippedBytes += n
	p.mu.Unlock()
}

// chunkAt reports whether f holds the chunk at offset.
func chunkAt(f *os.File, offset int64, ch spec.Chunk) bool {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, offset, ch.Size)); err != nil {
		return false
	}
	return digest.NewDigest(digest.SHA256, h) == ch.Digest
}

// copyIfMatches copies a chunk from the old local file when the bytes at
// its offset hash to the chunk's digest.
func copyIfMatches(old, dst *os.File, offset int64, ch spec.Chunk) bool {
	buf := make([]byte, ch.Size)
	if _, err := old.ReadAt(buf, offset); err != nil {
		return false
	}
	if digest.FromBytes(buf) != ch.Digest {
		return false
	}
	_, err := dst.WriteAt(buf, offset)
	return err == nil
}

func (c *chunkedFile) fetch(ctx context.Context, i int, offset int64, ch spec.Chunk) error {
	label := fmt.Sprintf("%s [%d/%d]", c.t.name, i+1, len(c.t.blob.Chunks))
	tracker := c.p.c.opts.Progress.Start(label, ch.Size)
	h := sha256.New()
	w := io.MultiWriter(io.NewOffsetWriter(c.f, offset), h)
	err := c.p.fetchInto(ctx, ch.Digest, 0, ch.Size, w, tracker)
	if err == nil && digest.NewDigest(digest.SHA256, h) != ch.Digest {
		err = fmt.Errorf("%s: chunk %d does not match its digest %s; the blob on the registry is corrupt (nothing was written)", c.t.name, i, ch.Digest)
	}
	tracker.Done(err)
	if err != nil {
		return err
	}
	c.p.countBlob()
	c.mu.Lock()
	c.done[i] = true
	c.remaining--
	last := c.remaining == 0
	err = c.saveState()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if last {
		return c.finish()
	}
	return nil
}

// finish moves the assembled, chunk-verified file into place.
func (c *chunkedFile) finish() error {
	if err := c.f.Sync(); err != nil {
		return err
	}
	if err := c.f.Close(); err != nil {
		return err
	}
	if err := c.p.place(c.part, c.t); err != nil {
		return err
	}
	os.Remove(c.statePath)
	return nil
}

// pullPacked fetches the needed files of one pack: the whole pack when
// most of it is needed, else each file's frame with a Range request.
func (p *puller) pullPacked(ctx context.Context, ts []target) error {
	blob := ts[0].blob
	var needed int64
	for _, t := range ts {
		needed += t.packed.Length
	}
	tracker := p.c.opts.Progress.Start(fmt.Sprintf("%s (%d files)", blob.Name, len(ts)), needed)
	var err error
	if needed*2 >= blob.Size || len(ts) > 32 {
		err = p.pullWholePack(ctx, blob, ts, tracker)
	} else {
		for _, t := range ts {
			var frame bytes.Buffer
			if err = p.fetchInto(ctx, blob.Digest, t.packed.Offset, t.packed.Length, &frame, tracker); err != nil {
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

func (p *puller) pullWholePack(ctx context.Context, blob spec.Descriptor, ts []target, tracker Tracker) error {
	var buf bytes.Buffer
	buf.Grow(int(blob.Size))
	if err := p.fetchInto(ctx, blob.Digest, 0, blob.Size, &buf, tracker); err != nil {
		return err
	}
	data := buf.Bytes()
	if digest.FromBytes(data) != blob.Digest {
		return fmt.Errorf("pack %s does not match its digest %s; the blob on the registry is corrupt (nothing was written)", blob.Name, blob.Digest)
	}
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
	data, err := pack.Decode(frame, *t.packed)
	if err != nil {
		return fmt.Errorf("%w; the pack on the registry is corrupt (nothing was written)", err)
	}
	return p.writeFile(data, t)
}

func (p *puller) writeFile(data []byte, t target) error {
	_, err := p.writeFileFrom(bytes.NewReader(data), t)
	return err
}

// writeFileFrom streams r into a temp file and places it as t, returning
// the content's digest.
func (p *puller) writeFileFrom(r io.Reader, t target) (digest.Digest, error) {
	f, err := os.CreateTemp(p.tmp, "file-*")
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), r); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	d := digest.NewDigest(digest.SHA256, h)
	if t.digest == "" {
		t.digest = d
	}
	if err := p.place(f.Name(), t); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return d, nil
}

// pullLegacyDir downloads a directory blob of the original modelx (one
// tar.gz), verifies it, and extracts it under its name, refusing entries
// that are not plain files or directories or that would escape it.
func (p *puller) pullLegacyDir(ctx context.Context, t target) error {
	tmp, err := os.CreateTemp(p.tmp, "dir-*.tar.gz")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	tracker := p.c.opts.Progress.Start(t.name+"/", t.size)
	err = p.fetchInto(ctx, t.digest, 0, t.size, io.MultiWriter(tmp, h), tracker)
	tracker.Done(err)
	if err != nil {
		return err
	}
	if digest.NewDigest(digest.SHA256, h) != t.digest {
		return fmt.Errorf("%s: directory archive does not match its digest %s; the blob on the registry is corrupt (nothing was written)", t.name, t.digest)
	}
	p.countBlob()
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	gz, err := gzip.NewReader(tmp)
	if err != nil {
		return fmt.Errorf("%s: not a gzip archive: %w", t.name, err)
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: corrupt archive: %w", t.name, err)
		}
		rel := strings.TrimPrefix(path.Clean(strings.TrimPrefix(hdr.Name, "./")), "./")
		if rel == "." {
			continue
		}
		name := t.name + "/" + rel
		if err := spec.ValidatePath(name); err != nil || strings.HasPrefix(rel, "../") || path.IsAbs(hdr.Name) {
			return fmt.Errorf("refusing archive entry %q of %s: it would land outside the directory", hdr.Name, t.name)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := safeTarget(p.dir, name, true); err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Join(p.dir, filepath.FromSlash(name)), 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := safeTarget(p.dir, name, false); err != nil {
				return err
			}
			ft := target{name: name, size: hdr.Size, mode: hdr.FileInfo().Mode(), blob: spec.Descriptor{MediaType: spec.MediaTypeFile}}
			if _, err := p.writeFileFrom(io.LimitReader(tr, hdr.Size), ft); err != nil {
				return err
			}
		default:
			return fmt.Errorf("refusing archive entry %q of %s: links and special files are not extracted", hdr.Name, t.name)
		}
	}
}
