package client_test

import (
	"context"
	"fmt"
	"testing"

	"modelx.io/modelx/client"
)

// TestSkippedCountsAgree checks that push and pull count what they skip the
// same way: blobs and their stored bytes, each blob once. A first push
// uploads the version's stored size and a first pull downloads it; pushing
// and pulling again skip exactly that, in as many blobs. The model has a
// chunked file, packed small files and two files with one content.
func TestSkippedCountsAgree(t *testing.T) {
	for _, e := range envs(t) {
		t.Run(e.name, func(t *testing.T) {
			ctx := context.Background()
			src := t.TempDir()
			write(t, src, "modelx.yaml", []byte("description: counts\n"), 0o644)
			write(t, src, "weights.bin", random(11, 900<<10), 0o644) // chunked
			twin := random(12, 12<<10)                               // one chunk: a whole-file blob
			write(t, src, "a/twin.bin", twin, 0o644)
			write(t, src, "b/twin.bin", twin, 0o644)
			for i := range 6 {
				write(t, src, fmt.Sprintf("vocab/%d.txt", i), random(uint64(20+i), 700), 0o644) // packed
			}
			c := newClient(client.Options{})
			r := ref(t, e, "counts/model:v1")
			pushed, err := c.Push(ctx, r, src)
			if err != nil {
				t.Fatal(err)
			}
			m, _, _, err := c.API(r.Registry).GetManifest(ctx, r.Repository, r.Name, "v1")
			if err != nil {
				t.Fatal(err)
			}
			var stored int64
			blobs := m.ReferencedOnce()
			for _, b := range blobs {
				stored += b.Size
			}
			if pushed.UploadedBytes != stored || pushed.BlobsTransferred != len(blobs) || pushed.SkippedBytes != 0 || pushed.BlobsSkipped != 0 {
				t.Fatalf("first push: %+v; want %d bytes in %d blobs uploaded, none skipped", pushed, stored, len(blobs))
			}
			dst := t.TempDir()
			pulled, err := c.Pull(ctx, r, dst, client.PullOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if pulled.DownloadedBytes != stored || pulled.BlobsTransferred != len(blobs) || pulled.SkippedBytes != 0 || pulled.BlobsSkipped != 0 {
				t.Fatalf("first pull: %+v; want %d bytes in %d blobs downloaded, none skipped", pulled, stored, len(blobs))
			}
			repushed, err := c.Push(ctx, r, src)
			if err != nil {
				t.Fatal(err)
			}
			repulled, err := c.Pull(ctx, r, dst, client.PullOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for what, got := range map[string][4]int64{
				"second push": {repushed.UploadedBytes, int64(repushed.BlobsTransferred), repushed.SkippedBytes, int64(repushed.BlobsSkipped)},
				"second pull": {repulled.DownloadedBytes, int64(repulled.BlobsTransferred), repulled.SkippedBytes, int64(repulled.BlobsSkipped)},
			} {
				if want := [4]int64{0, 0, stored, int64(len(blobs))}; got != want {
					t.Errorf("%s: moved %d bytes in %d blobs, skipped %d bytes in %d blobs; want nothing moved, %d bytes in %d blobs skipped",
						what, got[0], got[1], got[2], got[3], stored, len(blobs))
				}
			}
		})
	}
}
