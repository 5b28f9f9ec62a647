package client_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/client"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/spec"
	fsstore "modelx.io/modelx/storage/fs"
)

// TestPullSameContentTwice pulls a model in which files share content under
// two names (whole-file blobs, chunked files and packed files, with other
// modes): every copy is written, with its own mode, on the first pull, on
// both backends, with and without unnamed files; the blob is downloaded
// once; a second pull downloads nothing.
func TestPullSameContentTwice(t *testing.T) {
	whole := random(90, 12<<10) // over testSmall, under testChunks.Min: one chunk, a whole-file blob
	chunked := random(91, 1<<20)
	for _, e := range envs(t) {
		t.Run(e.name, func(t *testing.T) {
			ctx := context.Background()
			src := t.TempDir()
			write(t, src, "modelx.yaml", []byte("description: twins\n"), 0o644)
			write(t, src, "a.bin", whole, 0o644)
			write(t, src, "sub/b.bin", whole, 0o600)
			write(t, src, "sub/deeper/c.bin", whole, 0o755)
			write(t, src, "model-1.safetensors", chunked, 0o644)
			write(t, src, "copy/model-2.safetensors", chunked, 0o640)
			write(t, src, "tok/one.json", []byte(`{"same": true}`), 0o644)
			write(t, src, "other/two.json", []byte(`{"same": true}`), 0o600)
			c := newClient(client.Options{})
			pushed, err := c.Push(ctx, ref(t, e, "twins/model:v1"), src)
			if err != nil {
				t.Fatal(err)
			}
			for _, unnamed := range []bool{true, false} {
				t.Run(map[bool]string{true: "unnamed", false: "temp-files"}[unnamed], func(t *testing.T) {
					if !unnamed {
						defer client.DisableUnnamedFiles()()
					}
					dst := t.TempDir()
					res, err := c.Pull(ctx, ref(t, e, "twins/model:v1"), dst, client.PullOptions{})
					if err != nil {
						t.Fatalf("first pull: %v", err)
					}
					sameTree(t, src, dst)
					if res.DownloadedBytes > pushed.UploadedBytes {
						t.Fatalf("the pull downloaded %d bytes; the push uploaded %d: a shared blob was downloaded twice", res.DownloadedBytes, pushed.UploadedBytes)
					}
					again, err := c.Pull(ctx, ref(t, e, "twins/model:v1"), dst, client.PullOptions{})
					if err != nil || again.DownloadedBytes != 0 {
						t.Fatalf("second pull: %+v, %v", again, err)
					}
					// One copy lost: the next pull writes it again.
					os.Remove(filepath.Join(dst, "sub", "deeper", "c.bin"))
					os.Remove(filepath.Join(dst, "copy", "model-2.safetensors"))
					if _, err := c.Pull(ctx, ref(t, e, "twins/model:v1"), dst, client.PullOptions{}); err != nil {
						t.Fatal(err)
					}
					sameTree(t, src, dst)
					if left, _ := os.ReadDir(filepath.Join(dst, ".modelx", "tmp")); len(left) != 0 {
						t.Fatalf("temp files left: %v", left)
					}
				})
			}
		})
	}
}

// TestPushRefusesReservedNames: a file whose name a manifest may not hold
// (".GIT", git's short name, a bidirectional control character) fails the
// push before anything is uploaded, naming the file and the .modelxignore
// way out; .git itself (a directory, or a worktree's .git file) and nested
// .modelx state directories are left out, as the root's always were.
func TestPushRefusesReservedNames(t *testing.T) {
	e := envs(t)[0]
	ctx := context.Background()
	for _, tc := range []struct{ name, file, refused, ignore string }{
		{"upper-case-git", ".GIT/config", ".GIT/", ".GIT/"},
		{"mixed-case-nested", "sub/.Git/hooks/post-checkout", "sub/.Git/", ".Git/"},
		{"short-name", "GIT~1/hooks/pre-commit", "GIT~1/", "GIT~1/"},
		{"trailing-dot", ".git./config", ".git./", ".git./"},
		{"state-dir-case", ".MODELX/cache.json", ".MODELX/", ".MODELX/"},
		{"bidi", "invoice\u202egpj.exe", "invoice\u202egpj.exe", "invoice*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			write(t, src, "modelx.yaml", []byte("description: reserved\n"), 0o644)
			write(t, src, "weights.bin", random(95, 64<<10), 0o644)
			write(t, src, tc.file, []byte("[core]\n"), 0o644)
			progress := &countingProgress{}
			c := newClient(client.Options{Progress: progress})
			_, err := c.Push(ctx, ref(t, e, "reserved/"+strings.ToLower(strings.ReplaceAll(tc.name, "-", ""))+":v1"), src)
			// A refused directory is named once, not file by file.
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.refused)) || !strings.Contains(err.Error(), client.IgnoreFile) {
				t.Fatalf("push: %v; want an error naming %q and %s", err, tc.refused, client.IgnoreFile)
			}
			if n := progress.started.Load(); n != 0 {
				t.Fatalf("%d uploads started before the push failed", n)
			}
			write(t, src, client.IgnoreFile, []byte(tc.ignore+"\n"), 0o644)
			if _, err := c.Push(ctx, ref(t, e, "reserved/ignored:"+tc.name), src); err != nil {
				t.Fatalf("push with %q in %s: %v", tc.ignore, client.IgnoreFile, err)
			}
		})
	}

	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: git worktree\n"), 0o644)
	write(t, src, ".git", []byte("gitdir: /elsewhere/.git/worktrees/x\n"), 0o644)
	write(t, src, "sub/.git/HEAD", []byte("ref: main\n"), 0o644)
	write(t, src, "sub/.modelx/cache.json", []byte("{}"), 0o644)
	write(t, src, "sub/file.txt", []byte("kept"), 0o644)
	c := newClient(client.Options{})
	res, err := c.Push(ctx, ref(t, e, "reserved/worktree:v1"), src)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 2 {
		t.Fatalf("pushed %d files, want modelx.yaml and sub/file.txt", res.Files)
	}
	dst := t.TempDir()
	if _, err := c.Pull(ctx, ref(t, e, "reserved/worktree:v1"), dst, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := tree(t, dst); len(got) != 2 || got["sub/file.txt"] == "" {
		t.Fatalf("pulled %v", keys(got))
	}
}

// countingProgress counts the transfers started.
type countingProgress struct{ started atomic.Int64 }

func (c *countingProgress) Plan(int64, int64)                  {}
func (c *countingProgress) Start(string, int64) client.Tracker { c.started.Add(1); return c }
func (c *countingProgress) Add(int64)                          {}
func (c *countingProgress) Skip(int64)                         {}
func (c *countingProgress) Done(error)                         {}

// tarEntry is one entry of a crafted archive; raw, if set, replaces the
// entry's type flag in its header block after it is written (how a PAX
// header of one's own is made: tar.Writer will not).
type tarEntry struct {
	hdr  tar.Header
	body []byte
	raw  byte
}

// craftTarGz writes entries as a gzipped tar.
func craftTarGz(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, e := range entries {
		at := tarBuf.Len()
		h := e.hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if e.raw != 0 { // the header block is the last written
			block := tarBuf.Bytes()[tarBuf.Len()-512:]
			if tarBuf.Len()-512 < at {
				t.Fatal("no header block")
			}
			block[156] = e.raw
			copy(block[148:156], "        ")
			var sum int
			for _, b := range block {
				sum += int(b)
			}
			copy(block[148:156], fmt.Sprintf("%06o\x00 ", sum))
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	gz.Write(tarBuf.Bytes())
	gz.Close()
	return buf.Bytes()
}

// paxHeaders returns n PAX extended headers of about 1 MB each, entries
// that claim no size: tar.Reader reads them as part of the next entry's
// header.
func paxHeaders(n int) []tarEntry {
	value := strings.Repeat("a", 1_000_000)
	record := " comment=" + value + "\n"
	record = fmt.Sprint(len(record)+7) + record // the length counts its own 7 digits
	var out []tarEntry
	for i := range n {
		out = append(out, tarEntry{hdr: tar.Header{Name: fmt.Sprintf("pax%d", i), Typeflag: tar.TypeReg}, body: []byte(record), raw: tar.TypeXHeader})
	}
	return out
}

// TestLegacyArchiveBounds serves crafted legacy directory archives from a
// real registry. The tame ones are extracted (a very compressible one
// too); each hostile one (decompression bombs, too many entries, entries
// that escape, links, devices, .git, names twice) fails the pull with a
// clear error, and nothing of it is written, inside the directory or out.
func TestLegacyArchiveBounds(t *testing.T) {
	e := envs(t)[0]
	ctx := context.Background()
	c := newClient(client.Options{})
	api := c.API(e.url)
	put := blobPutter(t, api, "old", "bounds")
	config := []byte("description: legacy\n")
	configDigest := put(config)
	reg := func(name string, body []byte) tarEntry {
		return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644}, body: body}
	}
	dir := func(name string) tarEntry {
		return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}}
	}
	many := func(n int, size int) []tarEntry {
		var out []tarEntry
		for i := range n {
			out = append(out, reg(fmt.Sprintf("f%05d", i), make([]byte, size)))
		}
		return out
	}
	// The bounds, lowered so that the test stays small: 2,000 entries,
	// 4 MiB, or 100 times the archive's size.
	defer client.SetLegacyBounds(2000, 4<<20, 100)()
	for _, tc := range []struct {
		name    string
		entries []tarEntry
		want    string // "" means extracted
	}{
		{"tame", []tarEntry{dir("./"), dir("sub/"), reg("vocab.txt", []byte("a b c")), reg("./sub/merges.txt", []byte("x y"))}, ""},
		{"compressible", []tarEntry{reg("zeros.bin", make([]byte, 3<<20))}, ""}, // 1000:1, under the 4 MiB floor
		{"bomb-one-file", []tarEntry{reg("zeros.bin", make([]byte, 64<<20))}, "expands past"},
		{"bomb-many-files", many(200, 128<<10), "expands past"},
		{"bomb-in-pax-headers", append(paxHeaders(8), reg("ok.txt", []byte("ok"))), "expands past"}, // tar.Reader reads them all in one Next
		{"too-many-entries", many(2001, 0), "more than 2000 entries"},
		{"dot-dot", []tarEntry{reg("ok.txt", []byte("fine")), reg("../../escape.txt", []byte("bad"))}, "outside"},
		{"dot-dot-inside", []tarEntry{reg("a/../../escape.txt", []byte("bad"))}, "outside"},
		{"absolute", []tarEntry{reg("/tmp/escape.txt", []byte("bad"))}, "outside"},
		{"symlink", []tarEntry{reg("ok.txt", []byte("fine")), {hdr: tar.Header{Name: "ln", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}}}, "symbolic link"},
		{"symlink-then-file", []tarEntry{{hdr: tar.Header{Name: "sub", Typeflag: tar.TypeSymlink, Linkname: "../../outside"}}, reg("sub/x.txt", []byte("bad"))}, "symbolic link"},
		{"hardlink", []tarEntry{reg("ok.txt", []byte("fine")), {hdr: tar.Header{Name: "hl", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}}}, "hard link"},
		{"device", []tarEntry{{hdr: tar.Header{Name: "null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}}}, "character device"},
		{"fifo", []tarEntry{{hdr: tar.Header{Name: "pipe", Typeflag: tar.TypeFifo}}}, "named pipe"},
		{"git-hook", []tarEntry{reg("ok.txt", []byte("fine")), reg(".git/hooks/post-checkout", []byte("#!/bin/sh\ntouch pwned\n"))}, `".git"`},
		{"git-upper", []tarEntry{reg("sub/.GIT/config", []byte("[core]"))}, "reserved"},
		{"bidi", []tarEntry{reg("a\u202eb.txt", []byte("x"))}, "U+202E"},
		{"twice", []tarEntry{reg("a.txt", []byte("one")), reg("./a.txt", []byte("two"))}, "twice"},
		{"file-and-dir", []tarEntry{reg("a", []byte("one")), reg("a/b.txt", []byte("two"))}, "is a file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			archive := craftTarGz(t, tc.entries)
			weights := []byte("weights of " + tc.name)
			m := fmt.Sprintf(`{"mediaType":%q,"config":{"name":"modelx.yaml","mediaType":%q,"digest":%q,"size":%d,"mode":420},
				"blobs":[{"name":"model.bin","mediaType":%q,"digest":%q,"size":%d,"mode":420},
				{"name":"tokenizer","mediaType":%q,"digest":%q,"size":%d,"mode":2147484141}]}`,
				spec.MediaTypeManifest, spec.MediaTypeConfig, configDigest, len(config),
				spec.MediaTypeFile, put(weights), len(weights),
				spec.MediaTypeDirectoryTarGz, put(archive), len(archive))
			if _, err := api.PutManifest(ctx, "old", "bounds", tc.name, []byte(m)); err != nil {
				t.Fatal(err)
			}
			parent := t.TempDir()
			dst := filepath.Join(parent, "model")
			if err := os.Mkdir(filepath.Join(parent, "outside"), 0o755); err != nil {
				t.Fatal(err)
			}
			_, err := c.Pull(ctx, ref(t, e, "old/bounds:"+tc.name), dst, client.PullOptions{})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				for _, en := range tc.entries {
					if en.hdr.Typeflag == tar.TypeReg {
						got, err := os.ReadFile(filepath.Join(dst, "tokenizer", filepath.FromSlash(en.hdr.Name)))
						if err != nil || !bytes.Equal(got, en.body) {
							t.Fatalf("%s: %d bytes, %v", en.hdr.Name, len(got), err)
						}
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("pull: %v; want an error containing %q", err, tc.want)
			}
			t.Logf("refused: %v", err)
			// The archive is checked before anything is written, so the
			// directory the pull created is gone again, .modelx and all.
			if entries, _ := os.ReadDir(parent); len(entries) != 1 || entries[0].Name() != "outside" {
				t.Fatalf("written next to the directory, or the refused pull left its directory: %v", entries)
			}
			if entries, _ := os.ReadDir(filepath.Join(parent, "outside")); len(entries) != 0 {
				t.Fatalf("written outside: %v", entries)
			}
		})
	}
}

// TestPushOverManifestNowRefused: a tag whose manifest this client refuses
// (stored before the rules tightened: it names a .git file) can still be
// pushed over; the push only loses its shortcut of skipping the blobs that
// manifest names.
func TestPushOverManifestNowRefused(t *testing.T) {
	st, err := fsstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := registry.New(st, registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	d := digest.FromString("x")
	old := fmt.Sprintf(`{"schemaVersion":1,"config":{"name":"modelx.yaml","digest":%q,"size":1},"blobs":[{"name":".git","mediaType":%q,"digest":%q,"size":1}]}`, d, spec.MediaTypeFile, d)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/old/model/manifests/v1") {
			w.Header().Set(spec.DigestHeader, string(digest.FromString(old)))
			w.Write([]byte(old))
			return
		}
		reg.Handler().ServeHTTP(w, r)
	}))
	defer srv.Close()
	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: replaced\n"), 0o644)
	write(t, src, "weights.bin", random(96, 64<<10), 0o644)
	c := newClient(client.Options{})
	if _, err := c.Pull(context.Background(), ref(t, env{url: srv.URL}, "old/model:v1"), t.TempDir(), client.PullOptions{}); err == nil || !strings.Contains(err.Error(), `".git"`) {
		t.Fatalf("pull of the old manifest: %v; want it refused for its .git file", err)
	}
	res, err := c.Push(context.Background(), ref(t, env{url: srv.URL}, "old/model:v1"), src)
	if err != nil {
		t.Fatalf("push over a manifest the client refuses: %v", err)
	}
	if res.BlobsTransferred == 0 {
		t.Fatalf("push %+v sent nothing", res)
	}
}

// TestRegistryRefusesManifests: the registry refuses, on manifest PUT, what
// a pull would refuse: reserved names, bidirectional controls, keys that
// decoders read differently. Its error names the problem.
func TestRegistryRefusesManifests(t *testing.T) {
	e := envs(t)[0]
	ctx := context.Background()
	api := newClient(client.Options{}).API(e.url)
	data := []byte("x")
	d := digest.FromBytes(data)
	if _, err := api.PutBlob(ctx, "refuse", "model", d, 1, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }); err != nil {
		t.Fatal(err)
	}
	doc := func(blob string) string {
		return fmt.Sprintf(`{"schemaVersion":1,"config":{"name":"modelx.yaml","digest":%q,"size":1},"blobs":[%s]}`, d, blob)
	}
	file := func(name, extra string) string {
		return fmt.Sprintf(`{"name":%q,"mediaType":%q,"digest":%q,"size":1%s}`, name, spec.MediaTypeFile, d, extra)
	}
	if _, err := api.PutManifest(ctx, "refuse", "model", "ok", []byte(doc(file("a.bin", `,"future":1`)))); err != nil {
		t.Fatalf("a valid manifest: %v", err)
	}
	for _, tc := range []struct{ name, doc, want string }{
		{"git-hook", doc(file(".git/hooks/post-checkout", "")), `".git"`},
		{"git-upper", doc(file("sub/.GIT/config", "")), `".GIT"`},
		{"git-short", doc(file("GIT~1/config", "")), `"GIT~1"`},
		{"state", doc(file(".Modelx/cache.json", "")), `".Modelx"`},
		{"bidi", doc(file("a\u202eb", "")), "U+202E"},
		{"name-twice", doc(file("a.bin", `,"name":"b.bin"`)), `key "name" twice in blobs[0]`},
		{"name-case", doc(file("a.bin", `,"NAME":"b.bin"`)), `key "NAME" in blobs[0]`},
		{"utf8", doc(file("a.bin", `,"x":"`+"\xff"+`"`)), "UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := api.PutManifest(ctx, "refuse", "model", "v1", []byte(tc.doc))
			if client.Code(err) != spec.ErrorManifestInvalid || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("PUT: %v; want MANIFEST_INVALID containing %q", err, tc.want)
			}
		})
	}
}
