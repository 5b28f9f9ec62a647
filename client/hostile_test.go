package client_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"modelx.io/modelx/client"
	"modelx.io/modelx/registry"
	fsstore "modelx.io/modelx/storage/fs"
)

// hostile sits in front of a real registry and misbehaves on blob and
// manifest GETs the way a broken or malicious registry (or proxy) would.
type hostile struct {
	next     http.Handler
	mode     atomic.Value // string
	served   atomic.Int64 // body bytes the misbehaving answers sent
	requests atomic.Int64
	other    string // another host, for redirects away
}

func (h *hostile) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mode, _ := h.mode.Load().(string)
	blob := r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/")
	manifest := r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/")
	if (blob && mode != "huge-manifest") || (manifest && mode == "huge-manifest") {
		h.requests.Add(1)
		switch mode {
		case "wrong-bytes":
			rec := httptest.NewRecorder()
			h.next.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			for i := range body {
				body[i] ^= 0x5a
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(body)
			return
		case "trailing": // the blob, then bytes it does not have
			rec := httptest.NewRecorder()
			h.next.ServeHTTP(rec, r)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
			w.Write([]byte("and more"))
			return
		case "truncated":
			rec := httptest.NewRecorder()
			h.next.ServeHTTP(rec, r)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes()[:rec.Body.Len()/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // cut the connection short
		case "endless":
			w.WriteHeader(http.StatusOK) // no Content-Length: a body without end
			buf := make([]byte, 64<<10)
			for r.Context().Err() == nil {
				rand.Read(buf)
				n, err := w.Write(buf)
				h.served.Add(int64(n))
				if err != nil || h.served.Load() > 1<<30 {
					return
				}
			}
			return
		case "stalled":
			w.Header().Set("Content-Length", "1000000")
			w.WriteHeader(http.StatusOK)
			w.Write(make([]byte, 10))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		case "redirect-loop":
			http.Redirect(w, r, r.URL.String(), http.StatusFound)
			return
		case "redirect-away":
			http.Redirect(w, r, h.other+r.URL.Path, http.StatusFound)
			return
		case "huge-manifest":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			chunk := bytes.Repeat([]byte(" "), 1<<20)
			for range 100 { // 100 MiB of JSON whitespace
				n, err := w.Write(chunk)
				h.served.Add(int64(n))
				if err != nil {
					return
				}
			}
			return
		}
	}
	h.next.ServeHTTP(w, r)
}

// TestHostileRegistry pulls through a registry that sends wrong bytes,
// truncated, endless or stalled bodies, redirect loops, redirects to another
// host and a huge manifest. Each pull fails clearly, reads a bounded amount,
// and leaves the destination as it was, even forced over a file there; the
// redirect away must not carry the token.
func TestHostileRegistry(t *testing.T) {
	st, err := fsstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := registry.New(st, registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	var sawToken atomic.Bool
	away := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			sawToken.Store(true)
		}
		reg.Handler().ServeHTTP(w, r) // the right bytes, from elsewhere
	}))
	defer away.Close()
	h := &hostile{next: reg.Handler(), other: away.URL}
	srv := httptest.NewServer(h)
	defer srv.Close()

	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: hostile\n"), 0o644)
	write(t, src, "weights.bin", random(7, 300<<10), 0o644)
	write(t, src, "small/config.json", []byte(`{"a": 1}`), 0o644)
	ctx := context.Background()
	token := func(string) (string, error) { return "secret-token", nil }
	c := newClient(client.Options{Token: token})
	// Only the stalled body meets a short stall timeout: on a loaded
	// machine an honest answer may pause longer than that.
	impatient := newClient(client.Options{Token: token, StallTimeout: 300 * time.Millisecond})
	r := ref(t, env{url: srv.URL}, "evil/model:v1")
	if _, err := c.Push(ctx, r, src); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		mode, want string
		bound      int64 // most body bytes the client may take from the misbehaving answers
	}{
		{"wrong-bytes", "corrupt", 0},
		{"truncated", "", 0},
		{"trailing", "size mismatch", 0},
		{"endless", "", 2 << 20},
		{"stalled", "progress", 0},
		{"redirect-loop", "", 0},
		{"huge-manifest", "limit", 17 << 20},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			h.mode.Store(tc.mode)
			h.served.Store(0)
			h.requests.Store(0)
			defer h.mode.Store("")
			dst := t.TempDir()
			write(t, dst, "weights.bin", []byte("the old weights"), 0o644)
			write(t, dst, "unrelated.txt", []byte("keep me"), 0o644)
			start := time.Now()
			puller := c
			if tc.mode == "stalled" {
				puller = impatient
			}
			// Forced over the user's weights.bin: even then, a failed
			// pull replaces nothing.
			_, err := puller.Pull(ctx, r, dst, client.PullOptions{Force: true})
			if err == nil {
				t.Fatal("the pull succeeded")
			}
			if tc.want != "" && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			if tc.bound > 0 && h.served.Load() > 8*tc.bound {
				t.Fatalf("the registry got %d bytes out of the client, want about %d at most", h.served.Load(), tc.bound)
			}
			if h.requests.Load() > 20 {
				t.Fatalf("%d requests: the client keeps retrying", h.requests.Load())
			}
			got := tree(t, dst)
			want := map[string]string{"weights.bin": fmt.Sprintf("%v:%x", os.FileMode(0o644), "the old weights"), "unrelated.txt": fmt.Sprintf("%v:%x", os.FileMode(0o644), "keep me")}
			for name, v := range got {
				if want[name] != v && name != "modelx.yaml" {
					t.Fatalf("%s was written by a failed pull (%d files now: %v)", name, len(got), keys(got))
				}
			}
			if got["weights.bin"] != want["weights.bin"] || got["unrelated.txt"] != want["unrelated.txt"] {
				t.Fatal("a failed pull changed the files that were there")
			}
			t.Logf("%s: failed after %v: %v", tc.mode, time.Since(start).Round(time.Millisecond), err)
		})
	}

	// The CLI's info reads modelx.yaml this way: verified, like a pull.
	t.Run("config", func(t *testing.T) {
		api := c.API(r.Registry)
		m, _, _, err := api.GetManifest(ctx, r.Repository, r.Name, r.ManifestRef())
		if err != nil {
			t.Fatal(err)
		}
		if data, err := api.FetchConfig(ctx, r.Repository, r.Name, m.Config); err != nil || string(data) != "description: hostile\n" {
			t.Fatalf("FetchConfig: %q, %v", data, err)
		}
		for _, mode := range []string{"wrong-bytes", "trailing", "truncated"} {
			h.mode.Store(mode)
			if data, err := api.FetchConfig(ctx, r.Repository, r.Name, m.Config); err == nil {
				t.Errorf("%s: FetchConfig returned %q", mode, data)
			}
		}
		h.mode.Store("")
	})

	t.Run("redirect-away", func(t *testing.T) {
		h.mode.Store("redirect-away")
		defer h.mode.Store("")
		dst := filepath.Join(t.TempDir(), "out")
		if _, err := c.Pull(ctx, r, dst, client.PullOptions{}); err != nil {
			t.Fatalf("pull through a redirect to another host: %v", err)
		}
		if sawToken.Load() {
			t.Fatal("the token followed the redirect to another host")
		}
		sameTree(t, src, dst)
	})
}
