package client_test

import (
	"context"
	"fmt"
	"testing"

	"modelx.io/modelx/client"
)

// noopModel writes a model of n small files (1 to 8 KiB, 50 to a folder)
// and two 4 MiB files into a temp dir.
func noopModel(b *testing.B, n int) string {
	b.Helper()
	dir := b.TempDir()
	write(b, dir, "modelx.yaml", []byte("description: no-op benchmark\n"), 0o644)
	for i := range n {
		write(b, dir, fmt.Sprintf("assets/d%03d/file-%05d.txt", i/50, i), random(uint64(i), 1024+i%7168), 0o644)
	}
	for i := range 2 {
		write(b, dir, fmt.Sprintf("weights-%d.bin", i), random(uint64(100000+i), 4<<20), 0o644)
	}
	return dir
}

// BenchmarkNoop measures a push and a pull that have nothing to move:
// what a CI job or a pod restart pays when the model did not change. Its
// cost should be about one stat per file and one request (docs/benchmarks.md).
// push-one-change measures a push of one edited small file.
func BenchmarkNoop(b *testing.B) {
	for _, n := range []int{5000, 20000} {
		e := fsEnv(b)
		ctx := context.Background()
		src := noopModel(b, n)
		c := client.New(client.Options{})
		r, err := client.ParseReference(e.url+"/bench/noop:v1", nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Push(ctx, r, src); err != nil {
			b.Fatal(err)
		}
		dst := b.TempDir()
		if _, err := c.Pull(ctx, r, dst, client.PullOptions{}); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("push/files=%d", n), func(b *testing.B) {
			for b.Loop() {
				res, err := c.Push(ctx, r, src)
				if err != nil || res.BlobsTransferred != 0 {
					b.Fatal(err, res.BlobsTransferred)
				}
			}
		})
		// One small file edited and pushed: the pack that holds it is
		// built and sent again, and a new manifest.
		b.Run(fmt.Sprintf("push-one-change/files=%d", n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				write(b, src, "assets/d010/file-00500.txt", []byte(fmt.Sprintf("edit %d\n", i)), 0o644)
				res, err := c.Push(ctx, r, src)
				if err != nil || res.BlobsTransferred != 1 {
					b.Fatal(err, res.BlobsTransferred)
				}
			}
		})
		if _, err := c.Pull(ctx, r, dst, client.PullOptions{}); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("pull/files=%d", n), func(b *testing.B) {
			for b.Loop() {
				res, err := c.Pull(ctx, r, dst, client.PullOptions{})
				if err != nil || res.BlobsTransferred != 0 {
					b.Fatal(err, res.BlobsTransferred)
				}
			}
		})
	}
}
