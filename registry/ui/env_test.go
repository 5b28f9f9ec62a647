package ui_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"modelx.io/modelx/client"
	"modelx.io/modelx/client/chunker"
	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/storage/fs"
)

// env is a real registry on the local filesystem, served over httptest.
type env struct {
	url  string
	logs *testenv.LogBuffer
}

func startRegistry(t *testing.T, opts registry.Options) *env {
	t.Helper()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.LogBuffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg, err := registry.New(st, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(func() {
		srv.Close()
		if t.Failed() {
			lines := strings.Split(logs.String(), "\n")
			t.Logf("registry log (the end):\n%s", strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	})
	return &env{url: srv.URL, logs: logs}
}

// robotToken returns a random robot token and the auth.Robot that accepts it.
func robotToken(name string) (string, auth.Robot) {
	token := "mxr_" + name + "_" + hex.EncodeToString(randBytes(16))
	sum := sha256.Sum256([]byte(token))
	return token, auth.Robot{Name: name, TokenSHA256: hex.EncodeToString(sum[:])}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.N(256))
	}
	return b
}

// push writes files into a fresh directory and pushes it to ref (a
// "REPOSITORY/NAME:TAG" on e) through the real client. Files under 4 KiB
// go into packs; bigger ones are chunked when they pass 64 KiB.
func (e *env) push(t *testing.T, ref, token string, files map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.pushDir(t, ref, token, dir)
}

func (e *env) pushDir(t *testing.T, ref, token, dir string) {
	t.Helper()
	r, err := client.ParseReference(e.url+"/"+ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(client.Options{
		Token:              func(string) (string, error) { return token, nil },
		SmallFileThreshold: 4 << 10,
		Chunker:            chunker.Params{Min: 16 << 10, Avg: 64 << 10, Max: 128 << 10},
	})
	if _, err := c.Push(context.Background(), r, dir); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// get fetches path with headers (name, value pairs) without following redirects.
func (e *env) get(t *testing.T, path string, header ...string) (*http.Response, string) {
	t.Helper()
	return e.do(t, http.MethodGet, path, nil, header...)
}

func (e *env) do(t *testing.T, method, path string, body io.Reader, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(data)
}

// browserAccept is what Chromium sends when it navigates to a page.
const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"

// bertConfig is modelx.yaml of the example model.
const bertConfig = `description: BERT base, uncased, fine-tuned for sentiment.
framework: pytorch
task: text-classification
tags: [nlp, bert, sentiment]
maintainers: [alice@example.com, bob@example.com]
`

// hostileReadme is a README that would run script in the page if it were
// rendered as written.
const hostileReadme = "# BERT sentiment\n\nA **small** model for the UI tests.\n\n" +
	"| metric | value |\n|---|---|\n| accuracy | 0.93 |\n\n" +
	"<script>window.pwned = 'script'; document.title = 'pwned';</script>\n\n" +
	"<img src=\"x\" onerror=\"window.pwned = 'img'\">\n\n" +
	"[click me](javascript:window.pwned='link')\n\n" +
	"<a href=\"javascript:window.pwned='raw-link'\">raw link</a> and <b onclick=\"window.pwned='b'\">bold</b>\n\n" +
	"<svg onload=\"window.pwned='svg'\"></svg><iframe src=\"javascript:parent.pwned='frame'\"></iframe>\n\n" +
	"```python\nmodel = load('bert')\n```\n"

// bertFiles is the example model: modelx.yaml, a hostile README and small
// files (packed), and a 300 KiB weights file (chunked).
func bertFiles(version string) map[string][]byte {
	return map[string][]byte{
		"modelx.yaml":                []byte(bertConfig),
		"README.md":                  []byte(hostileReadme),
		"config.json":                []byte(`{"hidden_size": 768, "version": "` + version + `"}`),
		"tokenizer/vocab.txt":        []byte(strings.Repeat("[PAD]\n[UNK]\nhello\n", 40)),
		"tokenizer/merges.txt":       []byte("h e\nl l\n"),
		"weights/model.safetensors":  randBytes(300 << 10),
		"weights/optimizer/state.pt": randBytes(2000),
	}
}
