package s3_test

import (
	"context"
	"fmt"
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
		return NewTestStore(t, srv, fmt.Sprintf("bucket-%d", n.Add(1)))
	})
}

// NewTestStore returns a store on a new bucket of srv.
func NewTestStore(t *testing.T, srv *testenv.S3Server, bucket string) *s3.Store {
	t.Helper()
	ctx := context.Background()
	st, err := s3.New(ctx, s3.Config{
		Endpoint: srv.URL, Bucket: bucket, Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PathStyle: true,
	})
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

func TestFull(t *testing.T) {
	const capacity = 4 << 20
	srv := testenv.StartS3On(t, testenv.SmallFS(t, capacity))
	storagetest.RunFull(t, NewTestStore(t, srv, "full"), capacity)
}
