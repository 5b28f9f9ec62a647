package client_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"modelx.io/modelx/client"
)

// TestCopy copies a version within one registry (mounted: no bytes move)
// and across registries (streamed and verified), keeping its digest, and
// the copies pull as the original.
func TestCopy(t *testing.T) {
	es := envs(t)
	ctx := context.Background()
	src := basicModel(t)
	c := newClient(client.Options{})
	pushed, err := c.Push(ctx, ref(t, es[0], "orig/model:v1"), src)
	if err != nil {
		t.Fatal(err)
	}
	blobs := pushed.BlobsTransferred
	os.RemoveAll(filepath.Join(src, ".git")) // not pushed: now src is what a pull writes
	os.Remove(filepath.Join(src, "ignored.tmp"))

	same, err := c.Copy(ctx, ref(t, es[0], "orig/model:v1"), ref(t, es[0], "copy/model:v1"))
	if err != nil {
		t.Fatal(err)
	}
	if same.Digest != pushed.Digest || same.BlobsCopied != 0 || same.BlobsMounted != blobs {
		t.Fatalf("copy within a registry: %+v, want %d blobs mounted, none copied, digest %s", same, blobs, pushed.Digest)
	}
	for _, e := range es[1:] {
		across, err := c.Copy(ctx, ref(t, es[0], "orig/model:v1"), ref(t, e, "far/model:v7"))
		if err != nil {
			t.Fatalf("copy to %s: %v", e.name, err)
		}
		if across.Digest != pushed.Digest || across.BlobsCopied != blobs || across.BlobsMounted != 0 {
			t.Fatalf("copy to %s: %+v, want %d blobs copied", e.name, across, blobs)
		}
		again, err := c.Copy(ctx, ref(t, es[0], "orig/model:v1"), ref(t, e, "far/model:v8"))
		if err != nil || again.BlobsCopied != 0 {
			t.Fatalf("second copy to %s: %+v %v, want nothing copied", e.name, again, err)
		}
		dst := t.TempDir()
		if _, err := c.Pull(ctx, ref(t, e, "far/model:v8"), dst, client.PullOptions{}); err != nil {
			t.Fatal(err)
		}
		sameTree(t, src, dst)
		// And back, from this registry's URLs to the first's own PUTs.
		back, err := c.Copy(ctx, ref(t, e, "far/model:v8"), ref(t, es[0], "back/model:v1"))
		if err != nil || back.BlobsCopied != blobs || back.Digest != pushed.Digest {
			t.Fatalf("copy back from %s: %+v %v, want %d blobs copied", e.name, back, err, blobs)
		}
		dst = t.TempDir()
		if _, err := c.Pull(ctx, ref(t, es[0], "back/model:v1"), dst, client.PullOptions{}); err != nil {
			t.Fatal(err)
		}
		sameTree(t, src, dst)
	}
	dst := t.TempDir()
	if _, err := c.Pull(ctx, ref(t, es[0], "copy/model:v1"), dst, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	sameTree(t, src, dst)
	// A digest that is not the source's is refused before anything moves.
	bad := ref(t, es[0], "copy/model@sha256:"+"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	if _, err := c.Copy(ctx, ref(t, es[0], "orig/model:v1"), bad); err == nil {
		t.Fatal("copy to another digest succeeded")
	}
}
