package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"modelx.io/modelx/client"
	"modelx.io/modelx/spec"
)

// batchRegistry is a registry on S3 with redirects behind a handler that
// counts blob GETs and PUTs and batch requests, and can answer batch requests as a
// registry from before the endpoint (404), or hand out URLs the store
// refuses (a signature that no longer holds, as after expiry).
type batchRegistry struct {
	url                       string
	blobGets, blobPuts, posts atomic.Int64
	missing, refused          atomic.Bool
}

func startBatchRegistry(t *testing.T) *batchRegistry {
	t.Helper()
	br := &batchRegistry{}
	h := s3RedirectRegistry(t, slog.New(slog.NewTextHandler(io.Discard, nil)))
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/"):
			br.blobGets.Add(1)
		case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/"):
			br.blobPuts.Add(1)
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/batch"):
			br.posts.Add(1)
			if br.missing.Load() {
				http.Error(w, `{"code":"UNSUPPORTED","message":"no such endpoint"}`, http.StatusNotFound)
				return
			}
			if br.refused.Load() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				var answer spec.BlobBatchResponse
				if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
					t.Errorf("batch answer: %v", err)
				}
				for i := range answer.Blobs {
					answer.Blobs[i].Href = strings.Replace(answer.Blobs[i].Href, "X-Amz-Signature=", "X-Amz-Signature=00", 1)
				}
				_ = json.NewEncoder(w).Encode(answer)
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	br.url = hs.URL
	return br
}

// push pushes the model in src as model ("REPO/NAME:TAG") and returns the
// client that pushed it and the reference.
func (br *batchRegistry) push(t *testing.T, model, src string) (*client.Client, client.Reference) {
	t.Helper()
	c := newClient(client.Options{})
	r, err := client.ParseReference(br.url+"/"+model, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(context.Background(), r, src); err != nil {
		t.Fatal(err)
	}
	return c, r
}

// pullCounted pulls r into a new directory, checks it holds src, and
// returns the result and the blob GETs and batch requests the registry got.
func (br *batchRegistry) pullCounted(t *testing.T, c *client.Client, r client.Reference, src string) (res *client.PullResult, gets, posts int64) {
	t.Helper()
	br.blobGets.Store(0)
	br.posts.Store(0)
	dst := t.TempDir()
	res, err := c.Pull(context.Background(), r, dst, client.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sameTree(t, src, dst)
	return res, br.blobGets.Load(), br.posts.Load()
}

// TestPullReadsBlobLocations: a pull from a registry with redirects asks
// where its blobs are in one batch request and reads them from the object
// store without a blob GET to the registry; from a registry without the
// endpoint, or when the store refuses the URLs, it reads every blob
// through the registry instead, and the tree is the same.
func TestPullReadsBlobLocations(t *testing.T) {
	br := startBatchRegistry(t)
	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: batch\n"), 0o644)
	write(t, src, "weights.bin", random(31, 900<<10), 0o644) // chunked
	write(t, src, "a/whole.bin", random(32, 12<<10), 0o644)  // a whole-file blob
	for i := range 40 {
		write(t, src, fmt.Sprintf("vocab/%02d.txt", i), bytes.Repeat([]byte{byte('a' + i%26)}, 300+i), 0o644) // packed
	}
	c, r := br.push(t, "batch/model:v1", src)
	for _, tc := range []struct {
		name             string
		missing, refused bool
		viaRegistry      bool
	}{
		{name: "batch"},
		{name: "no endpoint", missing: true, viaRegistry: true},
		{name: "refused URLs", refused: true, viaRegistry: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br.missing.Store(tc.missing)
			br.refused.Store(tc.refused)
			res, gets, posts := br.pullCounted(t, c, r, src)
			if posts != 1 {
				t.Errorf("%d batch requests, want 1", posts)
			}
			want := int64(0)
			if tc.viaRegistry {
				want = int64(res.BlobsTransferred)
			}
			if gets != want || res.BlobsTransferred < 10 {
				t.Errorf("%d blob GETs through the registry for %d blobs pulled, want %d", gets, res.BlobsTransferred, want)
			}
		})
	}
}

// TestPushOffersInBatches: a push to a registry with redirects offers its
// blobs in batch requests and sends each new one to the URL it got, with
// no blob PUT to the registry; to a registry without the endpoint, or when
// the store refuses the URLs, it offers each blob with a PUT instead. The
// version pulled back is the tree pushed, every time.
func TestPushOffersInBatches(t *testing.T) {
	br := startBatchRegistry(t)
	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: batch push\n"), 0o644)
	write(t, src, "weights.bin", random(41, 900<<10), 0o644) // chunked
	write(t, src, "a/whole.bin", random(42, 12<<10), 0o644)
	for i := range 40 {
		write(t, src, fmt.Sprintf("vocab/%02d.txt", i), bytes.Repeat([]byte{byte('a' + i%26)}, 400+i), 0o644)
	}
	ctx := context.Background()
	for i, tc := range []struct {
		name             string
		missing, refused bool
	}{
		{name: "batch"},
		{name: "no endpoint", missing: true},
		{name: "refused URLs", refused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br.missing.Store(tc.missing)
			br.refused.Store(tc.refused)
			br.blobPuts.Store(0)
			br.posts.Store(0)
			c := newClient(client.Options{})
			// A model of its own each time: every blob is new to it.
			r, err := client.ParseReference(fmt.Sprintf("%s/batch/push-%d:v1", br.url, i), nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.Push(ctx, r, src)
			if err != nil {
				t.Fatal(err)
			}
			puts, posts := br.blobPuts.Load(), br.posts.Load()
			switch {
			case res.BlobsTransferred < 10:
				t.Fatalf("%d blobs sent, want every blob of the model", res.BlobsTransferred)
			case tc.missing && (puts != int64(res.BlobsTransferred) || posts != 1):
				t.Errorf("%d blob PUTs and %d batch requests for %d blobs, want a PUT each after one refused batch", puts, posts, res.BlobsTransferred)
			case tc.refused && puts != int64(res.BlobsTransferred):
				t.Errorf("%d blob PUTs for %d blobs whose URLs were refused, want one each", puts, res.BlobsTransferred)
			case !tc.missing && !tc.refused && (puts != 0 || posts == 0):
				t.Errorf("%d blob PUTs and %d batch requests, want only batches", puts, posts)
			}
			br.missing.Store(false)
			br.refused.Store(false)
			dst := t.TempDir()
			if _, err := c.Pull(ctx, r, dst, client.PullOptions{}); err != nil {
				t.Fatal(err)
			}
			sameTree(t, src, dst)
		})
	}
}

// TestPullLocatesManyBlobs: a pull of more blobs than one batch request
// takes locates the first batch before it downloads and the rest in the
// background, and every blob is read from a URL or, if fetched before its
// URL came, through the registry.
func TestPullLocatesManyBlobs(t *testing.T) {
	br := startBatchRegistry(t)
	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: many blobs\n"), 0o644)
	n := spec.MaxBatchBlobs + 60
	for i := range n { // above the small-file threshold, below a chunk: a blob each
		write(t, src, fmt.Sprintf("d%02d/f%04d.bin", i%40, i), random(uint64(1000+i), testSmall+64), 0o644)
	}
	c, r := br.push(t, "batch/many:v1", src)
	if res, gets, posts := br.pullCounted(t, c, r, src); posts != 2 || gets > int64(res.BlobsTransferred-spec.MaxBatchBlobs) || res.BlobsTransferred != n+1 {
		t.Errorf("%d batch requests and %d blob GETs for %d blobs; want 2 batches, and GETs only for blobs past the first batch", posts, gets, res.BlobsTransferred)
	}
}

// TestCopyInBatches: a copy across registries with redirects asks the
// destination what it needs and the source where the blobs are in one
// batch each, and moves every byte between the object stores without a
// blob request to either registry.
func TestCopyInBatches(t *testing.T) {
	from, to := startBatchRegistry(t), startBatchRegistry(t)
	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: copy\n"), 0o644)
	write(t, src, "weights.bin", random(51, 600<<10), 0o644)
	for i := range 20 {
		write(t, src, fmt.Sprintf("vocab/%02d.txt", i), bytes.Repeat([]byte{byte('a' + i)}, 500+i), 0o644)
	}
	c, r := from.push(t, "batch/copy:v1", src)
	for _, br := range []*batchRegistry{from, to} {
		br.blobGets.Store(0)
		br.blobPuts.Store(0)
		br.posts.Store(0)
	}
	dstRef, err := client.ParseReference(to.url+"/batch/copied:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Copy(context.Background(), r, dstRef)
	if err != nil {
		t.Fatal(err)
	}
	if res.BlobsCopied < 10 || from.posts.Load() != 1 || to.posts.Load() != 1 || from.blobGets.Load() != 0 || to.blobPuts.Load() != 0 {
		t.Errorf("copy of %d blobs: %d and %d batch requests, %d blob GETs from the source, %d blob PUTs to the destination; want one batch each and no blob request",
			res.BlobsCopied, from.posts.Load(), to.posts.Load(), from.blobGets.Load(), to.blobPuts.Load())
	}
	if _, gets, _ := to.pullCounted(t, c, dstRef, src); gets != 0 {
		t.Errorf("%d blob GETs pulling the copy", gets)
	}
}
