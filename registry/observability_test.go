package registry_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"modelx.io/modelx/client"
	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/storage/fs"
)

func smallModel(t *testing.T) string {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "modelx.yaml"), []byte("description: observed\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "weights.bin"), []byte(strings.Repeat("weights!", 300_000)), 0o644)
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"layers": 2}`), 0o644)
	return dir
}

// TestMetricsAfterPushAndPull scrapes /metrics after a push, a second push
// of the same files to another model, a pull and a garbage collection, on
// the proxying registry and on the redirecting one, and checks the series
// against what the client reports it moved.
func TestMetricsAfterPushAndPull(t *testing.T) {
	for _, b := range backends(t) {
		if b.name == "s3-proxy" {
			continue
		}
		t.Run(b.name, func(t *testing.T) {
			h := newHarness(t, b, registry.Options{})
			ctx := context.Background()
			c := client.New(client.Options{})
			ref := func(s string) client.Reference {
				r, err := client.ParseReference(h.url+"/"+s, nil)
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			src := smallModel(t)
			pushed, err := c.Push(ctx, ref("obs/model:v1"), src)
			if err != nil {
				t.Fatal(err)
			}
			again, err := c.PushWithOptions(ctx, ref("obs/other:v1"), src, client.PushOptions{From: "obs/model"})
			if err != nil {
				t.Fatal(err)
			}
			pulled, err := c.Pull(ctx, ref("obs/model:v1"), t.TempDir(), client.PullOptions{})
			if err != nil {
				t.Fatal(err)
			}
			gc, err := c.API(h.url).GarbageCollect(ctx, "obs", "model")
			if err != nil {
				t.Fatal(err)
			}
			text := testenv.Scrape(t, h.url)

			blobRoute := `route="/{repository}/{name}/blobs/{digest}"`
			batchRoute := `route="/{repository}/{name}/blobs/batch"`
			if b.redirect {
				if got := testenv.Metric(t, text, "modelxd_blob_redirects_total", `{direction="upload"}`); got != float64(pushed.BlobsTransferred) {
					t.Errorf("upload redirects %v, want %d (blobs sent)", got, pushed.BlobsTransferred)
				}
				if got := testenv.Metric(t, text, "modelxd_blob_redirects_total", `{direction="download"}`); got != float64(pulled.BlobsTransferred) {
					t.Errorf("download redirects %v, want %d", got, pulled.BlobsTransferred)
				}
				// Every blob was offered in a batch, and sent to the URL it got.
				if got := testenv.Metric(t, text, "modelxd_http_requests_total", `{code="302",method="PUT",`+blobRoute+`}`); got != 0 {
					t.Errorf("302 answers to blob PUTs %v, want none (offered in batches)", got)
				}
				if got := testenv.Metric(t, text, "modelxd_http_requests_total", `{code="200",method="POST",`+batchRoute+`}`); got < 3 {
					t.Errorf("batch requests %v, want at least one per push and pull", got)
				}
			} else {
				if got := testenv.Metric(t, text, "modelxd_blob_bytes_total", `{direction="in"}`); got != float64(pushed.UploadedBytes) {
					t.Errorf("bytes in %v, want %d (uploaded)", got, pushed.UploadedBytes)
				}
				if got := testenv.Metric(t, text, "modelxd_blob_bytes_total", `{direction="out"}`); got != float64(pulled.DownloadedBytes) {
					t.Errorf("bytes out %v, want %d (downloaded)", got, pulled.DownloadedBytes)
				}
				// The bytes came with PUTs; the second push's mounts were
				// answered in batches.
				if got := testenv.Metric(t, text, "modelxd_http_requests_total", `{code="201",method="PUT",`+blobRoute+`}`); got != float64(pushed.BlobsTransferred) {
					t.Errorf("201 answers to blob PUTs %v, want %d", got, pushed.BlobsTransferred)
				}
			}
			if got := testenv.Metric(t, text, "modelxd_blob_dedup_hits_total", `{kind="mount"}`); got != float64(again.BlobsSkipped) || again.BlobsTransferred != 0 {
				t.Errorf("uploads mounted without a body %v, want %d (blobs the second push skipped; it sent %d)", got, again.BlobsSkipped, again.BlobsTransferred)
			}
			if got := testenv.Metric(t, text, "modelxd_http_requests_total", `{code="201",method="PUT",route="/{repository}/{name}/manifests/{reference}"}`); got != 2 {
				t.Errorf("manifest PUTs %v, want 2", got)
			}
			if got := testenv.Metric(t, text, "modelxd_gc_runs_total", `{result="ok"}`); got != 1 {
				t.Errorf("gc runs %v, want 1", got)
			}
			if got := testenv.Metric(t, text, "modelxd_gc_deleted_total", `{kind="blob"}`); got != float64(gc.BlobsDeleted) {
				t.Errorf("gc deleted blobs %v, want %d", got, gc.BlobsDeleted)
			}
			if testenv.Metric(t, text, "modelxd_storage_operation_duration_seconds_count", `{op="put"}`) == 0 {
				t.Error("no storage put was timed")
			}
			if strings.Contains(text, "modelxd_storage_errors_total{") {
				t.Errorf("storage errors recorded:\n%s", text)
			}
		})
	}
}

// TestTraceSpans records the spans of a push: the client's requests carry
// the trace to the registry, whose request spans have storage spans under
// them.
func TestTraceSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTracerProvider(prevTP); otel.SetTextMapPropagator(prevProp) })

	srv := quietServer(t)
	ctx, root := tp.Tracer("test").Start(context.Background(), "modelx push")
	r, _ := client.ParseReference(srv.URL+"/trace/model:v1", nil)
	if _, err := client.New(client.Options{}).Push(ctx, r, smallModel(t)); err != nil {
		t.Fatal(err)
	}
	root.End()
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		byID[s.SpanContext().SpanID()] = s
	}
	var server, storage, clientSpans int
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID() != root.SpanContext().TraceID() {
			t.Fatalf("span %q is in another trace", s.Name())
		}
		switch {
		case s.SpanKind() == trace.SpanKindServer:
			server++
			parent, ok := byID[s.Parent().SpanID()]
			if !ok || parent.SpanKind() != trace.SpanKindClient {
				t.Fatalf("server span %q has no client span as parent", s.Name())
			}
		case strings.HasPrefix(s.Name(), "storage."):
			storage++
			if parent, ok := byID[s.Parent().SpanID()]; !ok || parent.SpanKind() != trace.SpanKindServer {
				t.Fatalf("storage span %q is not under a request span", s.Name())
			}
		case s.SpanKind() == trace.SpanKindClient:
			clientSpans++
		}
	}
	names := map[string]bool{}
	for _, s := range rec.Ended() {
		names[s.Name()] = true
	}
	for _, want := range []string{"PUT /{repository}/{name}/blobs/{digest}", "PUT /{repository}/{name}/manifests/{reference}", "storage.put", "storage.stat", "HTTP PUT"} {
		if !names[want] {
			t.Errorf("no span %q among %v", want, names)
		}
	}
	if server == 0 || storage == 0 || clientSpans < server {
		t.Fatalf("spans: %d server, %d storage, %d client", server, storage, clientSpans)
	}
}

// TestMetricsSeriesStayBounded sends hundreds of requests with made-up
// methods and paths, unauthenticated: the request series they add stay a
// handful, labelled "other" and "unmatched", and name none of them.
func TestMetricsSeriesStayBounded(t *testing.T) {
	srv := quietServer(t)
	send := func(method, path string) {
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	series := func() []string {
		var out []string
		for line := range strings.SplitSeq(testenv.Scrape(t, srv.URL), "\n") {
			if strings.HasPrefix(line, "modelxd_http_requests_total{") || strings.HasPrefix(line, "modelxd_http_request_duration_seconds_count{") {
				out = append(out, line)
			}
		}
		return out
	}
	series() // the scrape's own series, from here on
	for i := range 300 {
		send(fmt.Sprintf("MADEUP%03d", i), fmt.Sprintf("/made/up%d", i))             // a model path
		send(fmt.Sprintf("WEIRD%03d", i), fmt.Sprintf("/x%d/y/z/%d/w", i, i))        // below a model, no route
		send(http.MethodGet, fmt.Sprintf("/nowhere%d", i))                           // one segment: no route at all
		send(http.MethodDelete, fmt.Sprintf("/-bad%d/name/blobs/sha256:zz%d", i, i)) // a route, with bad names
	}
	lines := series()
	if len(lines) > 20 {
		t.Fatalf("%d request series after 1,200 made-up requests, want a handful:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for _, l := range lines {
		if strings.Contains(l, "MADEUP") || strings.Contains(l, "WEIRD") || strings.Contains(l, "made/up") || strings.Contains(l, "nowhere") || strings.Contains(l, "bad") {
			t.Errorf("a series names what a client made up: %s", l)
		}
	}
	if !strings.Contains(strings.Join(lines, "\n"), `method="other"`) {
		t.Errorf("no series labelled method=\"other\":\n%s", strings.Join(lines, "\n"))
	}
	// More made-up requests add no series at all.
	before := len(lines)
	for i := range 50 {
		send(fmt.Sprintf("AGAIN%03d", i), fmt.Sprintf("/again%d/m/n", i))
	}
	if after := len(series()); after != before {
		t.Errorf("50 more made-up requests took the series from %d to %d", before, after)
	}
}

// quietServer serves a registry on a fresh local filesystem, logging nothing.
func quietServer(t *testing.T) *httptest.Server {
	t.Helper()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(st, registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	return srv
}
