package registry_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
	"modelx.io/modelx/storage/fs"
)

func limitedRegistry(t *testing.T, opts registry.Options) (string, registry.Backend) {
	t.Helper()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(st, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	return srv.URL, st
}

// startUpload sends the headers and the first bytes of a blob upload over a
// raw connection, then stops: a client that stalls, or trickles.
func startUpload(t *testing.T, url string, data []byte, sent int) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	d := digest.FromBytes(data)
	fmt.Fprintf(conn, "PUT /lim/model/blobs/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", d, len(data))
	conn.Write(data[:sent])
	return conn
}

// TestStalledUploadIsAborted: a body that stops moving for IOTimeout ends
// the request, and nothing is stored.
func TestStalledUploadIsAborted(t *testing.T) {
	url, st := limitedRegistry(t, registry.Options{IOTimeout: 200 * time.Millisecond})
	data := bytes.Repeat([]byte("x"), 64<<10)
	conn := startUpload(t, url, data, 1000)
	conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // a bound for the test, not the server's timeout
	_, err := io.ReadAll(conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the server kept a stalled upload open")
	}
	resp, err := http.Head(url + "/lim/model/blobs/" + string(digest.FromBytes(data)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("HEAD after an aborted upload: %d", resp.StatusCode)
	}
	if n := countObjects(t, st, "blobs/"); n != 0 {
		t.Fatalf("%d blobs stored after an aborted upload", n)
	}
}

// TestUploadsAreBounded: past MaxUploads proxied uploads, a PUT gets 429
// with Retry-After; once a slot frees, uploads go through again.
func TestUploadsAreBounded(t *testing.T) {
	url, _ := limitedRegistry(t, registry.Options{MaxUploads: 1})
	held := bytes.Repeat([]byte("held"), 1<<10)
	conn := startUpload(t, url, held, 100)
	other := []byte("another blob")
	put := func() *http.Response {
		req, _ := http.NewRequest(http.MethodPut, url+"/lim/model/blobs/"+string(digest.FromBytes(other)), bytes.NewReader(other))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// The held upload takes its slot once its headers are read; wait for it.
	testenv.WaitFor(t, time.Minute, "the held upload to take its slot", func() bool {
		return testenv.Metric(t, testenv.Scrape(t, url), "modelxd_uploads_in_flight", "") == 1
	})
	resp := put()
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), string(spec.ErrorTooManyRequests)) {
		t.Fatalf("upload past the bound: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	conn.Write(held[100:])
	r, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || r.StatusCode != http.StatusCreated {
		t.Fatalf("the held upload: %v %v", r, err)
	}
	if resp := put(); resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload after the slot freed: %d", resp.StatusCode)
	}
}

func countObjects(t *testing.T, st registry.Backend, prefix string) int {
	t.Helper()
	n := 0
	if err := st.List(t.Context(), prefix, func(storage.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}
