package main

import (
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"modelx.io/modelx/client"
)

// TestMigrateLinks: a data directory written before blobs were linked to
// models (no links, no layout.json) is upgraded by `modelxd migrate`, and
// by modelxd itself on start, after which its models pull as before.
func TestMigrateLinks(t *testing.T) {
	bin := buildModelxd(t)
	dataDir := t.TempDir()
	url, cmd, logs := startModelxd(t, bin, []string{"MODELXD_DATA_DIR=" + dataDir})
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "modelx.yaml"), []byte("description: legacy\n"), 0o644)
	os.WriteFile(filepath.Join(src, "weights.bin"), []byte(strings.Repeat("legacy weights ", 100000)), 0o644)
	os.WriteFile(filepath.Join(src, "vocab.txt"), []byte("a b c"), 0o644)
	ctx := context.Background()
	c := client.New(client.Options{})
	ref, err := client.ParseReference(url+"/old/model:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(ctx, ref, src); err != nil {
		t.Fatal(err)
	}
	stop(t, cmd, logs)
	// A new store records its layout on the first start, so the next start
	// does not take it for an old one.
	if data, err := os.ReadFile(filepath.Join(dataDir, "layout.json")); err != nil || !strings.Contains(string(data), `"version":2`) {
		t.Fatalf("layout.json of a new store: %q %v", data, err)
	}
	if strings.Contains(logs.String(), "storage migrated") {
		t.Fatalf("a new store was migrated:\n%s", logs.String())
	}

	// What an older modelxd left: no links and no layout version.
	legacy := func() {
		t.Helper()
		if err := os.RemoveAll(filepath.Join(dataDir, "models", "old", "model", "blobs")); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(dataDir, "layout.json")); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	legacy()
	out, err := exec.Command(bin, "migrate", "--data-dir", dataDir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "migrated storage layout 1 to 2: 1 manifests read, 3 links written") {
		t.Fatalf("modelxd migrate: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "migrate", "--data-dir", dataDir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "nothing to do") {
		t.Fatalf("modelxd migrate again: %v\n%s", err, out)
	}
	pull := func(url string) {
		t.Helper()
		ref, _ := client.ParseReference(url+"/old/model:v1", nil)
		dst := t.TempDir()
		if _, err := c.Pull(ctx, ref, dst, client.PullOptions{}); err != nil {
			t.Fatalf("pull after migration: %v", err)
		}
		want, err := fileDigests(src)
		if err != nil {
			t.Fatal(err)
		}
		got, err := fileDigests(dst)
		if err != nil || !maps.Equal(got, want) {
			t.Fatalf("pulled %v (%v), want %v", got, err, want)
		}
	}
	url, cmd, logs = startModelxd(t, bin, []string{"MODELXD_DATA_DIR=" + dataDir})
	pull(url)
	stop(t, cmd, logs)

	// Without the command, modelxd migrates before it serves.
	legacy()
	url, cmd, logs = startModelxd(t, bin, []string{"MODELXD_DATA_DIR=" + dataDir})
	pull(url)
	stop(t, cmd, logs) // the log is read once the process is gone
	if !strings.Contains(logs.String(), "storage migrated") {
		t.Fatalf("no migration in the log:\n%s", logs.String())
	}
}
