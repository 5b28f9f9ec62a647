package client_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"modelx.io/modelx/client"
	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/spec"
	fsstore "modelx.io/modelx/storage/fs"
)

// TestHolds: a controller holds the version it serves; once the tag moves
// and a collection runs, the version still pulls by digest, cannot be
// deleted, and is listed with its holder; releasing it twice tells the
// second time apart with ErrHoldUnknown.
func TestHolds(t *testing.T) {
	st, err := fsstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clock := &testenv.Clock{}
	reg, err := registry.New(st, registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), GCGracePeriod: time.Nanosecond, Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	e := env{name: "fs", url: srv.URL}
	ctx := context.Background()
	c := newClient(client.Options{})
	api := c.API(e.url)

	if holds, err := api.Holds(ctx, "serve", "bert"); err != nil || len(holds) != 0 {
		t.Fatalf("holds of a model without any: %v %v", holds, err)
	}
	src := basicModel(t)
	served, err := c.Push(ctx, ref(t, e, "serve/bert:prod"), src)
	if err != nil {
		t.Fatal(err)
	}
	hold, err := api.PutHold(ctx, "serve", "bert", "ctl:prod:serving:bert", []string{string(served.Digest)}, 2*time.Hour)
	if err != nil || hold.Holder != "ctl:prod:serving:bert" || len(hold.Digests) != 1 || hold.Digests[0] != served.Digest || hold.Expires.Sub(hold.Renewed) != 2*time.Hour {
		t.Fatalf("PutHold: %+v %v", hold, err)
	}
	if again, err := api.PutHold(ctx, "serve", "bert", "ctl:prod:serving:bert", []string{string(served.Digest)}, 0); err != nil ||
		!again.Created.Equal(hold.Created) || again.Expires.Sub(again.Renewed) != spec.DefaultHoldTTL {
		t.Fatalf("PutHold again with the default ttl: %+v %v", again, err)
	}

	// The tag moves; a collection keeps the held version.
	write(t, src, "model.onnx", random(99, 700<<10), 0o644)
	if _, err := c.Push(ctx, ref(t, e, "serve/bert:prod"), src); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second) // past the grace period: the old version is garbage but for its hold
	if res, err := api.GarbageCollectRegistry(ctx); err != nil || res.ManifestsDeleted != 0 || res.ManifestsHeld != 1 {
		t.Fatalf("collection with a hold: %+v %v", res, err)
	}
	dst := t.TempDir()
	if _, err := c.Pull(ctx, ref(t, e, "serve/bert@"+string(served.Digest)), dst, client.PullOptions{}); err != nil {
		t.Fatalf("pull of the held version after the collection: %v", err)
	}
	if err := api.DeleteManifest(ctx, "serve", "bert", string(served.Digest)); client.Code(err) != spec.ErrorConflict || !strings.Contains(err.Error(), "ctl:prod:serving:bert") {
		t.Fatalf("delete of the held version: %v", err)
	}
	holds, err := api.Holds(ctx, "serve", "bert")
	if err != nil || len(holds) != 1 || holds[0].Holder != "ctl:prod:serving:bert" {
		t.Fatalf("Holds: %+v %v", holds, err)
	}

	// Refusals come back as API errors with their codes.
	if _, err := api.PutHold(ctx, "serve", "bert", "../../index", []string{string(served.Digest)}, time.Hour); err == nil || !strings.Contains(err.Error(), "holder") {
		t.Fatalf("PutHold with a bad holder: %v", err)
	}
	if _, err := api.PutHold(ctx, "serve", "bert", "ctl", []string{string(served.Digest)}, 1000*time.Hour); client.Code(err) != spec.ErrorHoldInvalid || !strings.Contains(err.Error(), "--max-hold-ttl") {
		t.Fatalf("PutHold over the ttl limit: %v", err)
	}
	if _, err := api.PutHold(ctx, "serve", "other", "ctl", []string{string(served.Digest)}, time.Hour); client.Code(err) != spec.ErrorManifestUnknown {
		t.Fatalf("PutHold on another model's digest: %v", err)
	}

	// Release: the first time works, the second is ErrHoldUnknown.
	if err := api.ReleaseHold(ctx, "serve", "bert", "ctl:prod:serving:bert"); err != nil {
		t.Fatalf("ReleaseHold: %v", err)
	}
	err = api.ReleaseHold(ctx, "serve", "bert", "ctl:prod:serving:bert")
	if !errors.Is(err, client.ErrHoldUnknown) || client.Code(err) != spec.ErrorHoldUnknown {
		t.Fatalf("second ReleaseHold: %v, want ErrHoldUnknown", err)
	}
	if _, _, _, err := api.GetManifest(ctx, "serve", "bert", "v404"); err == nil || errors.Is(err, client.ErrHoldUnknown) {
		t.Fatalf("another 404 matches ErrHoldUnknown: %v", err)
	}
	clock.Advance(time.Second) // past the grace period: released, the old version is garbage
	if res, err := api.GarbageCollectRegistry(ctx); err != nil || res.ManifestsDeleted != 1 {
		t.Fatalf("collection after the release: %+v %v", res, err)
	}
}
