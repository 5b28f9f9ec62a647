package s3_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/storage"
	"modelx.io/modelx/storage/s3"
	"modelx.io/modelx/storage/storagetest"
)

func TestConformance(t *testing.T) {
	srv := testenv.StartS3(t)
	var n atomic.Int32
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		return storage.Wrap(NewTestStore(t, srv, fmt.Sprintf("bucket-%d", n.Add(1))), nil)
	})
}

// TestWrap: the wrapped store has exactly the backend's capabilities.
func TestWrap(t *testing.T) {
	st, err := s3.New(context.Background(), s3.Config{Endpoint: "http://127.0.0.1:1", Bucket: "b", AccessKey: "k", SecretKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	storagetest.CheckWrap(t, st)
	if got := storagetest.Capabilities(st); !slices.Equal(got, []string{"ConditionalWriter", "ConditionalReader", "Copier", "Presigner"}) {
		t.Errorf("s3 capabilities: %v", got)
	}
}

// NewTestStore returns a store on a new bucket of srv.
func NewTestStore(t *testing.T, srv *testenv.S3Server, bucket string) *s3.Store {
	t.Helper()
	return newTestStore(t, srv, s3.Config{Bucket: bucket})
}

// newTestStore returns a store of cfg on srv, creating its bucket.
func newTestStore(t *testing.T, srv *testenv.S3Server, cfg s3.Config) *s3.Store {
	t.Helper()
	ctx := context.Background()
	cfg.Endpoint, cfg.Region, cfg.AccessKey, cfg.SecretKey, cfg.PathStyle = srv.URL, srv.Region, srv.AccessKey, srv.SecretKey, true
	st, err := s3.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateBucket(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Check(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestMultipartPut: an object from the multipart threshold up goes in
// parts, verified like a single PUT: the right bytes are stored whole, and
// wrong or short ones leave nothing.
func TestMultipartPut(t *testing.T) {
	srv := testenv.StartS3(t)
	st := storage.Wrap(newTestStore(t, srv, s3.Config{Bucket: "parts", MultipartThreshold: 5 << 20}), nil)
	ctx := context.Background()
	data := make([]byte, 11<<20+3)
	_, _ = rand.Read(data)
	sum := sha256.Sum256(data)
	if err := st.Put(ctx, "blob", bytes.NewReader(data), int64(len(data)), sum[:]); err != nil {
		t.Fatal(err)
	}
	got, info, err := storage.ReadAll(ctx, st, "blob", 1<<30)
	if err != nil || !bytes.Equal(got, data) || info.Size != int64(len(data)) {
		t.Fatalf("read back %d bytes (%v), want the %d put", len(got), err, len(data))
	}
	wrong := bytes.Clone(data)
	wrong[len(wrong)-1] ^= 1
	if err := st.Put(ctx, "wrong", bytes.NewReader(wrong), int64(len(wrong)), sum[:]); !errors.Is(err, storage.ErrChecksumMismatch) {
		t.Fatalf("wrong bytes: %v, want ErrChecksumMismatch", err)
	}
	if err := st.Put(ctx, "short", bytes.NewReader(data[:6<<20]), int64(len(data)), sum[:]); !errors.Is(err, storage.ErrSizeMismatch) {
		t.Fatalf("short body: %v, want ErrSizeMismatch", err)
	}
	for _, key := range []string{"wrong", "short"} {
		if _, err := st.Stat(ctx, key); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s: stat %v, want nothing stored", key, err)
		}
	}
}

func TestFull(t *testing.T) {
	const capacity = 4 << 20
	srv := testenv.StartS3On(t, testenv.SmallFS(t, capacity))
	storagetest.RunFull(t, storage.Wrap(NewTestStore(t, srv, "full"), nil), capacity)
}

// TestOpenByName: the backend registers as "s3", reads its settings into
// a Config, and checks the bucket before it returns the store.
func TestOpenByName(t *testing.T) {
	ctx := context.Background()
	srv := testenv.StartS3(t)
	NewTestStore(t, srv, "opened")
	params := storage.Params{
		s3.ParamEndpoint: srv.URL, s3.ParamBucket: "opened", s3.ParamRegion: srv.Region,
		s3.ParamAccessKey: srv.AccessKey, s3.ParamSecretKey: srv.SecretKey, s3.ParamPathStyle: "true",
	}
	st, err := storage.Open(ctx, s3.BackendName, params)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "a/b", strings.NewReader("x"), 1, nil); err != nil {
		t.Fatal(err)
	}
	missing := storage.Params{s3.ParamBucket: "missing"}
	for k, v := range params {
		if k != s3.ParamBucket {
			missing[k] = v
		}
	}
	for _, c := range []struct {
		params storage.Params
		want   string
	}{
		{storage.Params{s3.ParamEndpoint: srv.URL}, "s3: bucket is required (--s3-bucket)"},
		{storage.Params{s3.ParamBucket: "b", "dir": "/tmp"}, `s3: unknown setting "dir"`},
		{storage.Params{s3.ParamBucket: "b", s3.ParamPathStyle: "yes please"}, `s3: path-style "yes please": want true or false`},
		{storage.Params{s3.ParamBucket: "b", s3.ParamAccessKey: "k"}, "s3: set both the access key and the secret key"},
		{missing, `s3: bucket "missing" is not reachable`},
	} {
		if _, err := storage.Open(ctx, s3.BackendName, c.params); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open with %v: %v, want %q", c.params[s3.ParamBucket], err, c.want)
		}
	}
}
