package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

var updateDocs = flag.Bool("update-docs", false, "write docs/reference instead of checking it (make docs)")

// referenceDir holds the generated command reference, one page per command.
var referenceDir = filepath.Join("..", "..", "docs", "reference")

// generatedPage matches the pages of modelx's commands in referenceDir.
var generatedPage = regexp.MustCompile(`^modelx(_[a-z_]+)?\.md$`)

const referenceHeader = "<!-- Generated from the modelx commands by `make docs`; edit their help in cmd/modelx, not this file. -->\n\n"

// genReference writes the markdown reference of every modelx command into
// dir, with cobra's generator. Flag defaults that the environment sets
// (MODELX_CA_FILE, …) are cleared first, so the pages are the same on
// every machine; the -j default is described, not computed.
func genReference(t *testing.T, dir string) {
	t.Helper()
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "MODELX_") {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
	root := newRootCommand(nil, io.Discard, io.Discard)
	root.InitDefaultCompletionCmd()
	var disable func(*cobra.Command)
	disable = func(c *cobra.Command) {
		c.DisableAutoGenTag = true // no date: the pages are the same every day
		for _, sub := range c.Commands() {
			disable(sub)
		}
	}
	disable(root)
	prepend := func(string) string { return referenceHeader }
	link := func(name string) string { return name } // pages link to their neighbours
	if err := doc.GenMarkdownTreeCustom(root, dir, prepend, link); err != nil {
		t.Fatal(err)
	}
}

// TestReferenceDocs checks that docs/reference holds exactly the pages
// cobra generates from the commands; with -update-docs (make docs) it
// writes them and removes pages of commands that are gone.
func TestReferenceDocs(t *testing.T) {
	tmp := t.TempDir()
	genReference(t, tmp)
	entries, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	var pages []string
	for _, e := range entries {
		if !generatedPage.MatchString(e.Name()) {
			t.Fatalf("the generator wrote %s, which the check would not look at: widen generatedPage", e.Name())
		}
		pages = append(pages, e.Name())
	}
	if *updateDocs {
		if err := os.MkdirAll(referenceDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	have, err := os.ReadDir(referenceDir)
	if err != nil && !*updateDocs {
		t.Fatalf("docs/reference: %v: run make docs", err)
	}
	for _, e := range have {
		if generatedPage.MatchString(e.Name()) && !slices.Contains(pages, e.Name()) {
			if *updateDocs {
				if err := os.Remove(filepath.Join(referenceDir, e.Name())); err != nil {
					t.Fatal(err)
				}
				continue
			}
			t.Errorf("docs/reference/%s is stale (no such command any more): run make docs", e.Name())
		}
	}
	for _, name := range pages {
		want, err := os.ReadFile(filepath.Join(tmp, name))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(referenceDir, name)
		if *updateDocs {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, want) {
			t.Errorf("docs/reference/%s is stale: run make docs", name)
		}
	}
}
