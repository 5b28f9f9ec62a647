package registry

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/storage/fs"
)

// TestUploadClaims: a claim is the only one while it is valid, the same
// model renews it, another model takes it over only once it expired (or by
// force, as a staged commit does), and the registry's collection removes
// expired claims and keeps valid ones.
func TestUploadClaims(t *testing.T) {
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	clock := func() time.Time { return now }
	reg, err := New(st, Options{GCGracePeriod: time.Nanosecond, Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d, other := digest.FromString("claimed"), digest.FromString("claimed later")

	mustClaim := func(model string, d digest.Digest, force, want bool) {
		t.Helper()
		got, err := reg.claimUpload(ctx, model, d, force)
		if err != nil || got != want {
			t.Fatalf("claim of %s by %s (force %v): %v %v, want %v", d, model, force, got, err, want)
		}
	}
	mustClaim("a/m", d, false, true)
	mustClaim("a/m", d, false, true) // renewed
	mustClaim("b/m", d, false, false)
	now = now.Add(reg.claimValidity() + time.Second)
	mustClaim("b/m", d, false, true) // expired: taken over
	mustClaim("a/m", d, false, false)
	mustClaim("a/m", d, true, true) // a staged commit takes it over
	if c, _, _, err := reg.readClaim(ctx, d); err != nil || c.Model != "a/m" {
		t.Fatalf("claim after the forced take-over: %+v %v", c, err)
	}

	now = now.Add(reg.claimValidity() + time.Second)
	// valid at the collection; the registry's clock is now far past the
	// store's modification times, so every claim is past the grace period
	mustClaim("c/m", other, false, true)
	if _, err := reg.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, exists, err := reg.readClaim(ctx, d); err != nil || exists {
		t.Fatalf("an expired claim survived the collection: %v %v", exists, err)
	}
	if c, _, exists, err := reg.readClaim(ctx, other); err != nil || !exists || c.Model != "c/m" {
		t.Fatalf("a valid claim was collected: %+v %v %v", c, exists, err)
	}
}
