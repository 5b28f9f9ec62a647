package client

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

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/client/credentials"
)

func TestAPIErrors(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		switch {
		case strings.HasPrefix(r.URL.Path, "/private/"):
			if r.Header.Get("Authorization") != "Bearer good" {
				w.WriteHeader(http.StatusUnauthorized)
				w.Write([]byte(`{"code":"UNAUTHORIZED","message":"authentication required"}`))
				return
			}
			w.Write([]byte(`{"schemaVersion":1,"manifests":[]}`))
		case strings.HasPrefix(r.URL.Path, "/flaky/"):
			if calls.Load() < 3 {
				w.WriteHeader(http.StatusBadGateway)
				return
			}
			w.Write([]byte(`{"schemaVersion":1,"manifests":[]}`))
		default:
			w.WriteHeader(http.StatusTeapot)
		}
	}))
	defer srv.Close()
	ctx := context.Background()

	_, err := NewAPI(srv.URL, nil, nil).Index(ctx, "private", "m", "")
	if err == nil || !strings.Contains(err.Error(), "modelx login "+srv.URL) || Code(err) != "UNAUTHORIZED" {
		t.Fatalf("401: %v", err)
	}
	if _, err := NewAPI(srv.URL, nil, credentials.Static("good")).Index(ctx, "private", "m", ""); err != nil {
		t.Fatalf("with the token: %v", err)
	}
	calls.Store(0)
	if _, err := NewAPI(srv.URL, nil, nil).Index(ctx, "flaky", "m", ""); err != nil || calls.Load() != 3 {
		t.Fatalf("5xx retried: %v after %d calls", err, calls.Load())
	}
	if _, err := NewAPI(srv.URL, nil, nil).Index(ctx, "other", "m", ""); err == nil || !strings.Contains(err.Error(), "HTTP_418") {
		t.Fatalf("a non-envelope error: %v", err)
	}
}

// TestStalledTransfersFail: a registry that stops sending mid-body, or
// never answers, fails the request with ErrStalled instead of hanging.
func TestStalledTransfersFail(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.Contains(r.URL.Path, "/blobs/"):
			w.Header().Set("Content-Length", "1000")
			w.Write([]byte(strings.Repeat("x", 100)))
			w.(http.Flusher).Flush()
		case strings.Contains(r.URL.Path, "/manifests/"):
			// no answer at all
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	api := NewAPI(srv.URL, nil, nil)
	api.SetStallTimeout(100 * time.Millisecond)
	api.stack.Retry.Retries = 1
	ctx := context.Background()
	rc, err := api.GetBlob(ctx, "m", "x", digest.Digest("sha256:"+strings.Repeat("a", 64)), 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("reading a stalled body: %v, want ErrStalled", err)
	}
	if _, _, _, err := api.GetManifest(ctx, "m", "x", "v1"); !errors.Is(err, ErrStalled) || !strings.Contains(err.Error(), "progress") {
		t.Fatalf("a registry that never answers: %v, want ErrStalled", err)
	}
}

// TestUnreachableStoreKeepsSignatureSecret: a presigned URL whose object
// store cannot be reached fails with an error that names the store, not
// the registry, and carries no part of the signed query.
func TestUnreachableStoreKeepsSignatureSecret(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	storeURL := closed.URL
	closed.Close() // nothing listens there any more
	const signature = "0123456789abcdef-signature"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, storeURL+"/bucket/blobs/x?X-Amz-Credential=AKIA%2Fscope&X-Amz-Signature="+signature, http.StatusFound)
	}))
	defer srv.Close()
	api := NewAPI(srv.URL, nil, nil)
	_, err := api.GetBlob(context.Background(), "r", "n", digest.FromString("x"), 0, -1)
	if err == nil {
		t.Fatal("GetBlob from an unreachable store succeeded")
	}
	msg := err.Error()
	for _, secret := range []string{signature, "X-Amz-Credential", "AKIA"} {
		if strings.Contains(msg, secret) {
			t.Errorf("error carries %q of the signed URL: %s", secret, msg)
		}
	}
	host := strings.TrimPrefix(storeURL, "http://")
	if !strings.Contains(msg, "object store "+host) || !strings.Contains(msg, "unreachable") {
		t.Errorf("error does not say that object store %s is unreachable: %s", host, msg)
	}
}

// TestUserAgent: every request names modelx and its version.
func TestUserAgent(t *testing.T) {
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("User-Agent"))
		w.Write([]byte(`{"schemaVersion":1,"manifests":[]}`))
	}))
	defer srv.Close()
	if _, err := NewAPI(srv.URL, nil, nil).Index(context.Background(), "r", "n", ""); err != nil {
		t.Fatal(err)
	}
	if ua, _ := got.Load().(string); ua != UserAgent || !strings.HasPrefix(ua, "modelx/") {
		t.Fatalf("User-Agent %q, want %q", ua, UserAgent)
	}
}
