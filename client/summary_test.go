package client_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"modelx.io/modelx/client"
)

// unchangedModel writes a model with packed files in folders and a chunked
// file.
func unchangedModel(t *testing.T) string {
	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: unchanged\n"), 0o644)
	for i := range 30 {
		write(t, src, filepath.Join("assets", string(rune('a'+i%3)), "f"+string(rune('a'+i))+".txt"), random(uint64(i), 100+i*50), 0o644)
	}
	write(t, src, "weights.bin", random(99, 300<<10), 0o644)
	return src
}

// sameTransfer compares two results of one transfer, but their durations.
func sameTransfer(t *testing.T, what string, fast, full client.Transfer) {
	t.Helper()
	fast.DurationSeconds, full.DurationSeconds = 0, 0
	if !reflect.DeepEqual(fast, full) {
		t.Errorf("%s: the unchanged path reports %+v, the full path %+v", what, fast, full)
	}
}

// TestUnchangedPushIsOneRequest: a push of a directory that did not change
// since it was last pushed to the same tag, which still names that
// manifest, costs one HEAD request and reports what the full path does;
// a touched or edited file, or a moved tag, takes the full path.
func TestUnchangedPushIsOneRequest(t *testing.T) {
	ctx := context.Background()
	e := fsEnv(t)
	src := unchangedModel(t)
	log := &requestLog{next: client.DefaultHTTPClient().Transport}
	c := newClient(client.Options{HTTPClient: &http.Client{Transport: log}})
	r := ref(t, e, "unchanged/push:v1")
	if _, err := c.Push(ctx, r, src); err != nil {
		t.Fatal(err)
	}
	// The full path with nothing to send, for comparison.
	if err := os.Remove(filepath.Join(src, ".modelx", "last.json")); err != nil {
		t.Fatal(err)
	}
	full, err := c.Push(ctx, r, src)
	if err != nil {
		t.Fatal(err)
	}
	log.take()
	fast, err := c.Push(ctx, r, src)
	if err != nil {
		t.Fatal(err)
	}
	if reqs := log.take(); len(reqs) != 1 || count(reqs, "HEAD", "/manifests/v1") != 1 {
		t.Fatalf("unchanged push sent %v; want one HEAD of the manifest", reqs)
	}
	if fast.Digest != full.Digest || fast.BlobsTransferred != 0 {
		t.Fatalf("unchanged push: %+v", fast)
	}
	sameTransfer(t, "push", fast.Transfer, full.Transfer)

	// A touch: same bytes, so nothing is sent, but the full path checks.
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(filepath.Join(src, "assets", "a", "fa.txt"), later, later); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(ctx, r, src); err != nil {
		t.Fatal(err)
	}
	if reqs := log.take(); count(reqs, "HEAD", "/manifests/") != 0 {
		t.Fatalf("after a touch the push took the unchanged path: %v", reqs)
	}
	// An edited file is sent.
	write(t, src, "assets/b/fb.txt", random(1000, 150), 0o644)
	res, err := c.Push(ctx, r, src)
	if err != nil {
		t.Fatal(err)
	}
	if res.BlobsTransferred != 1 {
		t.Fatalf("an edited file: %d blobs sent, want its pack", res.BlobsTransferred)
	}
	// The tag moved elsewhere (another push from another directory).
	other := unchangedModel(t)
	write(t, other, "extra.txt", []byte("more"), 0o644)
	if _, err := c.Push(ctx, r, other); err != nil {
		t.Fatal(err)
	}
	log.take()
	back, err := c.Push(ctx, r, src)
	if err != nil {
		t.Fatal(err)
	}
	if back.Digest != res.Digest {
		t.Fatalf("pushing src again tagged %s, want %s", back.Digest, res.Digest)
	}
	if reqs := log.take(); count(reqs, "PUT", "/manifests/v1") != 1 {
		t.Fatalf("the tag had moved, but the push did not tag src again: %v", reqs)
	}
}

// TestUnchangedPullIsOneRequest: a pull into a directory that holds what the
// same pull left, of a reference that still names that manifest, costs one
// HEAD request and reports what the full path does; an edited file, other
// options or a moved tag take the full path.
func TestUnchangedPullIsOneRequest(t *testing.T) {
	ctx := context.Background()
	e := fsEnv(t)
	src := unchangedModel(t)
	log := &requestLog{next: client.DefaultHTTPClient().Transport}
	c := newClient(client.Options{HTTPClient: &http.Client{Transport: log}})
	r := ref(t, e, "unchanged/pull:v1")
	if _, err := c.Push(ctx, r, src); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if _, err := c.Pull(ctx, r, dst, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dst, ".modelx", "last.json")); err != nil {
		t.Fatal(err)
	}
	full, err := c.Pull(ctx, r, dst, client.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	log.take()
	fast, err := c.Pull(ctx, r, dst, client.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if reqs := log.take(); len(reqs) != 1 || count(reqs, "HEAD", "/manifests/v1") != 1 {
		t.Fatalf("unchanged pull sent %v; want one HEAD of the manifest", reqs)
	}
	if fast.Digest != full.Digest {
		t.Fatalf("unchanged pull: digest %s, want %s", fast.Digest, full.Digest)
	}
	sameTransfer(t, "pull", fast.Transfer, full.Transfer)

	// Other options take the full path.
	if _, err := c.Pull(ctx, r, dst, client.PullOptions{Files: []string{"weights.bin"}}); err != nil {
		t.Fatal(err)
	}
	if reqs := log.take(); count(reqs, "GET", "/manifests/v1") != 1 {
		t.Fatalf("a selective pull took the unchanged path: %v", reqs)
	}
	if _, err := c.Pull(ctx, r, dst, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	log.take()

	// An edited file is the user's now: the full path refuses it, as it
	// always did, and --force restores it.
	edited := filepath.Join(dst, "assets", "c", "fc.txt")
	if err := os.WriteFile(edited, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = c.Pull(ctx, r, dst, client.PullOptions{})
	var conflict *client.ConflictError
	if !errors.As(err, &conflict) {
		t.Fatalf("pull over an edited file: %v, want a ConflictError", err)
	}
	if _, err := c.Pull(ctx, r, dst, client.PullOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	sameTree(t, src, dst)

	// A removed file is fetched again.
	if err := os.Remove(filepath.Join(dst, "weights.bin")); err != nil {
		t.Fatal(err)
	}
	res, err := c.Pull(ctx, r, dst, client.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.BlobsTransferred == 0 {
		t.Fatal("a removed file was not fetched again")
	}
	sameTree(t, src, dst)

	// The tag moved: the new version is pulled.
	write(t, src, "extra.txt", []byte("more"), 0o644)
	if _, err := c.Push(ctx, r, src); err != nil {
		t.Fatal(err)
	}
	log.take()
	if _, err := c.Pull(ctx, r, dst, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	sameTree(t, src, dst)
	if reqs := log.take(); count(reqs, "GET", "/manifests/v1") != 1 {
		t.Fatalf("after the tag moved: %v", reqs)
	}

	// DropState: the state folder goes, even when nothing is fetched.
	if _, err := c.Pull(ctx, r, dst, client.PullOptions{DropState: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, ".modelx")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("DropState kept .modelx: %v", err)
	}
}
