package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"modelx.io/modelx/registry"
	"modelx.io/modelx/storage/fs"
)

// dataKeys are the JSON keys whose values are maps of data: their keys
// are names someone chose (annotations, modelx.yaml's inputs, outputs and
// serving parameters), printed as they are.
var dataKeys = []string{"annotations", "inputs", "outputs", "parameters"}

var snakeKey = regexp.MustCompile(`^[a-z0-9_]+$`)

// jsonKeys walks a decoded JSON document and calls fn with the path and
// name of every key, except inside the values of dataKeys.
func jsonKeys(v any, path string, fn func(path, key string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			fn(path, k)
			if !slices.Contains(dataKeys, k) {
				jsonKeys(e, path+"."+k, fn)
			}
		}
	case []any:
		for _, e := range v {
			jsonKeys(e, path+"[]", fn)
		}
	}
}

// TestJSONOutputKeys runs every command that has -o json in one real
// session, and checks that every key of every document is snake_case and
// that docs/cli.md documents it. A command that gains -o without being
// run here fails the test.
func TestJSONOutputKeys(t *testing.T) {
	t.Setenv("MODELX_CONFIG", filepath.Join(t.TempDir(), "config.yaml"))
	t.Setenv("MODELX_TOKEN", "")
	url := startRegistry(t)
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(st, registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), GCGracePeriod: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	far := httptest.NewServer(reg.Handler())
	t.Cleanup(far.Close)
	mustRun(t, "repo", "add", "local", url)
	mustRun(t, "repo", "add", "far", far.URL)

	model := filepath.Join(t.TempDir(), "bert")
	os.MkdirAll(filepath.Join(model, "vocab"), 0o755)
	os.WriteFile(filepath.Join(model, "modelx.yaml"), []byte(`description: keys
framework: pytorch
task: text-classification
tags: [nlp]
maintainers: [someone]
modelFiles: [weights.bin, vocab/]
config:
  inputs: {inputIds: {dtype: int64}}
  outputs: {Logits: {dtype: float32}}
serving:
  server: mlserver
  implementation: mlserver_huggingface.HuggingFaceRuntime
  protocol: v2
  parameters: {maxBatchSize: "8"}
annotations:
  io.example/Team: nlp
`), 0o644)
	os.WriteFile(filepath.Join(model, "weights.bin"), []byte(strings.Repeat("weights ", 400000)), 0o644)
	os.WriteFile(filepath.Join(model, "vocab", "a.txt"), []byte("a"), 0o644)

	docs, err := os.ReadFile(filepath.Join("..", "..", "docs", "cli.md"))
	if err != nil {
		t.Fatal(err)
	}
	checked := map[string]bool{}
	check := func(args ...string) {
		t.Helper()
		out := mustRun(t, append(args, "-o", "json")...)
		var doc any
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("modelx %s -o json printed no JSON document: %v\n%s", strings.Join(args, " "), err, out)
		}
		name := "modelx " + strings.Join(args[:1], " ")
		if args[0] == "hold" || args[0] == "repo" {
			name = "modelx " + strings.Join(args[:2], " ")
		}
		checked[name] = true
		jsonKeys(doc, "", func(path, key string) {
			if !snakeKey.MatchString(key) {
				t.Errorf("%s -o json: key %q at %q is not snake_case", name, key, path)
			}
			if !strings.Contains(string(docs), `"`+key+`"`) && !strings.Contains(string(docs), "`"+key+"`") {
				t.Errorf("%s -o json: key %q at %q is not in docs/cli.md", name, key, path)
			}
		})
	}

	check("push", "local/nlp/bert:v1", model)
	os.WriteFile(filepath.Join(model, "vocab", "a.txt"), []byte("b"), 0o644)
	check("push", "local/nlp/bert:v1", model) // moves v1: previous_digest
	check("pull", "local/nlp/bert:v1", filepath.Join(t.TempDir(), "out"))
	check("list", "local")
	check("list", "local/nlp/bert")
	check("info", "local/nlp/bert:v1")
	check("tag", "local/nlp/bert:v1", "prod")
	check("copy", "local/nlp/bert:v1", "local/team/bert:v1")
	check("copy", "local/nlp/bert:v1", "far/nlp/bert:v1")
	check("hold", "put", "local/nlp/bert:prod", "me")
	check("hold", "list", "local/nlp/bert")
	check("hold", "release", "local/nlp/bert", "me")
	check("delete", "far/nlp/bert:v1")
	check("gc", "far/nlp/bert")
	check("gc", "far")
	check("delete", "local/team/bert")
	check("repo", "list")
	check("version")

	var walk func(*cobra.Command)
	walk = func(cmd *cobra.Command) {
		if cmd.Flags().Lookup("output") != nil && !checked[cmd.CommandPath()] {
			t.Errorf("%s has -o, but this test does not check its JSON", cmd.CommandPath())
		}
		for _, c := range cmd.Commands() {
			walk(c)
		}
	}
	walk(newRootCommand(nil, io.Discard, io.Discard))
	names := make([]string, 0, len(checked))
	for n := range checked {
		names = append(names, n)
	}
	sort.Strings(names)
	t.Logf("checked: %s", strings.Join(names, ", "))
}
