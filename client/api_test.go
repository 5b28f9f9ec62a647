package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
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
	if _, err := NewAPI(srv.URL, nil, func() (string, error) { return "good", nil }).Index(ctx, "private", "m", ""); err != nil {
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
