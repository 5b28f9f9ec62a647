// Package storagetest is the conformance suite every storage backend passes.
package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"modelx.io/modelx/storage"
)

// Run runs the conformance suite against the store newStore returns; each
// subtest gets a fresh, empty store.
func Run(t *testing.T, newStore func(t *testing.T) storage.Storage) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Storage)
	}{
		{"PutStatRead", testPutStatRead},
		{"Ranges", testRanges},
		{"NotFound", testNotFound},
		{"Overwrite", testOverwrite},
		{"FailedPutStoresNothing", testFailedPut},
		{"InvalidKeys", testInvalidKeys},
		{"ListPrefix", testListPrefix},
		{"ListLexicalOrder", testListOrder},
		{"ListManyKeys", testListMany},
		{"Delete", testDelete},
		{"ConditionalWrites", testConditional},
		{"ReadIfChanged", testReadIfChanged},
		{"ReadIfChangedWithoutConditionalReads", func(t *testing.T, s storage.Storage) {
			testReadIfChanged(t, plainStorage{s}) // the generic fallback of storage.ReaderIfChanged
		}},
		{"ConcurrentPutIfMatchOneWinner", testConcurrentPutIfMatch},
		{"ConcurrentPutIfAbsentOneWinner", testConcurrentPutIfAbsent},
		{"Copy", testCopy},
		{"CopyWithoutCopier", func(t *testing.T, s storage.Storage) {
			testCopy(t, plainStorage{s}) // the streaming fallback of storage.Copy
		}},
		{"PresignGetAndPut", testPresign},
		{"PresignPutRejectsWrongBytes", testPresignWrongBytes},
		{"PresignExpiry", testPresignExpiry},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

func sum(data []byte) []byte {
	h := sha256.Sum256(data)
	return h[:]
}

// put stores data at key, with its checksum.
func put(t *testing.T, s storage.Storage, key, data string) {
	t.Helper()
	if err := s.Put(context.Background(), key, strings.NewReader(data), int64(len(data)), sum([]byte(data))); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func read(t *testing.T, s storage.Storage, key string, offset, length int64) (string, storage.Info) {
	t.Helper()
	rc, info, err := s.Reader(context.Background(), key, offset, length)
	if err != nil {
		t.Fatalf("Reader(%q, %d, %d): %v", key, offset, length, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return string(b), info
}

func requireNotFound(t *testing.T, s storage.Storage, key string) {
	t.Helper()
	if _, err := s.Stat(context.Background(), key); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat(%q) = %v, want ErrNotFound", key, err)
	}
}

func testPutStatRead(t *testing.T, s storage.Storage) {
	ctx := context.Background()
	before := time.Now().Add(-time.Minute)
	put(t, s, "a/b/c.txt", "hello world")
	info, err := s.Stat(ctx, "a/b/c.txt")
	if err != nil {
		t.Fatal(err)
	}
	if info.Key != "a/b/c.txt" || info.Size != 11 || info.ETag == "" || info.ModTime.Before(before) {
		t.Fatalf("Stat = %+v", info)
	}
	got, rinfo := read(t, s, "a/b/c.txt", 0, -1)
	if got != "hello world" || rinfo.Size != 11 || rinfo.ETag != info.ETag {
		t.Fatalf("read %q %+v, want hello world with ETag %s", got, rinfo, info.ETag)
	}
	put(t, s, "empty", "")
	if got, info := read(t, s, "empty", 0, -1); got != "" || info.Size != 0 {
		t.Fatalf("empty object read %q size %d", got, info.Size)
	}
}

func testRanges(t *testing.T, s storage.Storage) {
	put(t, s, "r", "0123456789")
	for _, tc := range []struct {
		offset, length int64
		want           string
	}{
		{0, -1, "0123456789"},
		{3, -1, "3456789"},
		{3, 4, "3456"},
		{9, 1, "9"},
		{8, 10, "89"},
		{10, -1, ""},
		{4, 0, ""},
	} {
		got, info := read(t, s, "r", tc.offset, tc.length)
		if got != tc.want || info.Size != 10 {
			t.Errorf("range (%d, %d) = %q (size %d), want %q (size 10)", tc.offset, tc.length, got, info.Size, tc.want)
		}
	}
	if _, _, err := s.Reader(context.Background(), "r", 11, -1); !errors.Is(err, storage.ErrInvalidRange) {
		t.Errorf("read from past the end: %v, want ErrInvalidRange", err)
	}
}

func testNotFound(t *testing.T, s storage.Storage) {
	requireNotFound(t, s, "missing/key")
	if _, _, err := s.Reader(context.Background(), "missing/key", 0, -1); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Reader of missing key: %v, want ErrNotFound", err)
	}
	put(t, s, "dir/file", "x")
	// A "directory" is not an object.
	requireNotFound(t, s, "dir")
}

func testOverwrite(t *testing.T, s storage.Storage) {
	put(t, s, "k", "first version")
	first, _ := s.Stat(context.Background(), "k")
	put(t, s, "k", "second")
	got, info := read(t, s, "k", 0, -1)
	if got != "second" || info.Size != 6 {
		t.Fatalf("after overwrite read %q", got)
	}
	if info.ETag == first.ETag {
		t.Fatalf("ETag %q did not change on overwrite", info.ETag)
	}
}

type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func testFailedPut(t *testing.T, s storage.Storage) {
	ctx := context.Background()
	boom := errors.New("boom")
	data := bytes.Repeat([]byte("x"), 64<<10)
	full := sum(append(slices.Clone(data), data...))
	if err := s.Put(ctx, "new", &failingReader{data: data, err: boom}, int64(len(data))*2, full); err == nil {
		t.Fatal("Put with a failing reader succeeded")
	}
	requireNotFound(t, s, "new")
	if err := s.Put(ctx, "short", bytes.NewReader(data), int64(len(data))+1, full); !errors.Is(err, storage.ErrSizeMismatch) {
		t.Fatalf("Put with a short reader: %v, want ErrSizeMismatch", err)
	}
	requireNotFound(t, s, "short")
	if err := s.Put(ctx, "long", strings.NewReader("too long"), 3, sum([]byte("too"))); !errors.Is(err, storage.ErrSizeMismatch) {
		t.Fatalf("Put with an over-long reader: %v, want ErrSizeMismatch", err)
	}
	requireNotFound(t, s, "long")
	if err := s.Put(ctx, "wrong", bytes.NewReader(data), int64(len(data)), full); !errors.Is(err, storage.ErrChecksumMismatch) {
		t.Fatalf("Put with a wrong checksum: %v, want ErrChecksumMismatch", err)
	}
	requireNotFound(t, s, "wrong")

	put(t, s, "old", "keep me")
	if err := s.Put(ctx, "old", &failingReader{data: data, err: boom}, int64(len(data))*2, full); err == nil {
		t.Fatal("overwriting Put with a failing reader succeeded")
	}
	if err := s.Put(ctx, "old", strings.NewReader("other!!"), 7, sum([]byte("keep me"))); !errors.Is(err, storage.ErrChecksumMismatch) {
		t.Fatalf("overwriting Put with a wrong checksum: %v, want ErrChecksumMismatch", err)
	}
	if got, _ := read(t, s, "old", 0, -1); got != "keep me" {
		t.Fatalf("failed overwrites left %q", got)
	}
	// Without a checksum the length is still enforced, and a good body stored.
	if err := s.Put(ctx, "nosum", strings.NewReader("abc"), 3, nil); err != nil {
		t.Fatalf("Put without checksum: %v", err)
	}
	if err := s.Put(ctx, "nosum-long", strings.NewReader("abcd"), 3, nil); !errors.Is(err, storage.ErrSizeMismatch) {
		t.Fatalf("Put without checksum of an over-long reader: %v, want ErrSizeMismatch", err)
	}
	if got, _ := read(t, s, "nosum", 0, -1); got != "abc" {
		t.Fatalf("read %q, want abc", got)
	}
}

// testInvalidKeys: no operation reaches the backend with an invalid key,
// whichever capability it belongs to.
func testInvalidKeys(t *testing.T, s storage.Storage) {
	ctx := context.Background()
	put(t, s, "valid", "x")
	for _, key := range []string{"", "/abs", "../escape", "a/../b", "a//b", "a/./b", "a\\b", "a/", "a\x00b"} {
		check := func(op string, err error) {
			t.Helper()
			if !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("%s(%q) = %v, want ErrInvalidKey", op, key, err)
			}
		}
		check("Put", s.Put(ctx, key, strings.NewReader("x"), 1, nil))
		_, err := s.Stat(ctx, key)
		check("Stat", err)
		_, _, err = s.Reader(ctx, key, 0, -1)
		check("Reader", err)
		check("Delete", s.Delete(ctx, key))
		if cw, ok := s.(storage.ConditionalWriter); ok {
			check("PutIfAbsent", cw.PutIfAbsent(ctx, key, []byte("x")))
			check("PutIfMatch", cw.PutIfMatch(ctx, key, []byte("x"), "etag"))
		}
		if cr, ok := s.(storage.ConditionalReader); ok {
			_, _, err := cr.ReaderIfChanged(ctx, key, "etag")
			check("ReaderIfChanged", err)
		}
		if c, ok := s.(storage.Copier); ok {
			check("Copy from", c.Copy(ctx, key, "copy"))
			check("Copy to", c.Copy(ctx, "valid", key))
		}
		if p, ok := s.(storage.Presigner); ok {
			_, err := p.PresignGet(ctx, key, time.Minute)
			check("PresignGet", err)
			_, err = p.PresignPut(ctx, key, 1, sum([]byte("x")), time.Minute)
			check("PresignPut", err)
		}
	}
	for _, prefix := range []string{"../", "/abs/", "a/../b/", "a//"} {
		err := s.List(ctx, prefix, func(storage.Info) error { return nil })
		if !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("List(%q) = %v, want ErrInvalidKey", prefix, err)
		}
	}
	if keys := listKeys(t, s, ""); !slices.Equal(keys, []string{"valid"}) {
		t.Errorf("after the invalid writes the store holds %q, want only valid", keys)
	}
}

// listKeys lists the keys under prefix, sorted.
func listKeys(t *testing.T, s storage.Storage, prefix string) []string {
	t.Helper()
	keys := listKeysInOrder(t, s, prefix)
	slices.Sort(keys)
	return keys
}

// listKeysInOrder lists the keys under prefix in the order List gives.
func listKeysInOrder(t *testing.T, s storage.Storage, prefix string) []string {
	t.Helper()
	var keys []string
	if err := s.List(context.Background(), prefix, func(i storage.Info) error {
		keys = append(keys, i.Key)
		return nil
	}); err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return keys
}

func testListPrefix(t *testing.T, s storage.Storage) {
	for _, k := range []string{"p/a/1", "p/a/2", "p/ab", "p/b/1", "q/1"} {
		put(t, s, k, k)
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"p/a/", []string{"p/a/1", "p/a/2"}},
		{"p/a", []string{"p/a/1", "p/a/2", "p/ab"}},
		{"p/", []string{"p/a/1", "p/a/2", "p/ab", "p/b/1"}},
		{"", []string{"p/a/1", "p/a/2", "p/ab", "p/b/1", "q/1"}},
		{"none/", nil},
	} {
		if got := listKeys(t, s, tc.prefix); !slices.Equal(got, tc.want) {
			t.Errorf("List(%q) = %v, want %v", tc.prefix, got, tc.want)
		}
	}
	stop := errors.New("stop")
	n := 0
	err := s.List(context.Background(), "p/", func(storage.Info) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("List with a failing callback: err %v after %d calls, want stop after 1", err, n)
	}
}

// testListOrder: List walks keys in lexical (byte) order, also where a
// directory's name is a prefix of a file's and sorts after it because '/'
// sorts after '-' and '.'.
func testListOrder(t *testing.T, s storage.Storage) {
	keys := []string{"o/b/x", "o/b-c", "o/b.txt", "o/b0", "o/b/y/z", "o/a", "o-a", "o.b", "oa", "o/B", "o/b_"}
	for _, k := range keys {
		put(t, s, k, k)
	}
	want := slices.Clone(keys)
	slices.Sort(want)
	if got := listKeysInOrder(t, s, ""); !slices.Equal(got, want) {
		t.Errorf("List(\"\") = %v, want %v", got, want)
	}
	wantB := slices.DeleteFunc(slices.Clone(want), func(k string) bool { return !strings.HasPrefix(k, "o/b") })
	if got := listKeysInOrder(t, s, "o/b"); !slices.Equal(got, wantB) {
		t.Errorf("List(\"o/b\") = %v, want %v", got, wantB)
	}
}

func testListMany(t *testing.T, s storage.Storage) {
	const n = 1100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			key := fmt.Sprintf("many/%04d", i)
			errs <- s.Put(context.Background(), key, strings.NewReader(key), int64(len(key)), nil)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	keys := listKeys(t, s, "many/")
	if len(keys) != n || keys[0] != "many/0000" || keys[n-1] != fmt.Sprintf("many/%04d", n-1) {
		t.Fatalf("listed %d keys, want %d", len(keys), n)
	}
}

func testDelete(t *testing.T, s storage.Storage) {
	ctx := context.Background()
	put(t, s, "d/x", "x")
	if err := s.Delete(ctx, "d/x"); err != nil {
		t.Fatal(err)
	}
	requireNotFound(t, s, "d/x")
	if err := s.Delete(ctx, "d/x"); err != nil {
		t.Fatalf("deleting a missing key: %v", err)
	}
	if keys := listKeys(t, s, "d/"); len(keys) != 0 {
		t.Fatalf("listed %v after delete", keys)
	}
}

func conditional(t *testing.T, s storage.Storage) storage.ConditionalWriter {
	cw, ok := s.(storage.ConditionalWriter)
	if !ok {
		t.Skip("backend has no conditional writes")
	}
	return cw
}

func testConditional(t *testing.T, s storage.Storage) {
	cw := conditional(t, s)
	ctx := context.Background()
	if err := cw.PutIfMatch(ctx, "c", []byte("v0"), "anything"); !errors.Is(err, storage.ErrPreconditionFailed) {
		t.Fatalf("PutIfMatch on a missing key: %v, want ErrPreconditionFailed", err)
	}
	if err := cw.PutIfAbsent(ctx, "c", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if err := cw.PutIfAbsent(ctx, "c", []byte("v2")); !errors.Is(err, storage.ErrPreconditionFailed) {
		t.Fatalf("second PutIfAbsent: %v, want ErrPreconditionFailed", err)
	}
	got, info := read(t, s, "c", 0, -1)
	if got != "v1" {
		t.Fatalf("read %q, want v1", got)
	}
	if err := cw.PutIfMatch(ctx, "c", []byte("v3"), "wrong-etag"); !errors.Is(err, storage.ErrPreconditionFailed) {
		t.Fatalf("PutIfMatch with a wrong ETag: %v, want ErrPreconditionFailed", err)
	}
	if err := cw.PutIfMatch(ctx, "c", []byte("v3"), info.ETag); err != nil {
		t.Fatalf("PutIfMatch with the current ETag: %v", err)
	}
	if err := cw.PutIfMatch(ctx, "c", []byte("v4"), info.ETag); !errors.Is(err, storage.ErrPreconditionFailed) {
		t.Fatalf("PutIfMatch with a stale ETag: %v, want ErrPreconditionFailed", err)
	}
	if got, _ := read(t, s, "c", 0, -1); got != "v3" {
		t.Fatalf("read %q, want v3", got)
	}
}

// plainStorage hides a backend's optional capabilities.
type plainStorage struct{ storage.Storage }

// testReadIfChanged checks ReadAllIfChanged, through the backend's
// ConditionalReader when it has one: an unchanged object is not read, a
// replaced one is read whole with its new ETag, a deleted one is not found.
func testReadIfChanged(t *testing.T, s storage.Storage) {
	ctx := context.Background()
	put(t, s, "idx", "version one")
	data, info, err := storage.ReadAllIfChanged(ctx, s, "idx", "", 1<<20)
	if err != nil || string(data) != "version one" || info.ETag == "" {
		t.Fatalf("read without an ETag: %q %+v %v", data, info, err)
	}
	if data, _, err := storage.ReadAllIfChanged(ctx, s, "idx", info.ETag, 1<<20); !errors.Is(err, storage.ErrNotModified) || data != nil {
		t.Fatalf("unchanged object: %q %v, want ErrNotModified", data, err)
	}
	if data, _, err := storage.ReadAllIfChanged(ctx, s, "idx", "some-other-etag", 1<<20); err != nil || string(data) != "version one" {
		t.Fatalf("with a foreign ETag: %q %v, want the object", data, err)
	}
	put(t, s, "idx", "version two!")
	data, info2, err := storage.ReadAllIfChanged(ctx, s, "idx", info.ETag, 1<<20)
	if err != nil || string(data) != "version two!" {
		t.Fatalf("replaced object: %q %v, want version two!", data, err)
	}
	if info2.ETag == info.ETag || info2.Size != int64(len(data)) {
		t.Fatalf("replaced object's info %+v, first %+v", info2, info)
	}
	if _, _, err := storage.ReadAllIfChanged(ctx, s, "idx", info.ETag, 4); err == nil {
		t.Fatal("a changed object over the size limit was read")
	}
	if err := s.Delete(ctx, "idx"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := storage.ReadAllIfChanged(ctx, s, "idx", info2.ETag, 1<<20); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted object: %v, want ErrNotFound", err)
	}
}

func testCopy(t *testing.T, s storage.Storage) {
	ctx := context.Background()
	data := strings.Repeat("copy me ", 1000)
	put(t, s, "src/a", data)
	if err := storage.Copy(ctx, s, "src/a", "dst/b", int64(len(data)), sum([]byte(data))); err != nil {
		t.Fatal(err)
	}
	if got, info := read(t, s, "dst/b", 0, -1); got != data || info.Size != int64(len(data)) {
		t.Fatalf("copy holds %d bytes %+v, want the %d of the source", len(got), info, len(data))
	}
	if got, _ := read(t, s, "src/a", 0, -1); got != data {
		t.Fatal("the source changed")
	}
	put(t, s, "dst/c", "old")
	if err := storage.Copy(ctx, s, "src/a", "dst/c", int64(len(data)), sum([]byte(data))); err != nil {
		t.Fatal(err)
	}
	if got, _ := read(t, s, "dst/c", 0, -1); got != data {
		t.Fatal("copy over an existing object did not replace it")
	}
	if err := storage.Copy(ctx, s, "src/missing", "dst/d", 1, nil); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("copy of a missing object: %v, want ErrNotFound", err)
	}
	requireNotFound(t, s, "dst/d")
}

func testConcurrentPutIfMatch(t *testing.T, s storage.Storage) {
	cw := conditional(t, s)
	ctx := context.Background()
	if err := cw.PutIfAbsent(ctx, "cas", []byte("start")); err != nil {
		t.Fatal(err)
	}
	info, err := s.Stat(ctx, "cas")
	if err != nil {
		t.Fatal(err)
	}
	wins := raceWriters(t, func(i int) error {
		return cw.PutIfMatch(ctx, "cas", []byte(fmt.Sprintf("writer-%d", i)), info.ETag)
	})
	if wins != 1 {
		t.Fatalf("%d writers won the compare-and-swap, want exactly 1", wins)
	}
	if got, _ := read(t, s, "cas", 0, -1); !strings.HasPrefix(got, "writer-") {
		t.Fatalf("read %q after the race", got)
	}
}

func testConcurrentPutIfAbsent(t *testing.T, s storage.Storage) {
	cw := conditional(t, s)
	wins := raceWriters(t, func(i int) error {
		return cw.PutIfAbsent(context.Background(), "once", []byte(fmt.Sprintf("writer-%d", i)))
	})
	if wins != 1 {
		t.Fatalf("%d writers created the key, want exactly 1", wins)
	}
}

// raceWriters starts 8 conditional writes at once and returns how many
// succeeded; a write may fail only with ErrPreconditionFailed.
func raceWriters(t *testing.T, write func(writer int) error) int32 {
	const n = 8
	var wins atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			switch err := write(i); {
			case err == nil:
				wins.Add(1)
			case !errors.Is(err, storage.ErrPreconditionFailed):
				t.Errorf("writer %d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	return wins.Load()
}

func presigner(t *testing.T, s storage.Storage) storage.Presigner {
	p, ok := s.(storage.Presigner)
	if !ok {
		t.Skip("backend does not presign")
	}
	return p
}

// do sends a presigned request with body and returns the status and body.
func do(t *testing.T, pr storage.PresignedRequest, body []byte, header http.Header) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(pr.Method, pr.URL, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range pr.Header {
		req.Header[k] = v
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.ContentLength = int64(len(body))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func testPresign(t *testing.T, s storage.Storage) {
	p := presigner(t, s)
	ctx := context.Background()
	data := []byte("presigned content")
	sum := sha256.Sum256(data)
	pr, err := p.PresignPut(ctx, "pre/obj", int64(len(data)), sum[:], time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ToLower(pr.URL), "x-amz-checksum-sha256=") {
		t.Fatalf("checksum was hoisted into the URL instead of a signed header: %s", pr.URL)
	}
	if status, body := do(t, pr, data, nil); status != http.StatusOK {
		t.Fatalf("presigned PUT: %d %s", status, body)
	}
	if got, _ := read(t, s, "pre/obj", 0, -1); got != string(data) {
		t.Fatalf("stored %q", got)
	}
	gr, err := p.PresignGet(ctx, "pre/obj", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if status, body := do(t, gr, nil, nil); status != http.StatusOK || body != string(data) {
		t.Fatalf("presigned GET: %d %q", status, body)
	}
	if status, body := do(t, gr, nil, http.Header{"Range": {"bytes=4-8"}}); status != http.StatusPartialContent || body != "igned" {
		t.Fatalf("presigned ranged GET: %d %q", status, body)
	}
}

func testPresignWrongBytes(t *testing.T, s storage.Storage) {
	p := presigner(t, s)
	ctx := context.Background()
	data := []byte("the right bytes")
	sum := sha256.Sum256(data)
	pr, err := p.PresignPut(ctx, "pre/wrong", int64(len(data)), sum[:], time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	wrong := []byte("the wrong bytes")
	if status, _ := do(t, pr, wrong, nil); status < 400 || status >= 500 {
		t.Fatalf("presigned PUT of other bytes of the same length answered %d, want 4xx", status)
	}
	if status, _ := do(t, pr, append(data, '!'), nil); status < 400 || status >= 500 {
		t.Fatalf("presigned PUT of a longer body answered %d, want 4xx", status)
	}
	other := sha256.Sum256(wrong)
	if status, _ := do(t, pr, wrong, http.Header{storage.ChecksumHeader: {b64(other[:])}}); status < 400 || status >= 500 {
		t.Fatalf("presigned PUT with a swapped checksum header answered %d, want 4xx", status)
	}
	requireNotFound(t, s, "pre/wrong")
}

func testPresignExpiry(t *testing.T, s storage.Storage) {
	p := presigner(t, s)
	ctx := context.Background()
	put(t, s, "pre/exp", "x")
	data := []byte("late")
	sum := sha256.Sum256(data)
	pr, err := p.PresignPut(ctx, "pre/exp-put", int64(len(data)), sum[:], time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Signed after the PUT, the GET expires no sooner (signatures carry
	// whole seconds). The server's clock decides; ask it until the GET is
	// refused, then the PUT is expired too.
	gr, err := p.PresignGet(ctx, "pre/exp", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		status, _ := do(t, gr, nil, nil)
		if status == http.StatusForbidden {
			break
		}
		if status != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("presigned GET with a 1 s expiry answered %d, want 200 until it expires, then 403 (waited up to 30 s)", status)
		}
	}
	if status, _ := do(t, pr, data, nil); status != http.StatusForbidden {
		t.Fatalf("expired presigned PUT answered %d, want 403", status)
	}
	requireNotFound(t, s, "pre/exp-put")
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
