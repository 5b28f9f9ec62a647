package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/client"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/spec"
	fsstore "modelx.io/modelx/storage/fs"
)

// countingRegistry is a registry on storage/fs behind a handler that
// counts every request it gets.
type countingRegistry struct {
	url      string
	requests atomic.Int64
}

func startCountingRegistry(t *testing.T) *countingRegistry {
	t.Helper()
	st, err := fsstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(st, registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	cr := &countingRegistry{}
	h := reg.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cr.requests.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	cr.url = srv.URL
	return cr
}

// jsonString writes s as a JSON string with its bytes as they are (only
// quotes, backslashes and C0 controls escaped), so a name that is not
// valid UTF-8 reaches the registry as it is, where encoding/json would
// replace the bad bytes.
func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20:
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// TestPushRefusesWhatTheRegistryRefuses feeds a file or directory of
// every kind of name the registry refuses in a manifest: the registry
// refuses each in a manifest sent straight to it, and a push of a
// directory holding them all fails in the scan, before any request, listing
// each once (a directory once, not file by file) with its reason and a
// .modelxignore line. With exactly those lines in .modelxignore the push
// goes through, and sends none of them.
func TestPushRefusesWhatTheRegistryRefuses(t *testing.T) {
	ctx := context.Background()
	cr := startCountingRegistry(t)
	refused := []struct{ path, onDisk string }{ // path as listed; onDisk, a file under it
		{"c0\x01.txt", ""},
		{"tab\tname", ""},
		{"new\nline", ""},
		{"del\x7f.txt", ""},
		{"c1-nel\u0085.txt", ""},
		{"c1-csi\u009b.txt", ""},
		{"bidi-rlo\u202egpj.exe", ""},
		{"bidi-isolate\u2066.txt", ""},
		{"bidi-mark\u200f.txt", ""},
		{"arabic-mark\u061c.txt", ""},
		{"bad-\xff.bin", ""},
		{"back\\slash.txt", ""},
		{".gIt", ""},
		{"sub/.git.", ""},
		{".GIT/", "config"},
		{"deep/er/.Git/", "hooks/post-checkout"},
		{"git~1/", "HEAD"},
		{"GIT~1/", "HEAD"},
		{".git /", "config"},
		{".git::$INDEX_ALLOCATION/", "config"},
		{".g\u200cit/", "config"},
		{".MODELX/", "cache.json"},
		{"modelx~1/", "tmp"},
	}
	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: refused names\n"), 0o644)
	write(t, src, "weights.bin", random(7, 40<<10), 0o644)
	write(t, src, "sub/ok.txt", []byte("ok"), 0o644)
	// A valid name with pattern characters: the ignore lines must not match it.
	write(t, src, "star*[x]?/kept.txt", []byte("kept"), 0o644)
	write(t, src, ".git/HEAD", []byte("ref: main\n"), 0o644) // a repository: left out, not refused
	api := client.NewAPI(cr.url, nil, nil)
	for _, r := range refused {
		write(t, src, strings.TrimSuffix(r.path, "/")+"/"+r.onDisk, []byte("x"), 0o644)
		if r.onDisk == "" {
			write(t, src, r.path, []byte("x"), 0o644)
		}
		// The registry refuses the name in a manifest.
		name := strings.TrimSuffix(r.path, "/")
		if r.onDisk != "" {
			name += "/" + r.onDisk
		}
		d := digest.FromString("x")
		doc := fmt.Sprintf(`{"schemaVersion":%d,"mediaType":%q,"config":{"name":"modelx.yaml","mediaType":%q,"digest":%q,"size":1},"blobs":[{"name":%s,"mediaType":%q,"digest":%q,"size":1}]}`,
			spec.SchemaVersion, spec.MediaTypeManifest, spec.MediaTypeConfig, d, jsonString(name), spec.MediaTypeFile, d)
		if _, err := api.PutManifest(ctx, "names", "direct", "v1", []byte(doc)); client.Code(err) != spec.ErrorManifestInvalid {
			t.Errorf("the registry answered a manifest naming %q with %v, want MANIFEST_INVALID", name, err)
		}
	}
	before := cr.requests.Load()

	c := newClient(client.Options{})
	_, err := c.Push(ctx, ref(t, env{url: cr.url}, "names/model:v1"), src)
	var unpushable *client.UnpushableError
	if !errors.As(err, &unpushable) {
		t.Fatalf("push: %v, want an *UnpushableError", err)
	}
	if n := cr.requests.Load() - before; n != 0 {
		t.Fatalf("the push made %d requests before it failed", n)
	}
	listed := map[string]client.PathProblem{}
	for _, p := range unpushable.Problems {
		listed[p.Path] = p
	}
	for _, r := range refused {
		p, ok := listed[r.path]
		if !ok {
			t.Errorf("%q is not listed", r.path)
			continue
		}
		if p.Reason == "" || p.IgnoreLine == "" {
			t.Errorf("%q: reason %q, ignore line %q", r.path, p.Reason, p.IgnoreLine)
		}
	}
	if len(unpushable.Problems) != len(refused) {
		t.Errorf("%d paths listed, want %d: %v", len(unpushable.Problems), len(refused), unpushable.Problems)
	}
	msg := err.Error()
	for _, want := range []string{fmt.Sprintf("%d paths in %s cannot be pushed", len(refused), src), "nothing was uploaded", filepath.Join(src, client.IgnoreFile), fmt.Sprintf("… and %d more", len(refused)-20), `"c0\x01.txt"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("the message lacks %q:\n%s", want, msg)
		}
	}
	if strings.ContainsAny(msg, "\x01\u202e\u2066\u200f\x7f") || !strings.Contains(msg, `\u202e`) {
		t.Errorf("the message does not escape what it names:\n%q", msg)
	}

	// The lines it suggests leave out exactly those paths.
	var lines strings.Builder
	for _, p := range unpushable.Problems {
		lines.WriteString(p.IgnoreLine + "\n")
	}
	write(t, src, client.IgnoreFile, []byte(lines.String()), 0o644)
	res, err := c.Push(ctx, ref(t, env{url: cr.url}, "names/model:v1"), src)
	if err != nil {
		t.Fatalf("push with the suggested %s:\n%s\n%v", client.IgnoreFile, lines.String(), err)
	}
	dst := t.TempDir()
	if _, err := c.Pull(ctx, ref(t, env{url: cr.url}, "names/model:v1"), dst, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(maps.Keys(tree(t, dst)))
	want := []string{".modelxignore", "modelx.yaml", "star*[x]?/kept.txt", "sub/ok.txt", "weights.bin"}
	if fmt.Sprint(got) != fmt.Sprint(want) || res.Files != len(want) {
		t.Fatalf("pushed %d files, pulled %q; want %q", res.Files, got, want)
	}

	// A link to a directory and a special file are listed the same way.
	special := t.TempDir()
	write(t, special, "modelx.yaml", []byte("description: special\n"), 0o644)
	if err := os.Symlink(t.TempDir(), filepath.Join(special, "linked")); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(special, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	before = cr.requests.Load()
	_, err = c.Push(ctx, ref(t, env{url: cr.url}, "names/special:v1"), special)
	if !errors.As(err, &unpushable) || len(unpushable.Problems) != 2 || cr.requests.Load() != before ||
		!strings.Contains(err.Error(), `"linked" is a link to a directory`) || !strings.Contains(err.Error(), `"sock" is not a regular file`) ||
		!strings.Contains(err.Error(), "\n  /linked\n  /sock") {
		t.Fatalf("push of a link to a directory and a socket: %v (%d requests)", err, cr.requests.Load()-before)
	}
}

// TestModelFilesMustMatch: a modelx.yaml whose modelFiles name what the
// version does not hold is refused by the push before any request, naming
// each such entry (and saying when .modelxignore leaves it out), and by
// the registry when another client sends it, naming the entries.
func TestModelFilesMustMatch(t *testing.T) {
	ctx := context.Background()
	cr := startCountingRegistry(t)
	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: serve\nmodelFiles: [weights.bin, tok/, tok, missing.bin, gone/, notes.txt, modelx.yaml]\n"), 0o644)
	write(t, src, "weights.bin", random(8, 20<<10), 0o644)
	write(t, src, "tok/vocab.json", []byte("{}"), 0o644)
	write(t, src, "notes.txt", []byte("private"), 0o644)
	write(t, src, client.IgnoreFile, []byte("notes.txt\n"), 0o644)
	c := newClient(client.Options{})
	_, err := c.Push(ctx, ref(t, env{url: cr.url}, "serve/model:v1"), src)
	if err == nil || cr.requests.Load() != 0 {
		t.Fatalf("push: %v after %d requests, want a refusal before any", err, cr.requests.Load())
	}
	msg := err.Error()
	for _, want := range []string{"modelFiles lists 3 entries", `"missing.bin": no such file`, `"gone/": no such file`, `"notes.txt": it is there, but push leaves it out`, filepath.Join(src, "modelx.yaml")} {
		if !strings.Contains(msg, want) {
			t.Errorf("the message lacks %q:\n%s", want, msg)
		}
	}
	for _, matched := range []string{`"weights.bin"`, `"tok/"`, `"tok"`} {
		if strings.Contains(msg, matched) {
			t.Errorf("the message names %s, which matches:\n%s", matched, msg)
		}
	}
	write(t, src, "modelx.yaml", []byte("description: serve\nmodelFiles: [weights.bin, tok/]\n"), 0o644)
	if _, err := c.Push(ctx, ref(t, env{url: cr.url}, "serve/model:v1"), src); err != nil {
		t.Fatal(err)
	}

	// Another client: the registry checks the manifest against its config.
	api := client.NewAPI(cr.url, nil, nil)
	put := blobPutter(t, api, "serve", "other")
	weights := []byte("weights")
	wd := put(weights)
	manifest := func(config string, blobs ...spec.Descriptor) []byte {
		cfg := []byte(config)
		m := spec.Manifest{SchemaVersion: spec.SchemaVersion, MediaType: spec.MediaTypeManifest,
			Config: spec.Descriptor{Name: spec.ConfigFileName, MediaType: spec.MediaTypeConfig, Digest: put(cfg), Size: int64(len(cfg))},
			Blobs:  blobs}
		data, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	file := spec.Descriptor{Name: "model/weights.bin", MediaType: spec.MediaTypeFile, Digest: wd, Size: int64(len(weights))}
	_, err = api.PutManifest(ctx, "serve", "other", "v1", manifest("modelFiles: [model/, nope.bin, model/weights.bin, other/]\n", file))
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || apiErr.API.Code != spec.ErrorManifestInvalid ||
		!strings.Contains(apiErr.API.Message, `"nope.bin", "other/"`) || strings.Contains(apiErr.API.Message, `"model/"`) {
		t.Fatalf("the registry answered a manifest with unmatched modelFiles with %v", err)
	}
	if _, err := api.PutManifest(ctx, "serve", "other", "v1", manifest("modelFiles: [model/]\n", file)); err != nil {
		t.Fatalf("matching modelFiles: %v", err)
	}
	// A config that does not parse is not checked (older clients pushed such).
	if _, err := api.PutManifest(ctx, "serve", "other", "v2", manifest("modelFiles: [nope]\nunknownField: 1\n", file)); err != nil {
		t.Fatalf("unparsable config: %v", err)
	}
	// A legacy archive's files are not listed: an entry under it matches.
	archive := tarGz(t, map[string]string{"a.txt": "a"})
	legacy := spec.Descriptor{Name: "legacy", MediaType: spec.MediaTypeDirectoryTarGz, Digest: put(archive), Size: int64(len(archive))}
	if _, err := api.PutManifest(ctx, "serve", "other", "v3", manifest("modelFiles: [legacy/, legacy/a.txt]\n", legacy)); err != nil {
		t.Fatalf("modelFiles in a legacy archive: %v", err)
	}
}

// cutOnce serves a registry, and cuts the first blob download of at least
// min bytes after cut bytes of its body: the connection is closed as a
// registry that dies mid-transfer closes it.
type cutOnce struct {
	next     http.Handler
	min, cut int64
	done     atomic.Bool
}

func (c *cutOnce) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") || c.done.Load() {
		c.next.ServeHTTP(w, r)
		return
	}
	c.next.ServeHTTP(&cuttingWriter{ResponseWriter: w, c: c}, r)
}

// cuttingWriter passes a response through until it has written c.cut
// bytes of a body of at least c.min, then closes the connection.
type cuttingWriter struct {
	http.ResponseWriter
	c       *cutOnce
	written int64
	cutting bool
}

func (w *cuttingWriter) WriteHeader(status int) {
	var size int64
	_, err := fmt.Sscan(w.Header().Get("Content-Length"), &size)
	w.cutting = err == nil && (status == http.StatusOK || status == http.StatusPartialContent) && size >= w.c.min && w.c.done.CompareAndSwap(false, true)
	w.ResponseWriter.WriteHeader(status)
}

func (w *cuttingWriter) Write(p []byte) (int, error) {
	if !w.cutting {
		return w.ResponseWriter.Write(p)
	}
	room := w.c.cut - w.written
	if int64(len(p)) < room {
		n, err := w.ResponseWriter.Write(p)
		w.written += int64(n)
		return n, err
	}
	n, _ := w.ResponseWriter.Write(p[:room])
	w.written += int64(n)
	w.ResponseWriter.(http.Flusher).Flush()
	conn, _, err := w.ResponseWriter.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
	return n, errors.New("connection cut by the test")
}

// TestPullWhenTheRegistryClosesTheConnection: a download cut off mid-body
// fails the pull with an error that names the registry, says the bytes are
// kept and that the same pull resumes; the next pull fetches only the rest.
func TestPullWhenTheRegistryClosesTheConnection(t *testing.T) {
	ctx := context.Background()
	st, err := fsstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(st, registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	const size = 3 << 20 // under the default chunker's minimum: one whole-file blob
	cut := &cutOnce{next: reg.Handler(), min: size, cut: 1 << 20}
	srv := httptest.NewServer(cut)
	defer srv.Close()
	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: cut\n"), 0o644)
	weights := random(9, size)
	write(t, src, "weights.bin", weights, 0o644)
	c := client.New(client.Options{})
	r := ref(t, env{url: srv.URL}, "cut/model:v1")
	cut.done.Store(true) // the push goes through
	if _, err := c.Push(ctx, r, src); err != nil {
		t.Fatal(err)
	}
	cut.done.Store(false)

	dst := filepath.Join(t.TempDir(), "out")
	_, err = c.Pull(ctx, r, dst, client.PullOptions{})
	if !errors.Is(err, client.ErrConnectionClosed) {
		t.Fatalf("pull: %v, want ErrConnectionClosed", err)
	}
	t.Logf("pull cut off: %v", err)
	tmp := filepath.Join(dst, ".modelx", "tmp")
	for _, want := range []string{"registry " + srv.URL + " closed the connection in the middle of the transfer", "kept in " + tmp, "run the same pull again to resume"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q: %v", want, err)
		}
	}
	var kept int64
	entries, _ := os.ReadDir(tmp)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".part") {
			kept += fi.Size()
		}
	}
	if kept == 0 || kept >= size {
		t.Fatalf("%d bytes kept of %d", kept, size)
	}
	// modelx.yaml downloads beside weights.bin: whether it was in place
	// before the cut ended the first pull is a matter of timing, so the
	// rest the second pull must fetch counts it only if it was not.
	want := size - kept
	if got, err := os.ReadFile(filepath.Join(dst, "modelx.yaml")); err != nil || string(got) != "description: cut\n" {
		want += int64(len("description: cut\n"))
	}
	res, err := c.Pull(ctx, r, dst, client.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.DownloadedBytes != want {
		t.Fatalf("the second pull downloaded %d bytes, want the %d the first did not", res.DownloadedBytes, want)
	}
	if got, _ := os.ReadFile(filepath.Join(dst, "weights.bin")); string(got) != string(weights) {
		t.Fatal("the resumed file differs")
	}
}

// TestMissingVersionMessages: a missing tag names the tags there are (at
// most 10, and the count), a missing model says so, each once.
func TestMissingVersionMessages(t *testing.T) {
	ctx := context.Background()
	cr := startCountingRegistry(t)
	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: tags\n"), 0o644)
	c := newClient(client.Options{})
	for i := range 12 {
		if _, err := c.Push(ctx, ref(t, env{url: cr.url}, fmt.Sprintf("tags/model:v%02d", i)), src); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.Pull(ctx, ref(t, env{url: cr.url}, "tags/model:v99"), t.TempDir(), client.PullOptions{})
	var nf *client.NotFoundError
	if !errors.As(err, &nf) || client.Code(err) != spec.ErrorManifestUnknown {
		t.Fatalf("pull of a missing tag: %v", err)
	}
	want := `model tags/model has no tag "v99" in registry ` + cr.url + "; its tags: v00, v01, v02, v03, v04, v05, v06, v07, v08, v09, … (12 in all; `modelx list " + cr.url + "/tags/model` shows them)"
	if err.Error() != want {
		t.Fatalf("pull of a missing tag:\n got %s\nwant %s", err, want)
	}
	_, err = c.Pull(ctx, ref(t, env{url: cr.url}, "tags/nothing:v1"), t.TempDir(), client.PullOptions{})
	want = "no model tags/nothing in registry " + cr.url + "; `modelx list " + cr.url + "` lists its models"
	if err == nil || err.Error() != want || client.Code(err) != spec.ErrorManifestUnknown {
		t.Fatalf("pull of a missing model:\n got %v\nwant %s", err, want)
	}
}
