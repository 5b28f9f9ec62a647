package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/client/chunker"
	"modelx.io/modelx/client/pack"
	"modelx.io/modelx/spec"
)

// Unit tests of the pull's three parts, without a registry: the planner
// and the tree writer over a temp directory, the puller over memBlobs.

// memBlobs is a blobFetcher over blobs held in memory, which records the
// ranges asked for.
type memBlobs struct {
	mu    sync.Mutex
	blobs map[digest.Digest][]byte
	asked []string // "digest offset length"
}

func (m *memBlobs) put(data []byte) digest.Digest {
	d := digest.FromBytes(data)
	if m.blobs == nil {
		m.blobs = map[digest.Digest][]byte{}
	}
	m.blobs[d] = data
	return d
}

// FetchBlob implements blobFetcher.
func (m *memBlobs) FetchBlob(_ context.Context, d digest.Digest, offset, length int64) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.asked = append(m.asked, fmt.Sprintf("%s %d %d", d.Encoded()[:8], offset, length))
	data, ok := m.blobs[d]
	if !ok || offset > int64(len(data)) {
		return nil, fmt.Errorf("no blob %s", d)
	}
	data = data[offset:]
	if length >= 0 && length < int64(len(data)) {
		data = data[:length]
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

func wholeFile(name string, data []byte) target {
	d := digest.FromBytes(data)
	return target{name: name, size: int64(len(data)), mode: 0o640, digest: d,
		blob: &spec.Descriptor{Name: name, MediaType: spec.MediaTypeFile, Digest: d, Size: int64(len(data)), Mode: 0o640}}
}

// chunkedFile cuts data at cuts into chunks, stored in blobs.
func chunkedTarget(blobs *memBlobs, name string, data []byte, cuts ...int) target {
	var chunks []spec.Chunk
	start := 0
	for _, end := range append(cuts, len(data)) {
		chunks = append(chunks, spec.Chunk{Digest: blobs.put(data[start:end]), Size: int64(end - start)})
		start = end
	}
	d := spec.ChunkListDigest(chunks)
	return target{name: name, size: int64(len(data)), mode: 0o644, digest: d,
		blob: &spec.Descriptor{Name: name, MediaType: spec.MediaTypeChunkedFile, Digest: d, Size: int64(len(data)), Chunks: chunks}}
}

// packedTargets packs files into one pack, stored in blobs.
func packedTargets(t *testing.T, blobs *memBlobs, files map[string]string) []target {
	t.Helper()
	var entries []pack.Entry
	for _, name := range slices.Sorted(maps.Keys(files)) {
		entries = append(entries, pack.Entry{Name: name, Mode: 0o644, Size: int64(len(files[name]))})
	}
	data, recs, err := pack.Build(nil, entries, func(name string) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(files[name])), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	blob := &spec.Descriptor{Name: "pack", MediaType: spec.MediaTypePack, Digest: blobs.put(data), Size: int64(len(data)), Files: recs}
	var out []target
	for i := range blob.Files {
		f := &blob.Files[i]
		out = append(out, target{name: f.Name, size: f.Size, mode: f.Mode, digest: f.Digest, blob: blob, packed: f})
	}
	return out
}

// newTestPuller pulls into dir from blobs.
func newTestPuller(t *testing.T, dir string, blobs blobFetcher) *puller {
	t.Helper()
	cache := loadCache(dir, chunker.DefaultParams)
	tree := newTreeWriter(dir, cache)
	if err := os.MkdirAll(tree.tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	return &puller{blobs: blobs, tree: tree, planner: &planner{tree: tree, cache: cache}, cache: cache,
		progress: noProgress{}, concurrency: 4, chunking: chunker.DefaultParams, res: &PullResult{}, legacy: map[string]*legacyArchive{}}
}

func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(full string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			if d != nil && d.Name() == stateDir {
				return filepath.SkipDir
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(full)
		rel, _ := filepath.Rel(dir, full)
		got[filepath.ToSlash(rel)] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestGroupFetches(t *testing.T) {
	blobs := &memBlobs{}
	a := wholeFile("a", []byte("same"))
	b := wholeFile("b", []byte("same"))
	c := chunkedTarget(blobs, "c", []byte("chunked content"), 4)
	d := chunkedTarget(blobs, "d", []byte("chunked content"), 4)
	// A chunked file whose digest equals a whole file's is not its copy.
	e := wholeFile("e", []byte("x"))
	e.digest = c.digest
	packed := packedTargets(t, blobs, map[string]string{"p/1": "one", "p/2": "two"})
	legacy := target{name: "old", blob: &spec.Descriptor{MediaType: spec.MediaTypeDirectoryTarGz}}
	plan := groupFetches([]target{a, packed[0], b, c, legacy, d, e, packed[1]})
	var files []string
	for _, f := range plan.files {
		var copies []string
		for _, c := range f.copies {
			copies = append(copies, c.name)
		}
		files = append(files, f.target.name+"+"+strings.Join(copies, ","))
	}
	if want := []string{"a+b", "c+d", "old+", "e+"}; !slices.Equal(files, want) {
		t.Errorf("files %v, want %v", files, want)
	}
	if len(plan.chunked) != 1 || plan.chunked[0].name != "c" {
		t.Errorf("chunked %v, want c", plan.chunked)
	}
	if len(plan.packs) != 1 || len(plan.packs[0]) != 2 {
		t.Errorf("packs %v, want one of two files", plan.packs)
	}
}

func TestPlannerCompare(t *testing.T) {
	dir := t.TempDir()
	same := wholeFile("same.txt", []byte("as in the version"))
	missing := wholeFile("sub/missing.txt", []byte("not there yet"))
	differs := wholeFile("differs.txt", []byte("the version's"))
	dirInTheWay := wholeFile("dir", []byte("a file here"))
	for name, data := range map[string]string{"same.txt": "as in the version", "differs.txt": "the user's!!!", "dir/user.txt": "mine"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	targets := []target{same, missing, differs, dirInTheWay}
	p := newTestPuller(t, dir, &memBlobs{})
	_, err := p.planner.compare(targets)
	var conflict *ConflictError
	if !errors.As(err, &conflict) {
		t.Fatalf("compare: %v, want a *ConflictError", err)
	}
	var paths []string
	for _, c := range conflict.Conflicts {
		paths = append(paths, fmt.Sprintf("%s:%v", c.Path, c.Forceable))
	}
	if want := []string{"differs.txt:true", "dir:false"}; !slices.Equal(paths, want) {
		t.Fatalf("conflicts %v, want %v", paths, want)
	}

	// Forced, and without the directory: the differing file is replaced,
	// the one that holds the version is not fetched.
	p = newTestPuller(t, dir, &memBlobs{})
	p.planner.force = true
	plan, err := p.planner.compare([]target{same, missing, differs})
	if err != nil {
		t.Fatal(err)
	}
	var todo []string
	for _, t := range plan.todo {
		todo = append(todo, t.name)
	}
	if want := []string{"sub/missing.txt", "differs.txt"}; !slices.Equal(todo, want) {
		t.Errorf("todo %v, want %v", todo, want)
	}
	if plan.skippedBlobs != 1 || plan.skippedBytes != same.size {
		t.Errorf("skipped %d blobs, %d bytes; want 1, %d", plan.skippedBlobs, plan.skippedBytes, same.size)
	}
	if cf, ok := p.cache.entry("same.txt"); !ok || cf.Digest != same.digest {
		t.Errorf("the file found holding the version was not recorded: %+v", cf)
	}
	if len(readTree(t, dir)) != 3 {
		t.Errorf("the plan wrote: %v", readTree(t, dir))
	}
}

func TestPlannerRefusesLinks(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	p := newTestPuller(t, dir, &memBlobs{})
	for _, tc := range []struct{ name, want string }{
		{"link/file", "symbolic link"},
		{"../escape", "refusing"},
		{".modelx/cache.json", "refusing"},
	} {
		p.planner.force = true
		if _, err := p.planner.compare([]target{wholeFile(tc.name, []byte("x"))}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

// TestVerifyLocalReportsOpenErrors: a file that cannot be opened is an
// error, not a file that differs; one that is gone is not the target.
func TestVerifyLocalReportsOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := newTestPuller(t, dir, &memBlobs{})
	if _, err := p.planner.verifyLocal(wholeFile("file/inner", []byte("x"))); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("verifyLocal under a file: %v, want ENOTDIR", err)
	}
	if ok, err := p.planner.verifyLocal(wholeFile("gone", []byte("x"))); ok || err != nil {
		t.Errorf("verifyLocal of a missing file: %v, %v; want false, nil", ok, err)
	}
	if os.Geteuid() == 0 {
		return // root reads any file
	}
	if err := os.WriteFile(filepath.Join(dir, "locked"), []byte("CONTENT"), 0o000); err != nil {
		t.Fatal(err)
	}
	if _, err := p.planner.verifyLocal(wholeFile("locked", []byte("content"))); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("verifyLocal of an unreadable file: %v, want a permission error", err)
	}
}

func TestTreeWriter(t *testing.T) {
	for _, unnamed := range []bool{true, false} {
		t.Run(fmt.Sprintf("unnamed=%v", unnamed), func(t *testing.T) {
			if !unnamed {
				defer DisableUnnamedFiles()()
			}
			dir := t.TempDir()
			p := newTestPuller(t, dir, &memBlobs{})
			w := p.tree
			f := wholeFile("a/b/c.txt", []byte("hello"))
			if err := w.writeFileFrom(strings.NewReader("hello"), f); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(filepath.Join(dir, "a/b/c.txt"))
			if err != nil || fi.Mode().Perm() != 0o640 {
				t.Fatalf("placed file: %v, %v; want mode 0640", fi, err)
			}
			if cf, ok := w.cache.file("a/b/c.txt", fi); !ok || cf.Digest != f.digest {
				t.Errorf("not recorded in the cache: %+v", cf)
			}
			// Replaced atomically when the name is taken.
			g := wholeFile("a/b/c.txt", []byte("world"))
			if err := w.writeFileFrom(strings.NewReader("world"), g); err != nil {
				t.Fatal(err)
			}
			if got := readTree(t, dir); got["a/b/c.txt"] != "world" || len(got) != 1 {
				t.Errorf("tree %v", got)
			}
			if entries, _ := os.ReadDir(w.tmp); len(entries) != 0 {
				t.Errorf("temp files left: %v", entries)
			}
		})
	}
}

func TestTreeWriterSafety(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "taken/inner"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "taken/inner/known"), []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := newTestPuller(t, dir, &memBlobs{})
	w := p.tree
	for _, tc := range []struct{ name, want string }{
		{"link/x", "symbolic link"},
		{"../x", "refusing"},
		{"taken", "directory is in the way"},
	} {
		if err := w.writeFileFrom(strings.NewReader("x"), wholeFile(tc.name, []byte("x"))); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("written outside: %v", entries)
	}
	// A directory the plan let go is cleared, then replaced.
	w.allow(&pullPlan{clearDirs: map[string][]string{"taken": {"taken/inner/known"}}})
	if err := w.writeFileFrom(strings.NewReader("x"), wholeFile("taken", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	if got := readTree(t, dir)["taken"]; got != "x" {
		t.Fatalf("taken holds %q", got)
	}
}

// TestPullerDownload fetches every kind of target from memory: whole files
// (one with a copy), a chunked file, packed files, and a whole file whose
// partial download a killed pull left, which resumes.
func TestPullerDownload(t *testing.T) {
	dir := t.TempDir()
	blobs := &memBlobs{}
	whole := wholeFile("w.bin", bytes.Repeat([]byte("w"), 5000))
	blobs.put(bytes.Repeat([]byte("w"), 5000))
	copyOf := wholeFile("copy/w.bin", bytes.Repeat([]byte("w"), 5000))
	big := bytes.Repeat([]byte("0123456789"), 1000)
	resumed := wholeFile("resumed.bin", big)
	blobs.put(big)
	chunked := chunkedTarget(blobs, "c.bin", []byte(strings.Repeat("chunk", 2000)), 3000, 7000)
	packed := packedTargets(t, blobs, map[string]string{"small/1.json": "{}", "small/2.json": "[]"})
	p := newTestPuller(t, dir, blobs)
	if err := os.WriteFile(filepath.Join(p.tree.tmp, resumed.digest.Encoded()+partSuffix), big[:4000], 0o600); err != nil {
		t.Fatal(err)
	}
	todo := append([]target{whole, copyOf, resumed, chunked}, packed...)
	if err := p.download(context.Background(), todo); err != nil {
		t.Fatal(err)
	}
	got := readTree(t, dir)
	want := map[string]string{"w.bin": strings.Repeat("w", 5000), "copy/w.bin": strings.Repeat("w", 5000), "resumed.bin": string(big),
		"c.bin": strings.Repeat("chunk", 2000), "small/1.json": "{}", "small/2.json": "[]"}
	for name, data := range want {
		if got[name] != data {
			t.Errorf("%s: %d bytes, want %d", name, len(got[name]), len(data))
		}
	}
	if len(got) != len(want) {
		t.Errorf("tree has %d files, want %d", len(got), len(want))
	}
	if !slices.Contains(blobs.asked, fmt.Sprintf("%s 4000 6000", resumed.digest.Encoded()[:8])) {
		t.Errorf("the partial download was not resumed: asked %v", blobs.asked)
	}
	if p.res.BlobsTransferred != 6 || p.res.SkippedBytes != 4000 {
		t.Errorf("transferred %d blobs, skipped %d bytes; want 6 (whole, resumed, 3 chunks, pack), 4000", p.res.BlobsTransferred, p.res.SkippedBytes)
	}
}

// TestPullerRefusesWrongBytes: a blob whose bytes are not its digest, or
// that is longer than its size, is never placed.
func TestPullerRefusesWrongBytes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stored []byte
		want   string
	}{
		{"other bytes", []byte("HELLO"), "corrupt"},
		{"trailing bytes", []byte("hello, and more"), "size mismatch"},
		{"short", []byte("hel"), "size mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := wholeFile("f.txt", []byte("hello"))
			blobs := &memBlobs{blobs: map[digest.Digest][]byte{f.digest: tc.stored}}
			p := newTestPuller(t, dir, fullBlobs{blobs})
			err := p.download(context.Background(), []target{f})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("download: %v, want an error saying %q", err, tc.want)
			}
			if got := readTree(t, dir); len(got) != 0 {
				t.Fatalf("placed: %v", got)
			}
		})
	}
}

// fullBlobs answers every range with the whole blob, as a registry that
// ignores ranges does.
type fullBlobs struct{ *memBlobs }

func (f fullBlobs) FetchBlob(ctx context.Context, d digest.Digest, offset, _ int64) (io.ReadCloser, error) {
	return f.memBlobs.FetchBlob(ctx, d, offset, -1)
}
