package transport

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// statuses answers the statuses in turn, then 200, counting requests and
// the bodies they sent.
func statuses(t *testing.T, codes ...int) (*httptest.Server, *atomic.Int32, *[]string) {
	t.Helper()
	var n atomic.Int32
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		if i < len(codes) {
			w.WriteHeader(codes[i])
			return
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	return srv, &n, &bodies
}

func TestRetryStatuses(t *testing.T) {
	for _, tc := range []struct {
		name     string
		codes    []int
		retries  int
		want     int // final status
		attempts int32
	}{
		{"5xx then ok", []int{502, 503}, 4, 200, 3},
		{"429 retried", []int{429}, 4, 200, 2},
		{"501 not retried", []int{501}, 4, 501, 1},
		{"507 not retried", []int{507}, 4, 507, 1},
		{"4xx not retried", []int{404}, 4, 404, 1},
		{"last answer returned", []int{500, 500, 500}, 2, 500, 3},
		{"no retries", []int{500}, 0, 500, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, n, _ := statuses(t, tc.codes...)
			c := &http.Client{Transport: &Retry{Next: http.DefaultTransport, Retries: tc.retries}}
			resp, err := c.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want || n.Load() != tc.attempts {
				t.Fatalf("status %d after %d attempts, want %d after %d", resp.StatusCode, n.Load(), tc.want, tc.attempts)
			}
		})
	}
}

func TestRetryableMatchesPolicy(t *testing.T) {
	for status, want := range map[int]bool{200: false, 404: false, 429: true, 500: true, 501: false, 502: true, 503: true, 507: false} {
		if Retryable(status) != want {
			t.Errorf("Retryable(%d) = %v, want %v", status, !want, want)
		}
	}
}

// TestRetryRewindsLazyBody: each attempt opens the body afresh, and a body
// the server never asks for is never opened.
func TestRetryRewindsLazyBody(t *testing.T) {
	srv, n, bodies := statuses(t, 503, 503)
	var opens atomic.Int32
	open := func() (io.ReadCloser, error) {
		opens.Add(1)
		return io.NopCloser(strings.NewReader("payload")), nil
	}
	req, _ := http.NewRequest(http.MethodPut, srv.URL, nil)
	req.GetBody = LazyBody(open)
	req.Body, _ = req.GetBody()
	req.ContentLength = int64(len("payload"))
	c := &http.Client{Transport: &Retry{Next: http.DefaultTransport, Retries: 4}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n.Load() != 3 || opens.Load() != 3 || strings.Join(*bodies, ",") != "payload,payload,payload" {
		t.Fatalf("%d attempts, %d opens, bodies %q", n.Load(), opens.Load(), *bodies)
	}

	// A server that answers before reading the body: never opened.
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) }))
	defer refuse.Close()
	opens.Store(0)
	req, _ = http.NewRequest(http.MethodPut, refuse.URL, nil)
	req.Header.Set("Expect", "100-continue")
	req.GetBody = LazyBody(open)
	req.Body, _ = req.GetBody()
	req.ContentLength = 7
	resp, err = (&http.Client{Transport: &Retry{Next: DefaultHTTPClient().Transport, Retries: 4}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if opens.Load() != 0 {
		t.Fatalf("a body the server refused was opened %d times", opens.Load())
	}
}

// TestRetryStopsAtLocalErrors: a body that cannot be opened fails at once,
// with the open error.
func TestRetryStopsAtLocalErrors(t *testing.T) {
	srv, n, _ := statuses(t)
	missing := errors.New("no such file")
	req, _ := http.NewRequest(http.MethodPut, srv.URL, nil)
	req.GetBody = LazyBody(func() (io.ReadCloser, error) { return nil, missing })
	req.Body, _ = req.GetBody()
	req.ContentLength = 10
	_, err := (&Retry{Next: http.DefaultTransport, Retries: 4}).RoundTrip(req)
	var local *LocalError
	if !errors.As(err, &local) || !errors.Is(err, missing) {
		t.Fatalf("err = %v, want a *LocalError wrapping the open error", err)
	}
	if n.Load() > 1 {
		t.Fatalf("%d attempts, want at most 1", n.Load())
	}
}

// TestRetryNetworkErrors: a refused connection is tried Retries+1 times;
// a cancelled context stops the backoff.
func TestRetryNetworkErrors(t *testing.T) {
	var attempts atomic.Int32
	failing := roundTripFunc(func(*http.Request) (*http.Response, error) {
		attempts.Add(1)
		return nil, errors.New("connection refused")
	})
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:1/", nil)
	if _, err := (&Retry{Next: failing, Retries: 2}).RoundTrip(req); err == nil || attempts.Load() != 3 {
		t.Fatalf("err %v after %d attempts, want an error after 3", err, attempts.Load())
	}
	ctx, cancel := context.WithCancel(context.Background())
	attempts.Store(0)
	cancelling := roundTripFunc(func(*http.Request) (*http.Response, error) {
		attempts.Add(1)
		cancel()
		return nil, errors.New("reset")
	})
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:1/", nil)
	if _, err := (&Retry{Next: cancelling, Retries: 4}).RoundTrip(req); err == nil || attempts.Load() != 1 {
		t.Fatalf("err %v after %d attempts, want an error after 1", err, attempts.Load())
	}
	attempts.Store(0)
	plain := roundTripFunc(func(*http.Request) (*http.Response, error) {
		attempts.Add(1)
		return nil, errors.New("http: server gave HTTP response to HTTPS client")
	})
	if _, err := (&Retry{Next: plain, Retries: 4}).RoundTrip(req.WithContext(context.Background())); !IsPlainHTTPAnswer(err) || attempts.Load() != 1 {
		t.Fatalf("plain HTTP answer: %v after %d attempts, want no retry", err, attempts.Load())
	}
}

// zeros reads as endless zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestStallGuard: a response that stops mid-body, a server that never
// answers and a request body that stops all fail with ErrStalled naming
// the timeout.
func TestStallGuard(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/body":
			w.Header().Set("Content-Length", "1000")
			w.Write([]byte("partial"))
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release) // before Close, which waits for the handlers
	c := &http.Client{Transport: &StallGuard{Next: http.DefaultTransport, Timeout: 100 * time.Millisecond}}

	resp, err := c.Get(srv.URL + "/body")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, ErrStalled) || !strings.Contains(err.Error(), "100ms") {
		t.Fatalf("stalled body: %v", err)
	}
	if _, err := c.Get(srv.URL + "/silent"); !errors.Is(err, ErrStalled) {
		t.Fatalf("no answer: %v", err)
	}
	// A server that reads no byte of a large upload: the body stops
	// moving once the connection's buffers are full.
	if _, err := c.Post(srv.URL+"/upload", "application/octet-stream", io.LimitReader(zeros{}, 1<<30)); !errors.Is(err, ErrStalled) {
		t.Fatalf("stalled upload: %v", err)
	}

	// A slow but steady body is not a stall.
	steady := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 5 {
			w.Write([]byte("x"))
			w.(http.Flusher).Flush()
			time.Sleep(40 * time.Millisecond)
		}
	}))
	defer steady.Close()
	resp, err = c.Get(steady.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != "xxxxx" {
		t.Fatalf("steady body: %q, %v", b, err)
	}
}

// TestBearerOnlyToRegistry: the token goes to the registry's origin and
// nowhere else; a keychain error fails the request as a *LocalError.
func TestBearerOnlyToRegistry(t *testing.T) {
	got, reg, store := registryAndStore(t, "Authorization")
	b := &Bearer{Next: http.DefaultTransport, Registry: reg.URL, Token: func(context.Context) (string, error) { return "secret", nil }}
	for _, tc := range []struct{ url, want string }{
		{reg.URL + "/repo/name/index", "Bearer secret"},
		{store.URL + "/bucket/key?X-Amz-Signature=abc", ""},
	} {
		req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
		resp, err := b.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got.Load() != tc.want {
			t.Errorf("%s got Authorization %q, want %q", tc.url, got.Load(), tc.want)
		}
		if req.Header.Get("Authorization") != "" {
			t.Error("the caller's request was changed")
		}
	}
	failing := &Bearer{Next: http.DefaultTransport, Registry: reg.URL, Token: func(context.Context) (string, error) { return "", errors.New("token file gone") }}
	req, _ := http.NewRequest(http.MethodGet, reg.URL, nil)
	var local *LocalError
	if _, err := failing.RoundTrip(req); !errors.As(err, &local) {
		t.Fatalf("keychain error: %v, want a *LocalError", err)
	}
}

// registryAndStore starts two servers on two origins, a registry and an
// object store; each stores the header it last received in got.
func registryAndStore(t *testing.T, header string) (got *atomic.Value, reg, store *httptest.Server) {
	got = new(atomic.Value)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got.Store(r.Header.Get(header)) })
	reg, store = httptest.NewServer(handler), httptest.NewServer(handler)
	t.Cleanup(reg.Close)
	t.Cleanup(store.Close)
	return got, reg, store
}

func TestSameOrigin(t *testing.T) {
	for _, tc := range []struct {
		url, registry string
		want          bool
	}{
		{"https://reg.example/a", "https://reg.example", true},
		{"https://REG.example:443/a", "https://reg.example", true},
		{"http://reg.example/a", "https://reg.example", false},
		{"https://reg.example:8443/a", "https://reg.example", false},
		{"https://store.example/a", "https://reg.example", false},
		{"http://127.0.0.1:8080/x", "http://127.0.0.1:8080", true},
	} {
		u, _ := http.NewRequest(http.MethodGet, tc.url, nil)
		if got := sameOrigin(u.URL, tc.registry); got != tc.want {
			t.Errorf("sameOrigin(%s, %s) = %v, want %v", tc.url, tc.registry, got, tc.want)
		}
	}
}

func TestUserAgent(t *testing.T) {
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got.Store(r.UserAgent()) }))
	defer srv.Close()
	c := &http.Client{Transport: &UserAgent{Next: http.DefaultTransport, Value: "modelx/test"}}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got.Load() != "modelx/test" {
		t.Fatalf("User-Agent %q", got.Load())
	}
}

// TestTracing: one span per attempt; a presigned URL's span has its host
// only, and no trace headers go to it; registry requests carry the trace.
func TestTracing(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	defer func() { otel.SetTracerProvider(prevTP); otel.SetTextMapPropagator(prevProp) }()

	traceparent, reg, store := registryAndStore(t, "Traceparent")
	c := &http.Client{Transport: New(nil, Options{Registry: reg.URL})}

	for _, tc := range []struct {
		url       string
		presigned bool
	}{
		{reg.URL + "/nlp/bert/blobs/x", false},
		{store.URL + "/bucket/key?X-Amz-Signature=topsecret", true},
	} {
		resp, err := c.Get(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if sent := traceparent.Load() != ""; sent == tc.presigned {
			t.Errorf("%s: trace header sent = %v", tc.url, sent)
		}
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	for i, s := range spans {
		attrs := map[attribute.Key]attribute.Value{}
		for _, kv := range s.Attributes() {
			attrs[kv.Key] = kv.Value
			if strings.Contains(kv.Value.Emit(), "topsecret") || strings.Contains(kv.Value.Emit(), "bucket") {
				t.Errorf("span %d attribute %s = %q leaks the presigned URL", i, kv.Key, kv.Value.Emit())
			}
		}
		presigned := i == 1
		if attrs["modelx.presigned"].AsBool() != presigned || attrs["http.response.status_code"].AsInt64() != 200 {
			t.Errorf("span %d attributes %v", i, attrs)
		}
		if _, ok := attrs["url.path"]; ok == presigned {
			t.Errorf("span %d: url.path present = %v", i, ok)
		}
	}
}
