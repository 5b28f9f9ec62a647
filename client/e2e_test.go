package client_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/client"
	"modelx.io/modelx/client/chunker"
	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/spec"
	fsstore "modelx.io/modelx/storage/fs"
	"modelx.io/modelx/storage/s3"
)

// testChunks keeps chunked files small enough for tests.
var testChunks = chunker.Params{Min: 16 << 10, Avg: 64 << 10, Max: 256 << 10}

const testSmall = 8 << 10

type env struct {
	name    string
	url     string
	dataDir string // fs backend root, to corrupt blobs
}

func envs(t *testing.T) []env {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	fs := fsEnv(t)

	s3Srv := httptest.NewServer(s3RedirectRegistry(t, logger))
	t.Cleanup(s3Srv.Close)
	return []env{fs, {name: "s3-redirect", url: s3Srv.URL}}
}

// s3RedirectRegistry is the handler of a registry on a bucket of a new S3
// server, with redirects.
func s3RedirectRegistry(t *testing.T, logger *slog.Logger) http.Handler {
	t.Helper()
	s3srv := testenv.StartS3(t)
	ctx := context.Background()
	st, err := s3.New(ctx, s3.Config{Endpoint: s3srv.URL, Bucket: "models", AccessKey: s3srv.AccessKey, SecretKey: s3srv.SecretKey, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateBucket(ctx); err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(st, registry.Options{Logger: logger, EnableRedirect: true})
	if err != nil {
		t.Fatal(err)
	}
	return reg.Handler()
}

// fsEnv is a registry on the local filesystem alone, for a test whose
// subject is the client's side.
func fsEnv(t testing.TB) env {
	t.Helper()
	dir := t.TempDir()
	fsStore, err := fsstore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	fsReg, _ := registry.New(fsStore, registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	fsSrv := httptest.NewServer(fsReg.Handler())
	t.Cleanup(fsSrv.Close)
	return env{name: "fs-proxy", url: fsSrv.URL, dataDir: dir}
}

func newClient(opts client.Options) *client.Client {
	if opts.Chunker == (chunker.Params{}) {
		opts.Chunker = testChunks
	}
	if opts.SmallFileThreshold == 0 {
		opts.SmallFileThreshold = testSmall
	}
	return client.New(opts)
}

func ref(t *testing.T, e env, model string) client.Reference {
	t.Helper()
	r, err := client.ParseReference(e.url+"/"+model, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func write(t testing.TB, dir, name string, data []byte, mode fs.FileMode) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func random(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// tree reads every file under dir (but .modelx) as name → content + mode.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := testenv.WalkModelFiles(dir, func(rel, p string, d fs.DirEntry) error {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, _ := d.Info()
		out[rel] = fmt.Sprintf("%v:%x", info.Mode().Perm(), data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, a, b string) {
	t.Helper()
	ta, tb := tree(t, a), tree(t, b)
	if len(ta) != len(tb) {
		t.Fatalf("trees differ: %d files vs %d", len(ta), len(tb))
	}
	for k, v := range ta {
		if tb[k] != v {
			t.Fatalf("file %s differs after the round trip", k)
		}
	}
}

func basicModel(t *testing.T) string {
	dir := t.TempDir()
	write(t, dir, "modelx.yaml", []byte("description: test\nframework: onnx\nmodelFiles: [model.onnx, weights/]\n"), 0o644)
	write(t, dir, "model.onnx", random(1, 700<<10), 0o644)
	write(t, dir, "weights/big.safetensors", random(2, 3<<20), 0o600)
	write(t, dir, "empty.txt", nil, 0o644)
	write(t, dir, "scripts/run.sh", []byte("#!/bin/sh\necho hi\n"), 0o755)
	write(t, dir, "ünïcode/名前/vocab.txt", []byte("日本語 tokens"), 0o644)
	write(t, dir, "a/b/c/d/e/deep.json", []byte(`{"deep":true}`), 0o644)
	write(t, dir, ".git/HEAD", []byte("ref: main"), 0o644)
	write(t, dir, "ignored.tmp", []byte("scratch"), 0o644)
	write(t, dir, ".modelxignore", []byte("# scratch files\n*.tmp\n"), 0o644)
	return dir
}

func TestEndToEnd(t *testing.T) {
	for _, e := range envs(t) {
		t.Run(e.name, func(t *testing.T) {
			t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, e) })
			t.Run("EmptyModel", func(t *testing.T) { testEmptyModel(t, e) })
			t.Run("Incremental", func(t *testing.T) { testIncremental(t, e) })
			t.Run("ShiftedTensor", func(t *testing.T) { testShiftedTensor(t, e) })
			t.Run("ManySmallFiles", func(t *testing.T) { testManySmallFiles(t, e) })
			t.Run("SelectivePull", func(t *testing.T) { testSelectivePull(t, e) })
			t.Run("ResumeAfterCancel", func(t *testing.T) { testResume(t, e) })
			t.Run("MissingTag", func(t *testing.T) { testMissingTag(t, e) })
		})
	}
}

func testRoundTrip(t *testing.T, e env) {
	ctx := context.Background()
	src := basicModel(t)
	c := newClient(client.Options{})
	res, err := c.Push(ctx, ref(t, e, "nlp/bert:v1"), src)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 8 || res.UploadedBytes == 0 || res.Digest == "" {
		t.Fatalf("push result %+v", res)
	}
	dst := t.TempDir()
	pres, err := c.Pull(ctx, ref(t, e, "nlp/bert@v1"), dst, client.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pres.Digest != res.Digest || pres.Files != 8 {
		t.Fatalf("pull result %+v", pres)
	}
	os.RemoveAll(filepath.Join(src, ".git"))
	os.Remove(filepath.Join(src, "ignored.tmp"))
	sameTree(t, src, dst)
	// Pull by digest into a third directory.
	byDigest := t.TempDir()
	if _, err := c.Pull(ctx, ref(t, e, "nlp/bert@"+string(res.Digest)), byDigest, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	sameTree(t, src, byDigest)
	// A no-op pull downloads nothing.
	again, err := c.Pull(ctx, ref(t, e, "nlp/bert:v1"), dst, client.PullOptions{})
	if err != nil || again.DownloadedBytes != 0 || again.BlobsTransferred != 0 {
		t.Fatalf("no-op pull %+v %v", again, err)
	}
}

func testEmptyModel(t *testing.T, e env) {
	ctx := context.Background()
	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: nothing else\n"), 0o644)
	c := newClient(client.Options{})
	if _, err := c.Push(ctx, ref(t, e, "lib/empty:latest"), src); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if _, err := c.Pull(ctx, ref(t, e, "lib/empty"), dst, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	sameTree(t, src, dst)
	noConfig := t.TempDir()
	write(t, noConfig, "x", []byte("x"), 0o644)
	if _, err := c.Push(ctx, ref(t, e, "lib/none:v1"), noConfig); err == nil || !strings.Contains(err.Error(), "modelx init") {
		t.Fatalf("push without modelx.yaml: %v", err)
	}
}

func testIncremental(t *testing.T, e env) {
	ctx := context.Background()
	src := basicModel(t)
	c := newClient(client.Options{})
	if _, err := c.Push(ctx, ref(t, e, "inc/model:v1"), src); err != nil {
		t.Fatal(err)
	}
	res, err := c.Push(ctx, ref(t, e, "inc/model:v1"), src)
	if err != nil {
		t.Fatal(err)
	}
	if res.UploadedBytes != 0 || res.BlobsTransferred != 0 {
		t.Fatalf("no-op re-push uploaded %+v", res)
	}
	// The hash cache means a no-op push reads no content: rewrite a file in
	// place with other bytes of the same size and restore its mtime; the
	// push still sees the old digest (which is why mtime matters).
	weights := filepath.Join(src, "weights", "big.safetensors")
	fi, _ := os.Stat(weights)
	f, err := os.OpenFile(weights, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("XXXX"), 100)
	f.Close()
	os.Chtimes(weights, fi.ModTime(), fi.ModTime())
	if res, err = c.Push(ctx, ref(t, e, "inc/model:v1"), src); err != nil || res.UploadedBytes != 0 {
		t.Fatalf("no-op push read file content: %+v %v", res, err)
	}
	os.Chtimes(weights, time.Now(), time.Now())
	if res, err = c.Push(ctx, ref(t, e, "inc/model:v1"), src); err != nil || res.UploadedBytes == 0 || res.BlobsTransferred > 2 {
		t.Fatalf("push after a real change: %+v %v", res, err)
	}
	v1 := t.TempDir()
	if _, err := c.Pull(ctx, ref(t, e, "inc/model:v1"), v1, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	// One small file changes: one pack is re-sent.
	write(t, src, "ünïcode/名前/vocab.txt", []byte("日本語 tokens, edited"), 0o644)
	res, err = c.Push(ctx, ref(t, e, "inc/model:v2"), src)
	if err != nil {
		t.Fatal(err)
	}
	if res.BlobsTransferred != 1 || res.UploadedBytes > 4<<10 {
		t.Fatalf("one changed small file: %+v, want one small pack", res)
	}
	// Pulling v2 over v1 downloads only the difference.
	pres, err := c.Pull(ctx, ref(t, e, "inc/model:v2"), v1, client.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pres.DownloadedBytes > 4<<10 || pres.BlobsTransferred != 1 {
		t.Fatalf("pull over the previous version: %+v", pres)
	}
	os.RemoveAll(filepath.Join(src, ".git"))
	os.Remove(filepath.Join(src, "ignored.tmp"))
	sameTree(t, src, v1)
}

// safetensorsLike is an 8-byte header length, a JSON header, then tensors.
func safetensorsLike(header string, tensors ...[]byte) []byte {
	var buf bytes.Buffer
	n := uint64(len(header))
	for i := range 8 {
		buf.WriteByte(byte(n >> (8 * i)))
	}
	buf.WriteString(header)
	for _, t := range tensors {
		buf.Write(t)
	}
	return buf.Bytes()
}

func testShiftedTensor(t *testing.T, e env) {
	ctx := context.Background()
	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: llm\n"), 0o644)
	tensors := [][]byte{random(10, 1<<20), random(11, 1<<20), random(12, 48<<10), random(13, 1<<20), random(14, 1<<20)}
	write(t, src, "model.safetensors", safetensorsLike(`{"a":[0,1]}`, tensors...), 0o644)
	c := newClient(client.Options{})
	first, err := c.Push(ctx, ref(t, e, "llm/tiny:v1"), src)
	if err != nil {
		t.Fatal(err)
	}
	// Change one small tensor and grow the header: every later byte shifts.
	tensors[2] = random(99, 48<<10)
	write(t, src, "model.safetensors", safetensorsLike(`{"a":[0,1],"metadata":{"step":"1000"}}`, tensors...), 0o644)
	res, err := c.Push(ctx, ref(t, e, "llm/tiny:v2"), src)
	if err != nil {
		t.Fatal(err)
	}
	// Re-sent: chunks around the header and around the tensor, at most
	// the tensor plus two chunks on each side.
	if res.UploadedBytes > int64(len(tensors[2]))+4*int64(testChunks.Max) || res.BlobsTransferred > 6 {
		t.Fatalf("shifted tensor re-sent %d bytes in %d blobs (first push %d bytes)", res.UploadedBytes, res.BlobsTransferred, first.UploadedBytes)
	}
	if res.UploadedBytes*4 > first.UploadedBytes {
		t.Fatalf("shifted tensor re-sent %d of %d bytes", res.UploadedBytes, first.UploadedBytes)
	}
	dst := t.TempDir()
	if _, err := c.Pull(ctx, ref(t, e, "llm/tiny:v2"), dst, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	sameTree(t, src, dst)
}

func testManySmallFiles(t *testing.T, e env) {
	ctx := context.Background()
	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: dataset\n"), 0o644)
	for i := range 10000 {
		write(t, src, fmt.Sprintf("data/%02d/%04d.json", i%50, i), []byte(fmt.Sprintf(`{"id":%d}`, i)), 0o644)
	}
	c := newClient(client.Options{SmallFileThreshold: 1 << 20})
	res, err := c.Push(ctx, ref(t, e, "data/small:v1"), src)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 10001 || res.BlobsTransferred > 400 {
		t.Fatalf("10,000 small files: %+v", res)
	}
	dst := t.TempDir()
	if _, err := c.Pull(ctx, ref(t, e, "data/small:v1"), dst, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	sameTree(t, src, dst)
}

func testSelectivePull(t *testing.T, e env) {
	ctx := context.Background()
	src := basicModel(t)
	c := newClient(client.Options{})
	if _, err := c.Push(ctx, ref(t, e, "sel/model:v1"), src); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	res, err := c.Pull(ctx, ref(t, e, "sel/model:v1"), dst, client.PullOptions{Files: []string{"*.json"}})
	if err != nil {
		t.Fatal(err)
	}
	got := tree(t, dst)
	if len(got) != 2 || got["a/b/c/d/e/deep.json"] == "" || got["modelx.yaml"] == "" {
		t.Fatalf("--file '*.json' wrote %v", keys(got))
	}
	if res.DownloadedBytes > 1<<10 {
		t.Fatalf("one packed file fetched %d bytes; want a ranged frame, not the pack", res.DownloadedBytes)
	}
	dst2 := t.TempDir()
	if _, err := c.Pull(ctx, ref(t, e, "sel/model:v1"), dst2, client.PullOptions{ModelFiles: true}); err != nil {
		t.Fatal(err)
	}
	if got := keys(tree(t, dst2)); len(got) != 3 {
		t.Fatalf("--model-files wrote %v", got)
	}
	if _, err := c.Pull(ctx, ref(t, e, "sel/model:v1"), t.TempDir(), client.PullOptions{Files: []string{"nothing*"}}); err == nil || !strings.Contains(err.Error(), "no file") {
		t.Fatalf("unmatched --file: %v", err)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// cancelAfter cancels a context once n bytes have moved.
type cancelAfter struct {
	n      atomic.Int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Plan(int64, int64)                  {}
func (c *cancelAfter) Start(string, int64) client.Tracker { return c }
func (c *cancelAfter) Skip(int64)                         {}
func (c *cancelAfter) Done(error)                         {}
func (c *cancelAfter) Add(n int64) {
	if left := c.n.Add(-n); left <= 0 && left+n > 0 {
		c.cancel()
	}
}

func testResume(t *testing.T, e env) {
	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: resume\n"), 0o644)
	write(t, src, "weights.bin", random(20, 4<<20), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	// Half the bytes: with 2 transfers at once, and chunks of at most
	// 256 KiB, at least 6 chunks are stored by then.
	stopper := &cancelAfter{cancel: cancel}
	stopper.n.Store(2 << 20)
	c := newClient(client.Options{Concurrency: 2, Progress: stopper})
	if _, err := c.Push(ctx, ref(t, e, "res/model:v1"), src); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted push: %v", err)
	}
	res, err := newClient(client.Options{}).Push(context.Background(), ref(t, e, "res/model:v1"), src)
	if err != nil {
		t.Fatal(err)
	}
	if res.BlobsSkipped < 4 {
		t.Fatalf("resumed push re-sent what was done: %+v", res)
	}

	dst := t.TempDir()
	ctx, cancel = context.WithCancel(context.Background())
	stopper = &cancelAfter{cancel: cancel}
	stopper.n.Store(2 << 20)
	if _, err := newClient(client.Options{Concurrency: 2, Progress: stopper}).Pull(ctx, ref(t, e, "res/model:v1"), dst, client.PullOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted pull: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dst, "weights.bin")); err == nil {
		t.Fatal("an interrupted pull left a file at its final name")
	}
	pres, err := newClient(client.Options{}).Pull(context.Background(), ref(t, e, "res/model:v1"), dst, client.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pres.DownloadedBytes >= 4<<20 {
		t.Fatalf("resumed pull downloaded %d bytes again", pres.DownloadedBytes)
	}
	sameTree(t, src, dst)
}

func testMissingTag(t *testing.T, e env) {
	ctx := context.Background()
	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: tags\n"), 0o644)
	c := newClient(client.Options{})
	if _, err := c.Push(ctx, ref(t, e, "tags/model:v1"), src); err != nil {
		t.Fatal(err)
	}
	_, err := c.Pull(ctx, ref(t, e, "tags/model:v9"), t.TempDir(), client.PullOptions{})
	if err == nil || !strings.Contains(err.Error(), `no tag "v9"`) || !strings.Contains(err.Error(), "v1") {
		t.Fatalf("missing tag: %v", err)
	}
}

// TestCorruptBlobDetected flips bytes of a stored blob behind the registry's
// back: the pull must fail on the digest and write nothing at the target.
func TestCorruptBlobDetected(t *testing.T) {
	e := envs(t)[0]
	ctx := context.Background()
	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: corrupt\n"), 0o644)
	weights := random(30, 100<<10)
	write(t, src, "weights.bin", weights, 0o644)
	c := newClient(client.Options{SmallFileThreshold: 1 << 10, Chunker: chunker.Params{Min: 256 << 10, Avg: 512 << 10, Max: 1 << 20}})
	if _, err := c.Push(ctx, ref(t, e, "bad/model:v1"), src); err != nil {
		t.Fatal(err)
	}
	var blobPath string
	filepath.WalkDir(filepath.Join(e.dataDir, "blobs"), func(p string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			if info, _ := de.Info(); info.Size() == int64(len(weights)) {
				blobPath = p
			}
		}
		return nil
	})
	if blobPath == "" {
		t.Fatal("weights blob not found in storage")
	}
	bad := bytes.Clone(weights)
	bad[1234] ^= 0xff
	if err := os.WriteFile(blobPath, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	_, err := c.Pull(ctx, ref(t, e, "bad/model:v1"), dst, client.PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "digest") {
		t.Fatalf("pull of a corrupt blob: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dst, "weights.bin")); err == nil {
		t.Fatal("a corrupt file was written at its final name")
	}
}

// TestHostilePaths serves crafted manifests from a fake registry: every
// escaping path is refused before anything is written.
func TestHostilePaths(t *testing.T) {
	manifests := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for tag, m := range manifests {
			if strings.HasSuffix(r.URL.Path, "/manifests/"+tag) {
				w.Write([]byte(m))
				return
			}
		}
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"code":"BLOB_UNKNOWN","message":"no"}`))
	}))
	defer srv.Close()
	d := "sha256:" + strings.Repeat("a", 64)
	file := func(name string) string {
		return fmt.Sprintf(`{"name":%q,"mediaType":"application/vnd.modelx.model.file.v1","digest":%q,"size":1}`, name, d)
	}
	mk := func(blobs ...string) string {
		return fmt.Sprintf(`{"schemaVersion":1,"config":{"name":"modelx.yaml","digest":%q,"size":1},"blobs":[%s]}`, d, strings.Join(blobs, ","))
	}
	manifests["dotdot"] = mk(file("../escape"))
	manifests["abs"] = mk(file("/etc/passwd"))
	manifests["nested"] = mk(file("a/../../escape"))
	manifests["state"] = mk(file(".modelx/cache.json"))
	manifests["packed"] = fmt.Sprintf(`{"schemaVersion":1,"config":{"name":"modelx.yaml","digest":%q,"size":1},"blobs":[{"name":"p","mediaType":%q,"digest":%q,"size":10,"files":[{"name":"../x","digest":%q,"size":1,"offset":0,"length":10}]}]}`, d, spec.MediaTypePack, d, d)
	manifests["link"] = mk(file("sub/file"))
	manifests["backslash"] = mk(file(`..\\escape`))
	manifests["windows-abs"] = mk(file(`C:\\Windows\\evil`))
	manifests["nul"] = mk(file("a\u0000b"))
	manifests["control"] = mk(file("a\u001b]0;x\u0007"))
	manifests["long-element"] = mk(file(strings.Repeat("x", 300)))
	manifests["long-path"] = mk(file(strings.Repeat("d/", 3000) + "f"))
	outside := t.TempDir()
	c := newClient(client.Options{})
	for tag := range manifests {
		t.Run(tag, func(t *testing.T) {
			dst := t.TempDir()
			if tag == "link" {
				if err := os.Symlink(outside, filepath.Join(dst, "sub")); err != nil {
					t.Fatal(err)
				}
			}
			r, err := client.ParseReference(srv.URL+"/evil/model:"+tag, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Pull(context.Background(), r, dst, client.PullOptions{})
			if err == nil {
				t.Fatal("a hostile manifest was pulled")
			}
			entries, _ := os.ReadDir(outside)
			if len(entries) != 0 {
				t.Fatalf("something was written outside: %v", entries)
			}
			var names []string
			filepath.WalkDir(dst, func(p string, de fs.DirEntry, err error) error {
				if err == nil && !de.IsDir() && de.Type()&fs.ModeSymlink == 0 && !strings.Contains(p, ".modelx") {
					names = append(names, p)
				}
				return nil
			})
			if len(names) != 0 {
				t.Fatalf("files written: %v (error was %v)", names, err)
			}
		})
	}
}

func tarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		body := files[name]
		hdr := &tar.Header{Name: name, Mode: 0o640, Size: int64(len(body)), Typeflag: tar.TypeReg}
		if strings.HasPrefix(body, "->") {
			hdr = &tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: body[2:]}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			tw.Write([]byte(body))
		}
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// blobPutter returns a func that uploads bytes as a blob of model
// repo/name and returns its digest.
func blobPutter(t *testing.T, api *client.API, repo, name string) func([]byte) digest.Digest {
	return func(data []byte) digest.Digest {
		t.Helper()
		d := digest.FromBytes(data)
		if _, err := api.PutBlob(context.Background(), repo, name, d, int64(len(data)), func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }); err != nil {
			t.Fatal(err)
		}
		return d
	}
}

// TestLegacyManifest pulls a model as the original modelx pushed it: whole
// files and one tar.gz per directory, and refuses a hostile archive.
func TestLegacyManifest(t *testing.T) {
	e := envs(t)[0]
	ctx := context.Background()
	c := newClient(client.Options{})
	api := c.API(e.url)
	put := blobPutter(t, api, "old", "model")
	config := []byte("description: legacy\n")
	weights := []byte("weights")
	for tag, archive := range map[string][]byte{
		"good": tarGz(t, map[string]string{"vocab.txt": "a b c", "sub/merges.txt": "x y"}),
		"evil": tarGz(t, map[string]string{"ok.txt": "fine", "../../escape.txt": "bad"}),
		"link": tarGz(t, map[string]string{"ln": "->/etc/passwd"}),
	} {
		m := fmt.Sprintf(`{"mediaType":%q,"config":{"name":"modelx.yaml","mediaType":%q,"digest":%q,"size":%d,"mode":420},
			"blobs":[{"name":"model.bin","mediaType":%q,"digest":%q,"size":%d,"mode":420},
			{"name":"tokenizer","mediaType":%q,"digest":%q,"size":%d,"mode":2147484141}]}`,
			spec.MediaTypeManifest, spec.MediaTypeConfig, put(config), len(config),
			spec.MediaTypeFile, put(weights), len(weights),
			spec.MediaTypeDirectoryTarGz, put(archive), len(archive))
		if _, err := api.PutManifest(ctx, "old", "model", tag, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	dst := t.TempDir()
	if _, err := c.Pull(ctx, ref(t, e, "old/model:good"), dst, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	got := tree(t, dst)
	if len(got) != 4 || got["tokenizer/sub/merges.txt"] == "" || got["model.bin"] == "" {
		t.Fatalf("legacy pull wrote %v", keys(got))
	}
	for _, tag := range []string{"evil", "link"} {
		dst := t.TempDir()
		if _, err := c.Pull(ctx, ref(t, e, "old/model:"+tag), dst, client.PullOptions{}); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Fatalf("hostile archive %s: %v", tag, err)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(dst), "escape.txt")); err == nil {
			t.Fatal("an archive entry escaped the directory")
		}
	}
}
