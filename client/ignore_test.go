package client_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"modelx.io/modelx/client"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/spec"
	fsstore "modelx.io/modelx/storage/fs"
)

// TestIgnoreAsDocumented pushes a tree with the .modelxignore examples of
// docs/cli.md and checks that the version holds exactly what the page says.
func TestIgnoreAsDocumented(t *testing.T) {
	st, err := fsstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(st, registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	e := env{name: "fs", url: srv.URL}

	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: ignore\n"), 0o644)
	write(t, src, client.IgnoreFile, []byte(`
  # comments and blank lines are skipped; spaces around a pattern are trimmed
   *.tmp
checkpoints
data/*.csv
/notes.txt
logs/
`), 0o644)
	// sub/logs is a file: logs/ leaves out directories only.
	kept := []string{"modelx.yaml", client.IgnoreFile, "data/raw/a.csv", "x/data/a.csv", "docs/notes.txt", "sub/logs", "a/logs.txt", "[x].bin", "weights.bin"}
	left := []string{"a.tmp", "x/y/b.tmp", "checkpoints/step1.pt", "m/checkpoints", "data/a.csv", "notes.txt", "logs/today.txt", "m/logs/x.txt"}
	for _, name := range append(slices.Clone(kept[2:]), left...) {
		write(t, src, name, []byte(name), 0o644)
	}

	ctx := context.Background()
	c := newClient(client.Options{})
	r := ref(t, e, "ignore/model:v1")
	if _, err := c.Push(ctx, r, src); err != nil {
		t.Fatal(err)
	}
	m, _, _, err := c.API(r.Registry).GetManifest(ctx, r.Repository, r.Name, "v1")
	if err != nil {
		t.Fatal(err)
	}
	got := append([]string{m.Config.Name}, names(m)...)
	slices.Sort(got)
	slices.Sort(kept)
	if !slices.Equal(got, kept) {
		t.Fatalf("pushed %q\nwant %q", got, kept)
	}

	for pattern, want := range map[string]string{
		"!keep.tmp": "negated patterns",
		"[":         "bad pattern",
	} {
		write(t, src, client.IgnoreFile, []byte("*.tmp\n"+pattern+"\n"), 0o644)
		if _, err := c.Push(ctx, r, src); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("push with %q in %s: %v, want an error saying %q on line 2", pattern, client.IgnoreFile, err, want)
		}
	}
}

// names lists the files of a manifest, packed files one by one.
func names(m *spec.Manifest) []string {
	var out []string
	for _, b := range m.Blobs {
		if len(b.Files) > 0 {
			for _, f := range b.Files {
				out = append(out, f.Name)
			}
			continue
		}
		out = append(out, b.Name)
	}
	return out
}
