package client_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"modelx.io/modelx/client"
)

// TestPullReusesShiftedChunks pulls a new version of a chunked file over
// the old one after an edit shifted every later byte: the unchanged chunks
// are found by digest wherever they sit in local files, so only the new
// chunks are downloaded, whether the hash cache describes the old file,
// the old file must be chunked again, or the chunks sit in another file.
func TestPullReusesShiftedChunks(t *testing.T) {
	for _, e := range envs(t) {
		t.Run(e.name, func(t *testing.T) {
			ctx := context.Background()
			src := t.TempDir()
			write(t, src, "modelx.yaml", []byte("description: llm\n"), 0o644)
			var tensors [][]byte
			for i := range 8 {
				tensors = append(tensors, random(uint64(40+i), 256<<10))
			}
			tensors[5] = random(50, 48<<10)
			v1 := safetensorsLike(`{"a":[0,1]}`, tensors...)
			write(t, src, "model.safetensors", v1, 0o644)
			c := newClient(client.Options{})
			if _, err := c.Push(ctx, ref(t, e, "reuse/llm:v1"), src); err != nil {
				t.Fatal(err)
			}
			// Rewrite a small tensor and grow the header.
			tensors[5] = random(51, 48<<10)
			write(t, src, "model.safetensors", safetensorsLike(`{"a":[0,1],"metadata":{"step":"2000"}}`, tensors...), 0o640)
			v2, err := c.Push(ctx, ref(t, e, "reuse/llm:v2"), src)
			if err != nil {
				t.Fatal(err)
			}
			if v2.UploadedBytes*4 > int64(len(v1)) {
				t.Fatalf("the edit re-sent %d of %d bytes; the test needs a small edit", v2.UploadedBytes, len(v1))
			}
			want := map[string]map[string]string{"v2": tree(t, src)}
			// v3 adds a copy of v1's file under another name: its chunks
			// are all in the old local model.safetensors, which the same
			// pull replaces.
			write(t, src, "extra/copy.safetensors", v1, 0o644)
			v3, err := c.Push(ctx, ref(t, e, "reuse/llm:v3"), src)
			if err != nil {
				t.Fatal(err)
			}
			if v3.UploadedBytes != 0 {
				t.Fatalf("v3 uploaded %d bytes; its blobs should all be on the registry", v3.UploadedBytes)
			}
			want["v3"] = tree(t, src)
			for _, tc := range []struct {
				name    string
				tag     string
				prepare func(dir string)
				force   bool // without the cache, modelx no longer knows it wrote the old file
			}{
				{"cached", "v2", func(string) {}, false},
				{"uncached", "v2", func(dir string) { os.Remove(filepath.Join(dir, ".modelx", "cache.bin")) }, true},
				{"other-file", "v3", func(string) {}, false},
			} {
				t.Run(tc.name, func(t *testing.T) {
					dst := t.TempDir()
					if _, err := c.Pull(ctx, ref(t, e, "reuse/llm:v1"), dst, client.PullOptions{}); err != nil {
						t.Fatal(err)
					}
					tc.prepare(dst)
					res, err := c.Pull(ctx, ref(t, e, "reuse/llm:"+tc.tag), dst, client.PullOptions{Force: tc.force})
					if err != nil {
						t.Fatal(err)
					}
					if res.DownloadedBytes > v2.UploadedBytes || res.BlobsTransferred > v2.BlobsTransferred {
						t.Fatalf("pull over v1 downloaded %d bytes in %d blobs; only %d bytes in %d blobs are new",
							res.DownloadedBytes, res.BlobsTransferred, v2.UploadedBytes, v2.BlobsTransferred)
					}
					if got := tree(t, dst); !maps.Equal(got, want[tc.tag]) {
						t.Fatalf("pulled %v, want %v", keys(got), keys(want[tc.tag]))
					}
				})
			}
		})
	}
}

// TestPullReusedChunkVerified corrupts the old local file behind the hash
// cache's back (same size and mtime): the chunks copied from it fail their
// digest and are downloaded instead.
func TestPullReusedChunkVerified(t *testing.T) {
	e := envs(t)[0]
	ctx := context.Background()
	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: llm\n"), 0o644)
	tensors := [][]byte{random(60, 512<<10), random(61, 512<<10), random(62, 512<<10)}
	write(t, src, "model.safetensors", safetensorsLike(`{"a":[0,1]}`, tensors...), 0o644)
	c := newClient(client.Options{})
	if _, err := c.Push(ctx, ref(t, e, "verify/llm:v1"), src); err != nil {
		t.Fatal(err)
	}
	write(t, src, "model.safetensors", safetensorsLike(`{"a":[0,1],"b":[1,2]}`, tensors...), 0o644)
	if _, err := c.Push(ctx, ref(t, e, "verify/llm:v2"), src); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if _, err := c.Pull(ctx, ref(t, e, "verify/llm:v1"), dst, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(dst, "model.safetensors")
	fi, err := os.Stat(old)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(old, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(bytes.Repeat([]byte{0xff}, 4096), fi.Size()/2)
	f.Close()
	os.Chtimes(old, fi.ModTime(), fi.ModTime())
	res, err := c.Pull(ctx, ref(t, e, "verify/llm:v2"), dst, client.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.DownloadedBytes == 0 {
		t.Fatal("nothing was downloaded: the corrupt chunk was reused")
	}
	sameTree(t, src, dst)
}

// onFirstStart runs change when the first transfer starts: after the pull
// checked its paths, before it writes anything.
type onFirstStart struct {
	once   sync.Once
	change func() error
	err    error
}

func (s *onFirstStart) Start(string, int64) client.Tracker {
	s.once.Do(func() { s.err = s.change() })
	return s
}
func (s *onFirstStart) Plan(int64, int64) {}
func (s *onFirstStart) Add(int64)         {}
func (s *onFirstStart) Skip(int64)        {}
func (s *onFirstStart) Done(error)        {}

// TestPullRefusesPathsChangedDuringPull: the directories a pull writes into
// are checked at their first write, so one that became a symbolic link
// after the pull checked its paths (a directory that existed, or one that
// did not) is still refused, and nothing lands outside; so is a directory
// that appeared where a file goes.
func TestPullRefusesPathsChangedDuringPull(t *testing.T) {
	e := envs(t)[0]
	ctx := context.Background()
	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: links\n"), 0o644)
	write(t, src, "sub/a.txt", []byte("a"), 0o644)
	write(t, src, "sub/deeper/b.txt", []byte("b"), 0o644)
	write(t, src, "sub/big.bin", random(70, 64<<10), 0o644)
	c := newClient(client.Options{})
	if _, err := c.Push(ctx, ref(t, e, "links/model:v1"), src); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		before  func(dst, outside string) error
		during  func(dst, outside string) error
		refusal string
	}{
		{"symlink-new-dir", nil, func(dst, outside string) error {
			return os.Symlink(outside, filepath.Join(dst, "sub"))
		}, "symbolic link"},
		{"symlink-existing-dir", func(dst, _ string) error {
			return os.Mkdir(filepath.Join(dst, "sub"), 0o755)
		}, func(dst, outside string) error {
			os.Remove(filepath.Join(dst, "sub"))
			return os.Symlink(outside, filepath.Join(dst, "sub"))
		}, "symbolic link"},
		{"symlink-before", func(dst, outside string) error {
			return os.Symlink(outside, filepath.Join(dst, "sub"))
		}, nil, "symbolic link"},
		{"dir-in-the-way-new", nil, func(dst, _ string) error {
			return os.MkdirAll(filepath.Join(dst, "sub", "a.txt"), 0o755)
		}, "directory is in the way"},
		{"dir-in-the-way-before", func(dst, _ string) error {
			return os.MkdirAll(filepath.Join(dst, "sub", "a.txt"), 0o755)
		}, nil, "directory is in the way"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst, outside := t.TempDir(), t.TempDir()
			if tc.before != nil {
				if err := tc.before(dst, outside); err != nil {
					t.Fatal(err)
				}
			}
			change := &onFirstStart{change: func() error { return nil }}
			if tc.during != nil {
				change.change = func() error { return tc.during(dst, outside) }
			}
			_, err := newClient(client.Options{Concurrency: 1, Progress: change}).Pull(ctx, ref(t, e, "links/model:v1"), dst, client.PullOptions{})
			if change.err != nil {
				t.Fatal(change.err)
			}
			if err == nil || !strings.Contains(err.Error(), tc.refusal) {
				t.Fatalf("pull: %v; want a refusal (%s)", err, tc.refusal)
			}
			if entries, _ := os.ReadDir(outside); len(entries) != 0 {
				t.Fatalf("something was written outside: %v", entries)
			}
			if fi, err := os.Lstat(filepath.Join(dst, "sub", "a.txt")); err == nil && !fi.IsDir() {
				t.Fatal("sub/a.txt was written")
			}
		})
	}
}

// TestPullExactModes: files get their modes exactly, whatever the umask.
func TestPullExactModes(t *testing.T) {
	e := envs(t)[0]
	ctx := context.Background()
	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: modes\n"), 0o644)
	write(t, src, "shared/small.txt", []byte("small"), 0o666)
	write(t, src, "shared/run.sh", []byte("#!/bin/sh\n"), 0o775)
	write(t, src, "whole.bin", random(80, 32<<10), 0o664)
	write(t, src, "chunked.bin", random(81, 1<<20), 0o660)
	c := newClient(client.Options{})
	if _, err := c.Push(ctx, ref(t, e, "modes/model:v1"), src); err != nil {
		t.Fatal(err)
	}
	old := syscall.Umask(0o027)
	defer syscall.Umask(old)
	dst := t.TempDir()
	if _, err := c.Pull(ctx, ref(t, e, "modes/model:v1"), dst, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	sameTree(t, src, dst)
}

// TestPullSmallFilesBothWays pulls small files as unnamed files linked
// into place (where the system has them) and as temp files renamed into
// place, each into an empty directory and then over an older version,
// with a symbolic link planted at one name: the link is a conflict, and
// forced, it is replaced rather than followed; the trees match, and no
// temp file is left.
func TestPullSmallFilesBothWays(t *testing.T) {
	e := envs(t)[0]
	ctx := context.Background()
	c := newClient(client.Options{})
	versions := map[string]map[string]string{
		"v1": {"modelx.yaml": "description: both ways\n", "a/one.txt": "one", "a/two.json": `{"two":2}`, "b/c/three.txt": "three"},
		"v2": {"modelx.yaml": "description: both ways\n", "a/one.txt": "ONE", "a/two.json": `{"two":2}`, "b/c/three.txt": "three, longer", "b/new.txt": "new"},
	}
	srcs := map[string]string{}
	for _, v := range []string{"v1", "v2"} {
		srcs[v] = t.TempDir()
		for name, data := range versions[v] {
			write(t, srcs[v], name, []byte(data), 0o644)
		}
		if _, err := c.Push(ctx, ref(t, e, "both/ways:"+v), srcs[v]); err != nil {
			t.Fatal(err)
		}
	}
	for _, unnamed := range []bool{true, false} {
		t.Run(map[bool]string{true: "unnamed", false: "temp-files"}[unnamed], func(t *testing.T) {
			if !unnamed {
				defer client.DisableUnnamedFiles()()
			}
			dst := t.TempDir()
			if _, err := c.Pull(ctx, ref(t, e, "both/ways:v1"), dst, client.PullOptions{}); err != nil {
				t.Fatal(err)
			}
			sameTree(t, srcs["v1"], dst)
			outside := filepath.Join(t.TempDir(), "outside.txt")
			if err := os.WriteFile(outside, []byte("keep"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dst, "a/one.txt")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(dst, "a/one.txt")); err != nil {
				t.Fatal(err)
			}
			var conflict *client.ConflictError
			if _, err := c.Pull(ctx, ref(t, e, "both/ways:v2"), dst, client.PullOptions{}); !errors.As(err, &conflict) ||
				len(conflict.Conflicts) != 1 || conflict.Conflicts[0].Path != "a/one.txt" {
				t.Fatalf("pull over a planted link: %v; want a conflict at a/one.txt", err)
			}
			if _, err := c.Pull(ctx, ref(t, e, "both/ways:v2"), dst, client.PullOptions{Force: true}); err != nil {
				t.Fatal(err)
			}
			sameTree(t, srcs["v2"], dst)
			if data, _ := os.ReadFile(outside); string(data) != "keep" {
				t.Fatalf("the pull wrote through a symbolic link: outside file now %q", data)
			}
			left, err := os.ReadDir(filepath.Join(dst, ".modelx", "tmp"))
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			if len(left) != 0 {
				t.Fatalf("temp files left: %v", left)
			}
		})
	}
}
