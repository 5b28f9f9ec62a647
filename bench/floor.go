package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"modelx.io/modelx/storage"
	"modelx.io/modelx/storage/s3"
)

// The floor cuts the model's bytes into objects of at least floorMinObject:
// large files into floorLargePiece pieces, small files concatenated.
const (
	floorLargePiece = 16 << 20
	floorMinObject  = 8 << 20
)

// segment is a byte range of one file.
type segment struct {
	path      string
	off, size int64
}

// floorObject is one object of the floor: segments laid end to end.
type floorObject struct {
	key  string
	segs []segment
	size int64
	sum  []byte // sha256, set by the push
}

// planFloor cuts files into objects: files of floorMinObject or more into
// 16 MiB pieces (a short tail joins the previous piece), the others
// concatenated in path order into objects of about 8 MiB (a short last
// object joins the previous one).
func planFloor(prefix string, files []fileEntry) []*floorObject {
	var objs []*floorObject
	add := func(o *floorObject) {
		o.key = fmt.Sprintf("%s/%06d", prefix, len(objs))
		objs = append(objs, o)
	}
	var smallObjs []*floorObject
	cur := &floorObject{}
	for _, f := range files {
		if f.size >= floorMinObject {
			for off := int64(0); off < f.size; {
				n := min(int64(floorLargePiece), f.size-off)
				if rest := f.size - off - n; rest > 0 && rest < floorMinObject {
					n += rest
				}
				add(&floorObject{segs: []segment{{f.path, off, n}}, size: n})
				off += n
			}
			continue
		}
		cur.segs = append(cur.segs, segment{f.path, 0, f.size})
		cur.size += f.size
		if cur.size >= floorMinObject {
			smallObjs = append(smallObjs, cur)
			cur = &floorObject{}
		}
	}
	if cur.size > 0 {
		if len(smallObjs) > 0 {
			last := smallObjs[len(smallObjs)-1]
			last.segs = append(last.segs, cur.segs...)
			last.size += cur.size
		} else {
			smallObjs = append(smallObjs, cur)
		}
	}
	for _, o := range smallObjs {
		add(o)
	}
	return objs
}

// segReader reads segments in order, opening each file only while it is read.
type segReader struct {
	segs []segment
	f    *os.File
	r    io.Reader
}

func (s *segReader) Read(p []byte) (int, error) {
	for {
		if s.r == nil {
			if len(s.segs) == 0 {
				return 0, io.EOF
			}
			f, err := os.Open(s.segs[0].path)
			if err != nil {
				return 0, err
			}
			s.f, s.r = f, io.NewSectionReader(f, s.segs[0].off, s.segs[0].size)
			s.segs = s.segs[1:]
		}
		n, err := s.r.Read(p)
		if err == io.EOF {
			s.f.Close()
			s.f, s.r = nil, nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (s *segReader) Close() error {
	if s.f != nil {
		return s.f.Close()
	}
	return nil
}

// floorResult is one floor measurement.
type floorResult struct {
	Seconds  float64 `json:"seconds"`
	Bytes    int64   `json:"bytes"`
	Objects  int     `json:"objects"`
	Requests int     `json:"requests"`
}

// floor measures the best the object store allows for a model's bytes:
// presigned PUTs with x-amz-checksum-sha256 (the sha256 computed just
// before each PUT), then presigned GETs hashed on the fly, both with the
// client's concurrency.
type floor struct {
	store       *s3.Store
	hc          *http.Client
	concurrency int
}

func newFloor(ctx context.Context, srv *s3Server, bucket string, hc *http.Client, concurrency int) (*floor, error) {
	st, err := s3.New(ctx, s3.Config{Endpoint: srv.url, Bucket: bucket, Region: srv.region,
		AccessKey: srv.accessKey, SecretKey: srv.secretKey, PathStyle: true})
	if err != nil {
		return nil, err
	}
	if err := st.CreateBucket(ctx); err != nil {
		return nil, err
	}
	return &floor{store: st, hc: hc, concurrency: concurrency}, nil
}

func (fl *floor) push(ctx context.Context, objs []*floorObject) (time.Duration, error) {
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fl.concurrency)
	for _, o := range objs {
		g.Go(func() error { return fl.put(gctx, o) })
	}
	err := g.Wait()
	return time.Since(start), err
}

func (fl *floor) put(ctx context.Context, o *floorObject) error {
	h := sha256.New()
	r := &segReader{segs: o.segs}
	_, err := io.Copy(h, r)
	r.Close()
	if err != nil {
		return err
	}
	o.sum = h.Sum(nil)
	pr, err := fl.store.PresignPut(ctx, o.key, o.size, o.sum, 15*time.Minute)
	if err != nil {
		return err
	}
	body := &segReader{segs: o.segs}
	defer body.Close()
	req, err := http.NewRequestWithContext(ctx, pr.Method, pr.URL, body)
	if err != nil {
		return err
	}
	req.ContentLength = o.size
	for k, v := range pr.Header {
		if http.CanonicalHeaderKey(k) == "Content-Length" || http.CanonicalHeaderKey(k) == "Host" {
			continue // carried by req.ContentLength and the URL
		}
		req.Header[http.CanonicalHeaderKey(k)] = v
	}
	if req.Header.Get(storage.ChecksumHeader) == "" {
		req.Header.Set(storage.ChecksumHeader, base64.StdEncoding.EncodeToString(o.sum))
	}
	resp, err := fl.hc.Do(req)
	if err != nil {
		return fmt.Errorf("floor PUT %s: %w", o.key, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return fmt.Errorf("floor PUT %s: HTTP %d: %s", o.key, resp.StatusCode, msg)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

// floorSink is what the floor's pull does with the bytes it fetched.
type floorSink struct {
	// objectDir, when set, receives each object as its own file; with
	// sync, each is fsynced once: the least a pull that keeps its bytes
	// durably must do.
	objectDir string
	sync      bool
	// treeDir, when set, receives the model's files again: each segment is
	// written into its file (relative to modelDir) at its offset, files
	// created as needed, nothing fsynced: the least a pull that produces
	// the model's tree must do.
	treeDir, modelDir string
	dirs              *sync.Map // directory of treeDir → *dirOnce
}

// dirOnce makes one directory once; every writer into it waits for that.
type dirOnce struct {
	once sync.Once
	err  error
}

func (d *dirOnce) make(dir string) error {
	d.once.Do(func() { d.err = os.MkdirAll(dir, 0o755) })
	return d.err
}

// pull fetches every object and hands its bytes to sink (a zero sink
// discards them after hashing).
func (fl *floor) pull(ctx context.Context, objs []*floorObject, sink floorSink) (time.Duration, error) {
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fl.concurrency)
	if sink.treeDir != "" {
		sink.dirs = &sync.Map{}
	}
	for i, o := range objs {
		dst := ""
		if sink.objectDir != "" {
			dst = filepath.Join(sink.objectDir, fmt.Sprintf("%06d", i))
		}
		g.Go(func() error { return fl.get(gctx, o, dst, sink) })
	}
	err := g.Wait()
	return time.Since(start), err
}

// treeWriter writes an object's byte stream into the files of its
// segments, in order.
type treeWriter struct {
	sink floorSink
	segs []segment
	f    *os.File
	left int64 // bytes of segs[0] still to write
	off  int64 // where in segs[0]'s file the next byte goes
}

func (w *treeWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if w.f == nil {
			if len(w.segs) == 0 {
				return written, errors.New("more bytes than the object's segments")
			}
			seg := w.segs[0]
			rel, err := filepath.Rel(w.sink.modelDir, seg.path)
			if err != nil {
				return written, err
			}
			dst := filepath.Join(w.sink.treeDir, rel)
			v, _ := w.sink.dirs.LoadOrStore(filepath.Dir(dst), &dirOnce{})
			if err := v.(*dirOnce).make(filepath.Dir(dst)); err != nil {
				return written, err
			}
			if w.f, err = os.OpenFile(dst, os.O_WRONLY|os.O_CREATE, 0o644); err != nil {
				return written, err
			}
			w.left, w.off = seg.size, seg.off
		}
		n := int(min(int64(len(p)), w.left))
		if _, err := w.f.WriteAt(p[:n], w.off); err != nil {
			return written, err
		}
		p, written, w.left, w.off = p[n:], written+n, w.left-int64(n), w.off+int64(n)
		if w.left == 0 {
			if err := w.f.Close(); err != nil {
				return written, err
			}
			w.f, w.segs = nil, w.segs[1:]
		}
	}
	return written, nil
}

func (w *treeWriter) Close() {
	if w.f != nil {
		w.f.Close()
	}
}

func (fl *floor) get(ctx context.Context, o *floorObject, dst string, sink floorSink) error {
	pr, err := fl.store.PresignGet(ctx, o.key, 15*time.Minute)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, pr.Method, pr.URL, nil)
	if err != nil {
		return err
	}
	for k, v := range pr.Header {
		if http.CanonicalHeaderKey(k) != "Host" {
			req.Header[http.CanonicalHeaderKey(k)] = v
		}
	}
	resp, err := fl.hc.Do(req)
	if err != nil {
		return fmt.Errorf("floor GET %s: %w", o.key, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("floor GET %s: HTTP %d", o.key, resp.StatusCode)
	}
	h := sha256.New()
	var w io.Writer = h
	var f *os.File
	if dst != "" {
		if f, err = os.Create(dst); err != nil {
			return err
		}
		defer f.Close()
		w = io.MultiWriter(f, h)
	}
	if sink.treeDir != "" {
		tw := &treeWriter{sink: sink, segs: o.segs}
		defer tw.Close()
		w = io.MultiWriter(tw, h)
	}
	n, err := io.CopyBuffer(w, resp.Body, make([]byte, 1<<20))
	if err != nil {
		return fmt.Errorf("floor GET %s: %w", o.key, err)
	}
	if f != nil && sink.sync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if n != o.size || !bytes.Equal(h.Sum(nil), o.sum) {
		return fmt.Errorf("floor GET %s: got %d bytes that do not match what was put", o.key, n)
	}
	return nil
}
