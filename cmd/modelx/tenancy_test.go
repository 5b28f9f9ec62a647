package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"modelx.io/modelx/registry"
	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/storage/fs"
)

// TestInfoShowsImmutableTag drives the commands of a shared registry as a
// team would: an immutable tag that info shows and push cannot move, a copy
// and a push --from that move no bytes, and both scopes of gc.
func TestInfoShowsImmutableTag(t *testing.T) {
	t.Setenv("MODELX_CONFIG", filepath.Join(t.TempDir(), "config.yaml"))
	const token = "team-robot-token-0123456789"
	sum := sha256.Sum256([]byte(token))
	authn, err := auth.New(auth.Config{Robots: []auth.Robot{{Name: "team", TokenSHA256: hex.EncodeToString(sum[:])}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	policy := &auth.Policy{
		Rules:         []auth.Rule{{Repositories: []string{"team/*"}, Actions: []auth.Action{auth.Push, auth.Delete}, Robots: []string{"team"}}},
		ImmutableTags: []auth.ImmutableTags{{Repositories: []string{"team/*"}, Tags: []string{"v*"}}},
	}
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(st, registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Authenticator: authn, Policy: policy})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	t.Setenv("MODELX_TOKEN", token)

	model := filepath.Join(t.TempDir(), "m")
	mustRun(t, "init", model)
	os.WriteFile(filepath.Join(model, "weights.bin"), []byte(strings.Repeat("weights ", 400000)), 0o644)
	mustRun(t, "push", srv.URL+"/team/m:v1", model)
	if out := mustRun(t, "info", srv.URL+"/team/m:v1"); !strings.Contains(out, "immutable:   tag v1 cannot be moved or deleted") {
		t.Fatalf("info of an immutable tag:\n%s", out)
	}
	if out := mustRun(t, "info", srv.URL+"/team/m:v1", "-o", "json"); !strings.Contains(out, `"immutable": true`) {
		t.Fatalf("info -o json of an immutable tag:\n%s", out)
	}
	os.WriteFile(filepath.Join(model, "weights.bin"), []byte(strings.Repeat("changed ", 400000)), 0o644)
	if _, _, err := run(t, "", "push", srv.URL+"/team/m:v1", model); err == nil || !strings.Contains(err.Error(), "immutable") {
		t.Fatalf("push over an immutable tag: %v", err)
	}
	if _, _, err := run(t, "", "delete", srv.URL+"/team/m:v1"); err == nil || !strings.Contains(err.Error(), `immutableTags: tags ["v*"] of ["team/*"]`) {
		t.Fatalf("delete of an immutable tag: %v", err)
	}
	mustRun(t, "push", srv.URL+"/team/m:latest", model)
	if out := mustRun(t, "info", srv.URL+"/team/m:latest"); strings.Contains(out, "immutable") {
		t.Fatalf("info of a mutable tag:\n%s", out)
	}

	if out := mustRun(t, "copy", srv.URL+"/team/m:v1", srv.URL+"/team/fork:v1"); !strings.Contains(out, "copied 0 B in 0 blobs") {
		t.Fatalf("copy within the registry moved bytes:\n%s", out)
	}
	if out := mustRun(t, "push", srv.URL+"/team/fork2:dev", model, "--from", srv.URL+"/team/m"); !strings.Contains(out, "uploaded 0 B in 0 blobs") {
		t.Fatalf("push --from moved bytes:\n%s", out)
	}
	if _, _, err := run(t, "", "push", srv.URL+"/team/fork3:dev", model, "--from", "http://elsewhere.invalid/team/m"); err == nil || !strings.Contains(err.Error(), "same registry") {
		t.Fatalf("push --from another registry: %v", err)
	}
	if out := mustRun(t, "gc", srv.URL+"/team/m"); !strings.HasPrefix(out, "team/m: deleted") {
		t.Fatalf("gc of a model:\n%s", out)
	}
	if _, _, err := run(t, "", "gc", srv.URL); err == nil || !strings.Contains(err.Error(), `admin on "*"`) {
		t.Fatalf("gc of the whole registry without admin: %v", err)
	}
}
