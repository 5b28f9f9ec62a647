package client_test

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"modelx.io/modelx/client"
	"modelx.io/modelx/client/chunker"
	"modelx.io/modelx/internal/testenv"
)

// pushFiles pushes files (name → content) from a new directory as model
// and returns the directory.
func pushFiles(t *testing.T, c *client.Client, e env, model string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		write(t, dir, name, []byte(data), 0o644)
	}
	if _, err := c.Push(context.Background(), ref(t, e, model), dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// conflictsOf returns the paths of err's ConflictError, failing when err
// is none.
func conflictsOf(t *testing.T, err error) []client.Conflict {
	t.Helper()
	var ce *client.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("pull: %v; want a conflict", err)
	}
	return ce.Conflicts
}

func conflictPaths(cs []client.Conflict) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Path)
	}
	return out
}

// fileTree is tree without modes: name → content.
func fileTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name := range tree(t, dir) {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		out[name] = string(data)
	}
	return out
}

// TestPullRefusesUserFiles pulls into a directory holding the user's own
// files at paths of the version: a README.md and weights.bin that differ, a
// file where the version has a directory, and a modelx.yaml that is the
// same. The pull fails with every conflict listed, sorted, and writes
// nothing at all (not even .modelx: the whole tree, mtimes included, is as
// it was). Forced, it replaces them and leaves the user's other file alone.
func TestPullRefusesUserFiles(t *testing.T) {
	e := envs(t)[0]
	ctx := context.Background()
	c := newClient(client.Options{})
	version := map[string]string{
		"modelx.yaml":   "description: mine\n",
		"README.md":     "# the model\n",
		"weights.bin":   string(random(1, 300<<10)), // chunked
		"sub/conf.json": `{"a": 1}`,
	}
	pushFiles(t, c, e, "safe/model:v1", version)
	dst := t.TempDir()
	write(t, dst, "modelx.yaml", []byte(version["modelx.yaml"]), 0o644)
	write(t, dst, "README.md", []byte("# my own notes\n"), 0o644)
	write(t, dst, "weights.bin", random(2, 300<<10), 0o644) // same size, other bytes
	write(t, dst, "sub", []byte("a file where the version has a directory"), 0o644)
	write(t, dst, "notes.txt", []byte("mine, not in the version"), 0o644)
	old := time.Now().Add(-time.Hour)
	for _, p := range []string{"README.md", "weights.bin", "sub", "notes.txt", "modelx.yaml", "."} {
		os.Chtimes(filepath.Join(dst, p), old, old) // so that any write would show
	}
	before := testenv.Snapshot(t, dst)

	_, err := c.Pull(ctx, ref(t, e, "safe/model:v1"), dst, client.PullOptions{})
	cs := conflictsOf(t, err)
	if got, want := conflictPaths(cs), []string{"README.md", "sub", "weights.bin"}; !slices.Equal(got, want) {
		t.Fatalf("conflicts %v, want %v", got, want)
	}
	for _, c := range cs {
		if !c.Forceable || c.Reason == "" {
			t.Fatalf("conflict %+v: want a reason, and forceable", c)
		}
	}
	t.Logf("refused: %v", err)
	testenv.SameSnapshot(t, before, dst)

	res, err := c.Pull(ctx, ref(t, e, "safe/model:v1"), dst, client.PullOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	want := maps.Clone(version)
	want["notes.txt"] = "mine, not in the version"
	if got := fileTree(t, dst); !maps.Equal(got, want) {
		t.Fatalf("forced pull left %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	if after := testenv.Snapshot(t, dst); after["notes.txt"] != before["notes.txt"] {
		t.Fatal("the forced pull touched a file the version does not have")
	}
	if len(res.Stale) != 0 || len(res.Pruned) != 0 {
		t.Fatalf("stale %v, pruned %v: the user's files are not modelx's", res.Stale, res.Pruned)
	}
}

// TestPullDirectoryInTheWay: a directory where the version has a file is
// a conflict; one that holds a file of the user's stays even forced, and
// the forced pull writes nothing; an empty one goes when forced.
func TestPullDirectoryInTheWay(t *testing.T) {
	e := envs(t)[0]
	ctx := context.Background()
	c := newClient(client.Options{})
	pushFiles(t, c, e, "safe/dirs:v1", map[string]string{"modelx.yaml": "description: dirs\n", "a.txt": "a", "b.txt": "b"})
	dst := t.TempDir()
	write(t, dst, "a.txt/mine.txt", []byte("mine"), 0o644)
	if err := os.MkdirAll(filepath.Join(dst, "b.txt", "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := testenv.Snapshot(t, dst)
	for _, force := range []bool{false, true} {
		_, err := c.Pull(ctx, ref(t, e, "safe/dirs:v1"), dst, client.PullOptions{Force: force})
		cs := conflictsOf(t, err)
		want := []client.Conflict{{Path: "a.txt", Reason: "a directory is in the way, holding files modelx did not write"}}
		if !force {
			want = append(want, client.Conflict{Path: "b.txt", Reason: "an empty directory is in the way", Forceable: true})
		}
		if !slices.Equal(cs, want) {
			t.Fatalf("force=%v: conflicts %+v, want %+v", force, cs, want)
		}
		testenv.SameSnapshot(t, before, dst)
	}
	os.RemoveAll(filepath.Join(dst, "a.txt"))
	if _, err := c.Pull(ctx, ref(t, e, "safe/dirs:v1"), dst, client.PullOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if got := fileTree(t, dst); got["b.txt"] != "b" || len(got) != 3 {
		t.Fatalf("pulled %v", got)
	}
}

// TestPullReplacesWhatModelxWrote pulls v2 over v1: the files modelx wrote
// and nobody changed are replaced without Force, also where a file becomes
// a directory and a directory a file, and also a file only touched (same
// bytes, new mtime: its content is checked against the record). A file the user edited since is a conflict, and the
// pull writes nothing.
func TestPullReplacesWhatModelxWrote(t *testing.T) {
	e := envs(t)[0]
	ctx := context.Background()
	c := newClient(client.Options{})
	v1 := map[string]string{
		"modelx.yaml":   "description: v1\n",
		"weights.bin":   string(random(3, 300<<10)),
		"small.json":    `{"v": 1}`,
		"touched.txt":   "v1 bytes",
		"edited.txt":    "v1 text",
		"data":          "a file in v1",
		"tok/vocab.txt": "a b c",
	}
	v2 := map[string]string{
		"modelx.yaml": "description: v2\n",
		"weights.bin": string(random(4, 300<<10)),
		"small.json":  `{"v": 2}`,
		"touched.txt": "v2 bytes",
		"edited.txt":  "v2 text",
		"data/x.txt":  "a directory in v2",
		"tok":         "a file in v2",
	}
	pushFiles(t, c, e, "safe/versions:v1", v1)
	pushFiles(t, c, e, "safe/versions:v2", v2)
	dst := t.TempDir()
	if _, err := c.Pull(ctx, ref(t, e, "safe/versions:v1"), dst, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(dst, "touched.txt"), later, later)
	write(t, dst, "edited.txt", []byte("the user's edit"), 0o644)
	before := testenv.Snapshot(t, dst)
	_, err := c.Pull(ctx, ref(t, e, "safe/versions:v2"), dst, client.PullOptions{})
	cs := conflictsOf(t, err)
	if want := []client.Conflict{{Path: "edited.txt", Reason: "changed since modelx last pulled or pushed it", Forceable: true}}; !slices.Equal(cs, want) {
		t.Fatalf("conflicts %+v, want %+v", cs, want)
	}
	testenv.SameSnapshot(t, before, dst)

	write(t, dst, "edited.txt", []byte(v1["edited.txt"]), 0o644) // the edit undone: same bytes, new mtime
	res, err := c.Pull(ctx, ref(t, e, "safe/versions:v2"), dst, client.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := fileTree(t, dst); !maps.Equal(got, v2) {
		t.Fatalf("v2 over v1 left %v", slices.Sorted(maps.Keys(got)))
	}
	if len(res.Stale) != 0 {
		t.Fatalf("stale %v; v2 replaced every file of v1", res.Stale)
	}
	// And back: v1 over v2 needs no Force either.
	if _, err := c.Pull(ctx, ref(t, e, "safe/versions:v1"), dst, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := fileTree(t, dst); !maps.Equal(got, v1) {
		t.Fatalf("v1 over v2 left %v", slices.Sorted(maps.Keys(got)))
	}
}

// TestPullOverPushedDirectory: a directory a version was pushed from takes
// a newer version without Force (modelx.yaml included), as long as nobody
// changed its files since the push; a file changed after the push is a
// conflict.
func TestPullOverPushedDirectory(t *testing.T) {
	e := envs(t)[0]
	ctx := context.Background()
	c := newClient(client.Options{})
	v1 := map[string]string{"modelx.yaml": "description: pushed\n", "weights.bin": string(random(5, 200<<10)), "a.txt": "a1", "b.txt": "b1"}
	v2 := map[string]string{"modelx.yaml": "description: pushed, v2\n", "weights.bin": string(random(6, 200<<10)), "a.txt": "a2", "b.txt": "b2"}
	work := pushFiles(t, c, e, "safe/pushed:v1", v1)
	pushFiles(t, c, e, "safe/pushed:v2", v2) // a colleague's
	write(t, work, "b.txt", []byte("edited after the push"), 0o644)
	before := testenv.Snapshot(t, work)
	_, err := c.Pull(ctx, ref(t, e, "safe/pushed:v2"), work, client.PullOptions{})
	if got := conflictPaths(conflictsOf(t, err)); !slices.Equal(got, []string{"b.txt"}) {
		t.Fatalf("conflicts %v, want [b.txt]", got)
	}
	testenv.SameSnapshot(t, before, work)
	write(t, work, "b.txt", []byte(v1["b.txt"]), 0o644)
	if _, err := c.Pull(ctx, ref(t, e, "safe/pushed:v2"), work, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := fileTree(t, work); !maps.Equal(got, v2) {
		t.Fatalf("pulled %v", got)
	}
}

// TestPullPrune: files modelx wrote that the new version does not have are
// reported; Prune removes those unchanged, and the directories they leave
// empty, and keeps (and reports, once) one the user edited, the user's own
// files, and a directory that still holds one. A selective pull prunes only
// within its selection.
func TestPullPrune(t *testing.T) {
	e := envs(t)[0]
	ctx := context.Background()
	c := newClient(client.Options{})
	pushFiles(t, c, e, "safe/prune:v1", map[string]string{
		"modelx.yaml": "description: v1\n", "a.txt": "a", "b.txt": "b", "edited.txt": "e",
		"gone/deep/c.txt": "c", "shared/d.txt": "d", "big.bin": string(random(7, 300<<10)),
	})
	pushFiles(t, c, e, "safe/prune:v2", map[string]string{"modelx.yaml": "description: v2\n", "a.txt": "a2"})
	dst := t.TempDir()
	if _, err := c.Pull(ctx, ref(t, e, "safe/prune:v1"), dst, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	write(t, dst, "edited.txt", []byte("the user's edit"), 0o644)
	write(t, dst, "mine.txt", []byte("mine"), 0o644)
	write(t, dst, "shared/mine.txt", []byte("mine too"), 0o644)

	res, err := c.Pull(ctx, ref(t, e, "safe/prune:v2"), dst, client.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stale := []string{"b.txt", "big.bin", "edited.txt", "gone/deep/c.txt", "shared/d.txt"}
	if !slices.Equal(res.Stale, stale) || len(res.Pruned) != 0 {
		t.Fatalf("without Prune: stale %v, pruned %v; want stale %v", res.Stale, res.Pruned, stale)
	}
	if got := fileTree(t, dst); len(got) != 9 {
		t.Fatalf("without Prune a file went: %v", slices.Sorted(maps.Keys(got)))
	}

	res, err = c.Pull(ctx, ref(t, e, "safe/prune:v2"), dst, client.PullOptions{Prune: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"b.txt", "big.bin", "gone/deep/c.txt", "shared/d.txt"}; !slices.Equal(res.Pruned, want) {
		t.Fatalf("pruned %v, want %v", res.Pruned, want)
	}
	if !slices.Equal(res.Stale, []string{"edited.txt"}) {
		t.Fatalf("kept %v, want [edited.txt]", res.Stale)
	}
	want := map[string]string{"modelx.yaml": "description: v2\n", "a.txt": "a2", "edited.txt": "the user's edit", "mine.txt": "mine", "shared/mine.txt": "mine too"}
	if got := fileTree(t, dst); !maps.Equal(got, want) {
		t.Fatalf("after Prune: %v, want %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(dst, "gone")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the directory the pruned files left empty is still there: %v", err)
	}
	res, err = c.Pull(ctx, ref(t, e, "safe/prune:v2"), dst, client.PullOptions{Prune: true})
	if err != nil || len(res.Stale)+len(res.Pruned) != 0 {
		t.Fatalf("prune again: %+v, %v; the edited file is the user's now", res, err)
	}

	// Selective: only what --file matches is pruned.
	pushFiles(t, c, e, "safe/prune:v3", map[string]string{"modelx.yaml": "description: v3\n", "x.json": "x", "y.txt": "y"})
	pushFiles(t, c, e, "safe/prune:v4", map[string]string{"modelx.yaml": "description: v4\n", "z.json": "z"})
	sel := t.TempDir()
	if _, err := c.Pull(ctx, ref(t, e, "safe/prune:v3"), sel, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err = c.Pull(ctx, ref(t, e, "safe/prune:v4"), sel, client.PullOptions{Files: []string{"*.json"}, Prune: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Pruned, []string{"x.json"}) || len(res.Stale) != 0 {
		t.Fatalf("selective prune: pruned %v, stale %v; want only x.json pruned", res.Pruned, res.Stale)
	}
	if got := fileTree(t, sel); got["y.txt"] != "y" || got["z.json"] != "z" || len(got) != 3 {
		t.Fatalf("selective prune left %v", got)
	}
}

// TestFailedPullIntoNewDirectory: a pull that fails in a directory it
// created leaves no .modelx there (nor the directory, when it placed
// nothing), unless partial downloads are worth resuming: an interrupted
// download keeps them, and the retry resumes.
func TestFailedPullIntoNewDirectory(t *testing.T) {
	e := envs(t)[0]
	ctx := context.Background()
	c := newClient(client.Options{})
	pushFiles(t, c, e, "safe/fail:v1", map[string]string{"modelx.yaml": "description: fail\n", "weights.bin": string(random(8, 4<<20))})

	// Refused before any write: nothing is left, not even the directory.
	parent := t.TempDir()
	dst := filepath.Join(parent, "new", "model")
	if _, err := c.Pull(ctx, ref(t, e, "safe/fail:v1"), dst, client.PullOptions{Files: []string{"nothing*"}}); err == nil {
		t.Fatal("a pull of no file succeeded")
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Fatalf("a refused pull left %v", entries)
	}

	// Interrupted mid-download: the parts stay, and the retry resumes.
	ctx2, cancel := context.WithCancel(ctx)
	stopper := &cancelAfter{cancel: cancel}
	stopper.n.Store(2 << 20) // half the bytes: some chunks are stored by then
	_, err := newClient(client.Options{Concurrency: 2, Progress: stopper}).Pull(ctx2, ref(t, e, "safe/fail:v1"), dst, client.PullOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted pull: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dst, ".modelx", "tmp")); err != nil {
		t.Fatalf("the interrupted pull kept no partial download: %v", err)
	}
	res, err := c.Pull(ctx, ref(t, e, "safe/fail:v1"), dst, client.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.DownloadedBytes >= 4<<20 {
		t.Fatalf("the retry downloaded %d bytes: nothing was resumed", res.DownloadedBytes)
	}

	// A corrupt blob, nothing to resume: no .modelx is left behind.
	corrupt := filepath.Join(parent, "corrupt")
	whole := newClient(client.Options{SmallFileThreshold: 1 << 10, Chunker: chunker.Params{Min: 256 << 10, Avg: 512 << 10, Max: 1 << 20}})
	pushFiles(t, whole, e, "safe/fail:v2", map[string]string{"modelx.yaml": "description: corrupt\n", "w.bin": string(random(9, 100<<10))})
	corruptBlob(t, e, 100<<10)
	if _, err := whole.Pull(ctx, ref(t, e, "safe/fail:v2"), corrupt, client.PullOptions{}); err == nil {
		t.Fatal("the pull of a corrupt blob succeeded")
	}
	if _, err := os.Stat(filepath.Join(corrupt, ".modelx")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a failed pull left .modelx in the directory it created: %v", err)
	}
}

// corruptBlob flips a byte of the stored blob of the given size (fs
// backend).
func corruptBlob(t *testing.T, e env, size int64) {
	t.Helper()
	var found string
	filepath.WalkDir(filepath.Join(e.dataDir, "blobs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, _ := d.Info(); fi.Size() == size {
				found = p
			}
		}
		return nil
	})
	if found == "" {
		t.Fatal("blob not found in storage")
	}
	data, err := os.ReadFile(found)
	if err != nil {
		t.Fatal(err)
	}
	data[size/2] ^= 0xff
	if err := os.WriteFile(found, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
