package registry

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/spec"
)

// waitGauges waits until reserved and waiting read as given.
func (e *limitsEnv) waitGauges(t *testing.T, reserved, waiting float64) {
	t.Helper()
	b := e.reg.manifestBudget
	for deadline := time.Now().Add(time.Minute); value(b.reserved) != reserved || value(b.waiting) != waiting; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%v bytes reserved and %v PUTs waiting, want %v and %v", value(b.reserved), value(b.waiting), reserved, waiting)
		}
	}
}

// TestManifestPutsBoundedByMemory: of six concurrent manifest PUTs whose
// bodies are on their way, only as many as the memory budget holds read
// and parse at once; the others queue and go through when room frees.
func TestManifestPutsBoundedByMemory(t *testing.T) {
	config := []byte("description: budget\n")
	m := spec.Manifest{SchemaVersion: spec.SchemaVersion, MediaType: spec.MediaTypeManifest,
		Config: spec.Descriptor{Name: spec.ConfigFileName, MediaType: spec.MediaTypeConfig, Digest: digest.FromBytes(config), Size: int64(len(config))}}
	for i := range 1000 {
		m.Blobs = append(m.Blobs, spec.Descriptor{Name: fmt.Sprintf("files/f%04d.bin", i), MediaType: spec.MediaTypeFile, Digest: digest.FromBytes(config), Size: int64(len(config))})
	}
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	weight := float64(len(body) * manifestParseCost)
	e := startLimited(t, Options{ManifestParseMemory: int64(2 * weight), MinUploadRate: -1}, func(reg *Registry) {
		reg.manifestBudget.wait = 10 * time.Minute // queued PUTs wait for the test, not for a clock
	})
	if status, _, msg := e.put(t, config); status != http.StatusCreated {
		t.Fatalf("upload the config: %d %s", status, msg)
	}
	half := len(body) / 2
	conns := make([]net.Conn, 6)
	for i := range conns {
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		fmt.Fprintf(conn, "PUT /lim/model/manifests/v%d HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", i, spec.MediaTypeManifest, len(body))
		conn.Write(body[:half])
		conns[i] = conn
	}
	// Two read their bodies; four wait for room.
	e.waitGauges(t, 2*weight, 4)

	var wg sync.WaitGroup
	for i, conn := range conns {
		wg.Go(func() {
			conn.Write(body[half:])
			conn.SetReadDeadline(time.Now().Add(2 * time.Minute)) // a bound for the test
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Errorf("PUT v%d: %v", i, err)
				return
			}
			msg, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusCreated {
				t.Errorf("PUT v%d: %d %s", i, resp.StatusCode, msg)
			}
		})
	}
	wg.Wait()
	e.waitGauges(t, 0, 0)
}

// TestManifestBudget checks the reservations of manifest PUTs: by
// Content-Length, by the limit when it is unknown, never more than the
// budget, nothing for a body refused for its size; and what a PUT that
// finds no room gets: 429 after the wait, or nothing if its client left.
func TestManifestBudget(t *testing.T) {
	m := newMetrics()
	b := newManifestBudget(100, m)
	b.wait = time.Millisecond
	const limit = 1000
	put := func(ctx context.Context, contentLength int64) (func(), http.Header, error) {
		r := httptest.NewRequestWithContext(ctx, http.MethodPut, "/m/n/manifests/v1", nil)
		r.ContentLength = contentLength
		w := httptest.NewRecorder()
		release, err := b.acquire(w, r, limit)
		return release, w.Header(), err
	}
	ctx := t.Context()
	var held []func()
	for range 2 {
		release, _, err := put(ctx, 10) // 40 each
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, release)
	}
	if got := value(b.reserved); got != 80 {
		t.Fatalf("reserved %v, want 80", got)
	}
	_, h, err := put(ctx, 10)
	if err == nil || !strings.Contains(err.Error(), "--manifest-parse-memory") || !strings.Contains(err.Error(), string(spec.ErrorTooManyRequests)) || h.Get("Retry-After") == "" {
		t.Fatalf("a PUT past the budget: %v, Retry-After %q", err, h.Get("Retry-After"))
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, h, err := put(gone, 10); err != context.Canceled || h.Get("Retry-After") != "" {
		t.Fatalf("a PUT whose client left: %v, Retry-After %q", err, h.Get("Retry-After"))
	}
	if release, _, err := put(ctx, limit+1); err != nil || value(b.reserved) != 80 {
		t.Fatalf("a body over the size limit: %v, reserved %v", err, value(b.reserved))
	} else {
		release()
	}
	for _, release := range held {
		release()
	}
	// Unknown length: the most the body may be, capped at the budget, so
	// it runs, but alone.
	release, _, err := put(ctx, -1)
	if err != nil || value(b.reserved) != 100 {
		t.Fatalf("a PUT of unknown length: %v, reserved %v", err, value(b.reserved))
	}
	if _, _, err := put(ctx, 1); err == nil {
		t.Fatal("a PUT got in beside one that holds the whole budget")
	}
	release()
	if got := value(b.reserved); got != 0 {
		t.Fatalf("reserved %v after every release", got)
	}
	if got := value(m.uploadsRefused.WithLabelValues("manifest_parse_memory")); got != 2 {
		t.Errorf("refusals counted: %v, want 2", got)
	}
}
