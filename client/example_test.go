package client_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"

	"modelx.io/modelx/client"
	"modelx.io/modelx/registry"
	fsstore "modelx.io/modelx/storage/fs"
)

// Push a model directory to a registry as version v1 of library/bert.
func ExampleClient_Push() {
	registryURL, stop := exampleRegistry()
	defer stop()
	dir := exampleModel()
	defer os.RemoveAll(dir)

	ctx := context.Background()
	ref, err := client.ParseReference(registryURL+"/library/bert:v1", nil)
	if err != nil {
		log.Fatal(err)
	}
	c := client.New(client.Options{})
	res, err := c.Push(ctx, ref, dir)
	if err != nil {
		log.Fatal(err)
	}
	// The small files travel in one pack, the weights as a blob of their
	// own, and modelx.yaml also as the version's config.
	fmt.Printf("pushed %d files in %d blobs\n", res.Files, res.BlobsTransferred)

	// A second push of the same directory sends nothing: the registry
	// holds every blob, and the hash cache in DIR/.modelx spares reading
	// the files again.
	res, err = c.Push(ctx, ref, dir)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("pushed again: %d bytes sent\n", res.UploadedBytes)
	// Output:
	// pushed 4 files in 3 blobs
	// pushed again: 0 bytes sent
}

// Pull a version into an empty directory. Every byte is verified against
// its digest before a file gets its name.
func ExampleClient_Pull() {
	registryURL, stop := exampleRegistry()
	defer stop()
	ref := examplePushed(registryURL)

	dst, err := os.MkdirTemp("", "bert-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dst)
	c := client.New(client.Options{})
	res, err := c.Pull(context.Background(), ref, dst, client.PullOptions{DropState: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("pulled %d files\n", res.Files)
	data, err := os.ReadFile(filepath.Join(dst, "config.json"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("config.json: %s\n", data)
	// Output:
	// pulled 4 files
	// config.json: {"hidden_size": 768}
}

// Pull only some files of a version: a model server that needs the
// weights and its config, not the tokenizer's vocabulary.
func ExampleClient_Pull_selective() {
	registryURL, stop := exampleRegistry()
	defer stop()
	ref := examplePushed(registryURL)

	dst, err := os.MkdirTemp("", "bert-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dst)
	c := client.New(client.Options{})
	res, err := c.Pull(context.Background(), ref, dst, client.PullOptions{
		Files:     []string{"config.json", "model.safetensors"},
		DropState: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("pulled %d files\n", res.Files)
	entries, err := os.ReadDir(dst)
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range entries {
		fmt.Println(e.Name())
	}
	// modelx.yaml, the version's description, always comes along.
	// Output:
	// pulled 3 files
	// config.json
	// model.safetensors
	// modelx.yaml
}

// exampleRegistry serves a registry on a temporary directory, as
// `modelxd --data-dir DIR` does, and returns its URL.
func exampleRegistry() (url string, stop func()) {
	dir, err := os.MkdirTemp("", "modelx-example-")
	if err != nil {
		log.Fatal(err)
	}
	store, err := fsstore.New(dir)
	if err != nil {
		log.Fatal(err)
	}
	reg, err := registry.New(store, registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	return srv.URL, func() { srv.Close(); os.RemoveAll(dir) }
}

// exampleModel writes a small model: a config, a tokenizer, a vocabulary
// and weights, plus the modelx.yaml that describes it.
func exampleModel() string {
	dir, err := os.MkdirTemp("", "bert-src-")
	if err != nil {
		log.Fatal(err)
	}
	files := map[string]string{
		"modelx.yaml":       "description: a small BERT\nframework: pytorch\ntask: fill-mask\n",
		"config.json":       `{"hidden_size": 768}`,
		"vocab.txt":         "[PAD]\n[UNK]\n[CLS]\n[SEP]\n",
		"model.safetensors": string(make([]byte, 2<<20)),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	return dir
}

// examplePushed pushes exampleModel as library/bert:v1.
func examplePushed(registryURL string) client.Reference {
	dir := exampleModel()
	defer os.RemoveAll(dir)
	ref, err := client.ParseReference(registryURL+"/library/bert:v1", nil)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := client.New(client.Options{}).Push(context.Background(), ref, dir); err != nil {
		log.Fatal(err)
	}
	return ref
}
