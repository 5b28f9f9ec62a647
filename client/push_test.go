package client_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"modelx.io/modelx/client"
)

// requestLog records the requests a client sends, as "METHOD path".
type requestLog struct {
	mu   sync.Mutex
	reqs []string
	next http.RoundTripper
}

func (l *requestLog) RoundTrip(r *http.Request) (*http.Response, error) {
	l.mu.Lock()
	l.reqs = append(l.reqs, r.Method+" "+r.URL.Path)
	l.mu.Unlock()
	return l.next.RoundTrip(r)
}

func (l *requestLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.reqs
	l.reqs = nil
	return out
}

func count(reqs []string, method, pathPart string) int {
	n := 0
	for _, r := range reqs {
		if strings.HasPrefix(r, method+" ") && strings.Contains(r, pathPart) {
			n++
		}
	}
	return n
}

// TestPushSkipsStoredBlobs checks that a push offers no blob the registry is
// known to store, and sends no bytes for the ones it stores anyway.
func TestPushSkipsStoredBlobs(t *testing.T) {
	for _, e := range envs(t) {
		t.Run(e.name, func(t *testing.T) {
			ctx := context.Background()
			src := basicModel(t)
			log := &requestLog{next: client.DefaultHTTPClient().Transport}
			c := newClient(client.Options{HTTPClient: &http.Client{Transport: log}})
			first, err := c.Push(ctx, ref(t, e, "skip/model:v1"), src)
			if err != nil {
				t.Fatal(err)
			}
			blobs := first.BlobsTransferred
			if blobs < 3 || first.BlobsSkipped != 0 || count(log.take(), "HEAD", "/blobs/") != 0 {
				t.Fatalf("first push: %+v", first)
			}

			// A new tag of the same model: the latest tag's manifest says
			// what is stored, so no blob is offered at all.
			res, err := c.Push(ctx, ref(t, e, "skip/model:v2"), src)
			if err != nil {
				t.Fatal(err)
			}
			reqs := log.take()
			if res.BlobsTransferred != 0 || res.UploadedBytes != 0 || res.BlobsSkipped != blobs || res.Digest != first.Digest {
				t.Fatalf("push of a new tag with stored content: %+v", res)
			}
			if n := count(reqs, "PUT", "/blobs/"); n != 0 || len(reqs) != 4 {
				t.Fatalf("push of a new tag sent %d blob PUTs; requests: %q", n, reqs)
			}

			// Another model, with the first as its source: each blob is
			// offered once (in a batch) and mounted, and the registry takes
			// none of the bytes.
			res, err = c.PushWithOptions(ctx, ref(t, e, "other/model:v1"), src, client.PushOptions{From: "skip/model"})
			if err != nil {
				t.Fatal(err)
			}
			reqs = log.take()
			if res.BlobsTransferred != 0 || res.UploadedBytes != 0 || res.BlobsSkipped != blobs {
				t.Fatalf("push of stored blobs to another model: %+v", res)
			}
			if puts, batches := count(reqs, "PUT", "/blobs/"), count(reqs, "POST", "/blobs/batch"); puts != 0 || batches == 0 || batches > blobs {
				t.Fatalf("%d blob PUTs and %d batch offers for %d blobs; requests: %q", puts, batches, blobs, reqs)
			}
			// Without a source, the blobs belong to the first model only:
			// a third model must send the bytes, which proves it has them.
			res, err = c.Push(ctx, ref(t, e, "third/model:v1"), src)
			if err != nil {
				t.Fatal(err)
			}
			log.take()
			if res.BlobsTransferred != blobs || res.BlobsSkipped != 0 {
				t.Fatalf("push of stored blobs to a third model without a source: %+v", res)
			}
			dst := t.TempDir()
			if _, err := c.Pull(ctx, ref(t, e, "other/model:v1"), dst, client.PullOptions{}); err != nil {
				t.Fatal(err)
			}
			os.RemoveAll(filepath.Join(src, ".git"))
			os.Remove(filepath.Join(src, "ignored.tmp"))
			sameTree(t, src, dst)
		})
	}
}
