package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/storage/fs"
	"modelx.io/modelx/storage/s3"
)

// TestPushToFullRegistry fills a registry whose storage is a small real
// filesystem, under storage/fs and under a real S3 server (proxied and
// redirect mode): the push fails at once with an explanation of the full
// storage and what to do (not a reset connection, a bare internal error or
// retries), and the model stored before is intact.
func TestPushToFullRegistry(t *testing.T) {
	const capacity = 12 << 20
	for _, tc := range []struct {
		name     string
		redirect bool
		store    func(t *testing.T) registry.Backend
		want     []string
	}{
		{name: "fs", store: func(t *testing.T) registry.Backend {
			st, err := fs.New(testenv.SmallFS(t, capacity))
			if err != nil {
				t.Fatal(err)
			}
			return st
		}, want: []string{"INSUFFICIENT_STORAGE", "storage is full", "nothing was stored", "request ID "}},
		{name: "s3", store: func(t *testing.T) registry.Backend { return smallS3(t, capacity) },
			want: []string{"INSUFFICIENT_STORAGE", "storage is full", "nothing was stored", "request ID "}},
		{name: "s3-redirect", redirect: true, store: func(t *testing.T) registry.Backend { return smallS3(t, capacity) },
			want: []string{"HTTP 507 InsufficientStorage", "object store is full", "nothing was stored"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("MODELX_CONFIG", filepath.Join(t.TempDir(), "config.yaml"))
			t.Setenv("MODELX_TOKEN", "")
			var log testenv.LogBuffer
			reg, err := registry.New(tc.store(t), registry.Options{EnableRedirect: tc.redirect, Logger: slog.New(slog.NewTextHandler(&log, nil))})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(reg.Handler())
			t.Cleanup(srv.Close)

			small := t.TempDir()
			mustRun(t, "init", small)
			writeRandom(t, filepath.Join(small, "weights.bin"), 2<<20, 1)
			mustRun(t, "push", srv.URL+"/team/small:v1", small, "-q")

			big := t.TempDir()
			mustRun(t, "init", big)
			writeRandom(t, filepath.Join(big, "weights.bin"), 2*capacity, 2)
			_, _, err = run(t, "", "push", srv.URL+"/team/big:v1", big, "-q")
			if err == nil {
				t.Fatal("a push larger than the registry's storage succeeded")
			}
			msg := err.Error()
			for _, want := range tc.want {
				if !strings.Contains(msg, want) {
					t.Errorf("push error lacks %q: %s", want, msg)
				}
			}
			if strings.Contains(msg, "connection reset") || strings.Contains(msg, "map[") {
				t.Errorf("push error is not readable: %s", msg)
			}
			out := filepath.Join(t.TempDir(), "out")
			mustRun(t, "pull", srv.URL+"/team/small:v1", out, "-q")
			want, _ := os.ReadFile(filepath.Join(small, "weights.bin"))
			got, err := os.ReadFile(filepath.Join(out, "weights.bin"))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("the model stored before the storage filled is damaged: %v", err)
			}

			// Handlers log their request line after answering: close the
			// server, which waits for them, before reading the log.
			srv.Close()
			if !tc.redirect {
				if !strings.Contains(log.String(), "storage full") {
					t.Errorf("the registry log does not say its storage is full:\n%s", log.String())
				}
				// 507 is not worth a retry: no blob is offered twice.
				refused := map[string]int{}
				for _, line := range strings.Split(log.String(), "\n") {
					if strings.Contains(line, "msg=request") && strings.Contains(line, "status=507") {
						path := line[strings.Index(line, "path="):]
						refused[strings.Fields(path)[0]]++
					}
				}
				if len(refused) == 0 {
					t.Errorf("no request was answered 507:\n%s", log.String())
				}
				for path, n := range refused {
					if n > 1 {
						t.Errorf("%s was sent %d times after a 507", path, n)
					}
				}
			}
		})
	}
}

// smallS3 is a bucket of a real S3 server whose disk holds size bytes.
func smallS3(t *testing.T, size int64) *s3.Store {
	t.Helper()
	srv := testenv.StartS3On(t, testenv.SmallFS(t, size))
	ctx := context.Background()
	st, err := s3.New(ctx, s3.Config{Endpoint: srv.URL, Bucket: "models", Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateBucket(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

func writeRandom(t *testing.T, path string, size int, seed uint64) {
	t.Helper()
	r := rand.NewChaCha8([32]byte{byte(seed)})
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyN(f, r, int64(size)); err != nil {
		t.Fatal(err)
	}
}
