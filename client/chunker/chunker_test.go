package chunker

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

// small keeps tests fast while exercising every phase of the scan.
var small = Params{Min: 2 << 10, Avg: 8 << 10, Max: 32 << 10}

func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 'm', 'x'})
	r.Read(b)
	return b
}

type piece struct {
	off  int64
	data []byte
}

// chunkAll runs Cut over r, through a buffer of 64 KiB, copying each
// chunk.
func chunkAll(t testing.TB, r io.Reader, p Params) []piece {
	t.Helper()
	out, err := cutAll(r, p, make([]byte, 64<<10))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cutAll runs Cut over r through buf and returns the chunks it ended,
// copied, and its error.
func cutAll(r io.Reader, p Params, buf []byte) ([]piece, error) {
	var out []piece
	var cur []byte
	var off int64
	err := Cut(r, p, buf, func(b []byte, end bool) error {
		cur = append(cur, b...)
		if end {
			if len(cur) == 0 {
				return errors.New("an empty chunk")
			}
			out = append(out, piece{off, cur})
			off += int64(len(cur))
			cur = nil
		}
		return nil
	})
	return out, err
}

// checkChunks verifies that chunks cover input exactly and respect p.
func checkChunks(t *testing.T, input []byte, chunks []piece, p Params) {
	t.Helper()
	var off int64
	var joined []byte
	for i, ch := range chunks {
		if ch.off != off {
			t.Fatalf("chunk %d: offset %d, want %d", i, ch.off, off)
		}
		if len(ch.data) == 0 {
			t.Fatalf("chunk %d is empty", i)
		}
		if len(ch.data) > p.Max {
			t.Fatalf("chunk %d: length %d > Max %d", i, len(ch.data), p.Max)
		}
		if i < len(chunks)-1 && len(ch.data) < p.Min {
			t.Fatalf("chunk %d (not last): length %d < Min %d", i, len(ch.data), p.Min)
		}
		off += int64(len(ch.data))
		joined = append(joined, ch.data...)
	}
	if !bytes.Equal(joined, input) {
		t.Fatalf("concatenated chunks (%d bytes) differ from input (%d bytes)", len(joined), len(input))
	}
}

func boundaries(chunks []piece) []int64 {
	b := make([]int64, len(chunks))
	for i, ch := range chunks {
		b[i] = ch.off + int64(len(ch.data))
	}
	return b
}

func TestChunksCoverInput(t *testing.T) {
	tiny := Params{Min: 64, Avg: 256, Max: 1024}
	for _, tc := range []struct {
		name string
		p    Params
		data []byte
	}{
		{"random 1MiB", small, randBytes(1, 1<<20)},
		{"random 1MiB+7", small, randBytes(2, 1<<20+7)},
		{"zeros hit Max", small, make([]byte, 200<<10)},
		{"exactly Max", small, randBytes(3, small.Max)},
		{"Max+1", small, make([]byte, small.Max+1)},
		{"exactly Min", small, randBytes(4, small.Min)},
		{"tiny params", tiny, randBytes(5, 256<<10)},
		{"tiny params zeros", tiny, make([]byte, 10<<10)},
		{"repeating text", small, bytes.Repeat([]byte("modelx safetensors "), 40000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkChunks(t, tc.data, chunkAll(t, bytes.NewReader(tc.data), tc.p), tc.p)
		})
	}
}

func TestShortInputs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		n      int
		chunks int
	}{
		{"empty", 0, 0},
		{"one byte", 1, 1},
		{"below Min", small.Min - 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := randBytes(6, tc.n)
			calls := 0
			err := Cut(bytes.NewReader(data), small, make([]byte, 1<<10), func([]byte, bool) error { calls++; return nil })
			if err != nil {
				t.Fatal(err)
			}
			got := chunkAll(t, bytes.NewReader(data), small)
			if len(got) != tc.chunks || tc.chunks == 0 && calls > 0 {
				t.Fatalf("%d chunks in %d calls, want %d", len(got), calls, tc.chunks)
			}
			if tc.chunks == 1 && (got[0].off != 0 || !bytes.Equal(got[0].data, data)) {
				t.Fatalf("offset %d, %d bytes; want the whole input", got[0].off, len(got[0].data))
			}
		})
	}
}

// shortReader returns reads of random length between 1 and max bytes.
type shortReader struct {
	r   io.Reader
	rnd *rand.Rand
	max int
}

func (s *shortReader) Read(p []byte) (int, error) {
	if n := 1 + s.rnd.IntN(s.max); len(p) > n {
		p = p[:n]
	}
	return s.r.Read(p)
}

// emptyReader interleaves (0, nil) reads, which io.Reader permits.
type emptyReader struct {
	r io.Reader
	n int
}

func (e *emptyReader) Read(p []byte) (int, error) {
	e.n++
	if e.n%3 != 0 {
		return 0, nil
	}
	return e.r.Read(p)
}

func TestReadPatternIndependence(t *testing.T) {
	smallInput := randBytes(7, 150<<10)
	largeInput := randBytes(8, 2<<20)
	smallWant := boundaries(chunkAll(t, bytes.NewReader(smallInput), small))
	largeWant := boundaries(chunkAll(t, bytes.NewReader(largeInput), small))
	for _, tc := range []struct {
		name string
		data []byte
		want []int64 // boundaries when read through bytes.Reader
		wrap func(io.Reader) io.Reader
	}{
		{"one byte", smallInput, smallWant, iotest.OneByteReader},
		{"half", smallInput, smallWant, iotest.HalfReader},
		{"data with EOF", smallInput, smallWant, iotest.DataErrReader},
		{"empty reads", smallInput, smallWant, func(r io.Reader) io.Reader { return &emptyReader{r: r} }},
		{"short reads up to 5000", largeInput, largeWant, func(r io.Reader) io.Reader {
			return &shortReader{r, rand.New(rand.NewPCG(1, 2)), 5000}
		}},
		{"short reads up to 300000", largeInput, largeWant, func(r io.Reader) io.Reader {
			return &shortReader{r, rand.New(rand.NewPCG(3, 4)), 300000}
		}},
		{"half large", largeInput, largeWant, iotest.HalfReader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := chunkAll(t, tc.wrap(bytes.NewReader(tc.data)), small)
			checkChunks(t, tc.data, got, small)
			if gb := boundaries(got); !slices.Equal(gb, tc.want) {
				t.Fatalf("boundaries %v, want %v", gb, tc.want)
			}
		})
	}
	for _, size := range []int{1, 4099, 1 << 20} {
		got, err := cutAll(bytes.NewReader(smallInput), small, make([]byte, size))
		if err != nil {
			t.Fatal(err)
		}
		if gb := boundaries(got); !slices.Equal(gb, smallWant) {
			t.Fatalf("a buffer of %d bytes: boundaries %v, want %v", size, gb, smallWant)
		}
	}
}

// TestGoldenBoundaries pins the boundaries for a fixed input, guarding the gear
// table and the cut rules, which are part of the on-disk format.
func TestGoldenBoundaries(t *testing.T) {
	var table []byte
	for _, g := range gear {
		table = binary.LittleEndian.AppendUint64(table, g)
	}
	if sum := fmt.Sprintf("%x", sha256.Sum256(table)); gear[0] != 0x8c33e27b3072b325 ||
		sum != "3ef599c8bdacf581fe37d4f15ee979e718ea0017b3dd9c6edf107340faa68493" {
		t.Fatalf("gear table changed: gear[0]=%#x, sha256 %s", gear[0], sum)
	}
	// The input is built from SHA-256 so that it cannot drift with a library.
	var data []byte
	for i := 0; len(data) < 256<<10; i++ {
		sum := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
		data = append(data, sum[:]...)
	}
	// Computed with an independent, byte-at-a-time implementation of the
	// rule in the package comment.
	want := []int64{16791, 28096, 53345, 63845, 90346, 101013, 106358, 116836, 123371, 130311, 157085, 186659, 195811, 203873, 213511, 223485, 235421, 251339, 259331, 262144}
	if got := boundaries(chunkAll(t, bytes.NewReader(data), small)); !slices.Equal(got, want) {
		t.Fatalf("boundaries %v, want %v", got, want)
	}
	// The same for tiny Params over 1 MiB, pinned by a digest of the 3236
	// boundaries (little-endian uint64s). Among these chunks 37 end within 8
	// bytes of Min, 26 end exactly at Avg and 7 at Max, so the edges of each
	// phase of the rule are covered.
	for len(data) < 1<<20 {
		sum := sha256.Sum256([]byte{byte(len(data) / 32), byte(len(data) / 32 >> 8)})
		data = append(data, sum[:]...)
	}
	got := boundaries(chunkAll(t, bytes.NewReader(data), Params{Min: 96, Avg: 256, Max: 1024}))
	var enc []byte
	for _, b := range got {
		enc = binary.LittleEndian.AppendUint64(enc, uint64(b))
	}
	if sum := fmt.Sprintf("%x", sha256.Sum256(enc)); len(got) != 3236 ||
		sum != "c5ae025424dbc08a6b207c0b3164f2dbdbf32e659651f476eeac00a67802d1f1" {
		t.Fatalf("tiny Params: %d boundaries with sha256 %s, want 3236 with c5ae0254…", len(got), sum)
	}

	// Zeros never match a mask (the hash is constant, -gear[0]), so every
	// chunk is cut at Max.
	want = []int64{32768, 65536, 98304, 102400}
	if got := boundaries(chunkAll(t, bytes.NewReader(make([]byte, 100<<10)), small)); !slices.Equal(got, want) {
		t.Fatalf("boundaries of zeros %v, want %v", got, want)
	}
}

// TestStableBoundaries checks that chunking re-synchronises after an edit:
// chunks before the edit are untouched and all but a few after it are chunks
// the original also had. (Re-synchronisation is probabilistic. Over 1000
// random 2 MiB inputs with these Params and a 100-byte insertion or deletion,
// 97% of edits produced one new chunk and none more than four.)
func TestStableBoundaries(t *testing.T) {
	const size = 2 << 20
	data := randBytes(10, size)
	orig := chunkAll(t, bytes.NewReader(data), small)
	have := make(map[[32]byte]bool)
	for _, ch := range orig {
		have[sha256.Sum256(ch.data)] = true
	}
	for _, tc := range []struct {
		name string
		at   int
		edit func(data []byte, at int) []byte
	}{
		{"insert 100 bytes", size / 2, func(d []byte, at int) []byte {
			return append(d[:at:at], append(randBytes(99, 100), d[at:]...)...)
		}},
		{"delete 100 bytes", size / 2, func(d []byte, at int) []byte {
			return append(d[:at:at], d[at+100:]...)
		}},
		{"change 4 bytes", size / 2, func(d []byte, at int) []byte {
			e := bytes.Clone(d)
			copy(e[at:], []byte{0xde, 0xad, 0xbe, 0xef})
			return e
		}},
		{"insert 100 bytes elsewhere", size/3 + 12345, func(d []byte, at int) []byte {
			return append(d[:at:at], append(randBytes(98, 100), d[at:]...)...)
		}},
		{"delete 100 bytes elsewhere", size/3 + 12345, func(d []byte, at int) []byte {
			return append(d[:at:at], d[at+100:]...)
		}},
		{"change 4 bytes elsewhere", size/3 + 12345, func(d []byte, at int) []byte {
			e := bytes.Clone(d)
			copy(e[at:], []byte{1, 2, 3, 4})
			return e
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			edited := tc.edit(data, tc.at)
			changed := chunkAll(t, bytes.NewReader(edited), small)
			checkChunks(t, edited, changed, small)

			// Every chunk that ends before the edit is unchanged.
			before := 0
			for before < len(orig) && orig[before].off+int64(len(orig[before].data)) <= int64(tc.at) {
				if before >= len(changed) || !bytes.Equal(orig[before].data, changed[before].data) {
					t.Fatalf("chunk %d, before the edit, changed", before)
				}
				before++
			}
			if before < len(orig)/4 {
				t.Fatalf("only %d of %d chunks precede the edit", before, len(orig))
			}

			// After it, all but a few chunks are ones the original had.
			var fresh int
			for _, ch := range changed[before:] {
				if !have[sha256.Sum256(ch.data)] {
					fresh++
				}
			}
			t.Logf("%d chunks before the edit, %d after it of which %d new", before, len(changed)-before, fresh)
			if fresh > 3 {
				t.Fatalf("%d new chunks from the edit on (of %d), want at most 3", fresh, len(changed)-before)
			}
			if kept := len(changed) - before - fresh; kept < len(orig)/4 {
				t.Fatalf("only %d unchanged chunks after the edit", kept)
			}
		})
	}
}

func TestAverageSize(t *testing.T) {
	data := randBytes(15, 2<<20)
	for _, p := range []Params{
		small,
		{Min: 64, Avg: 256, Max: 1024},
		{Min: 1 << 10, Avg: 16 << 10, Max: 64 << 10},
	} {
		chunks := chunkAll(t, bytes.NewReader(data), p)
		avg := float64(len(data)) / float64(len(chunks))
		t.Logf("%+v: %d chunks, average %.0f bytes (%.2fx Avg)", p, len(chunks), avg, avg/float64(p.Avg))
		if avg < 0.5*float64(p.Avg) || avg > 2*float64(p.Avg) {
			t.Errorf("%+v: average chunk size %.0f, want within 0.5x..2x of %d", p, avg, p.Avg)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		p     Params
		field string // "" means valid
	}{
		{DefaultParams, ""},
		{small, ""},
		{Params{Min: 64, Avg: 128, Max: 129}, ""},
		{Params{}, "Min"},
		{Params{Min: 63, Avg: 256, Max: 1024}, "Min"},
		{Params{Min: -1, Avg: 256, Max: 1024}, "Min"},
		{Params{Min: 256, Avg: 256, Max: 1024}, "Avg"},
		{Params{Min: 512, Avg: 256, Max: 1024}, "Avg"},
		{Params{Min: 64, Avg: 1000, Max: 4096}, "Avg"},
		{Params{Min: 64, Avg: 256, Max: 256}, "Max"},
		{Params{Min: 64, Avg: 256, Max: 100}, "Max"},
	} {
		err := tc.p.Validate()
		if tc.field == "" {
			if err != nil {
				t.Errorf("%+v: unexpected error %v", tc.p, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%+v: no error, want one naming %s", tc.p, tc.field)
			continue
		}
		if !strings.Contains(err.Error(), "Params."+tc.field) {
			t.Errorf("%+v: error %q does not name %s", tc.p, err, tc.field)
		}
		if cerr := Cut(bytes.NewReader(nil), tc.p, make([]byte, 1), nil); cerr == nil || cerr.Error() != err.Error() {
			t.Errorf("%+v: Cut returned %v, want %v", tc.p, cerr, err)
		}
		if _, nerr := NewSplitter(tc.p); nerr == nil || nerr.Error() != err.Error() {
			t.Errorf("%+v: NewSplitter returned %v, want %v", tc.p, nerr, err)
		}
	}
}

func TestReaderError(t *testing.T) {
	boom := errors.New("boom")
	data := randBytes(16, 1<<20)
	full := chunkAll(t, bytes.NewReader(data), small)
	r := io.MultiReader(bytes.NewReader(data[:len(data)/2]), iotest.ErrReader(boom))
	got, err := cutAll(r, small, make([]byte, 64<<10))
	if err != boom {
		t.Fatalf("got %v, want boom", err)
	}
	for n, ch := range got {
		if !bytes.Equal(ch.data, full[n].data) {
			t.Fatalf("chunk %d before the error differs", n)
		}
	}
	n := len(got)
	if n == 0 || int64(len(data)/2)-(full[n-1].off+int64(len(full[n-1].data))) > int64(small.Max) {
		t.Fatalf("only %d chunks ended before the error", n)
	}
}

func TestPartError(t *testing.T) {
	stop := errors.New("stop")
	calls := 0
	err := Cut(bytes.NewReader(randBytes(20, 1<<20)), small, make([]byte, 64<<10), func([]byte, bool) error {
		calls++
		return stop
	})
	if err != stop || calls != 1 {
		t.Fatalf("got %v after %d calls, want stop after 1", err, calls)
	}
	if err := Cut(bytes.NewReader([]byte("x")), small, nil, nil); err == nil {
		t.Fatal("Cut accepted an empty buffer")
	}
}

type stuckReader struct{}

func (stuckReader) Read([]byte) (int, error) { return 0, nil }

func TestNoProgress(t *testing.T) {
	if err := Cut(stuckReader{}, small, make([]byte, 1<<10), func([]byte, bool) error { return nil }); err != io.ErrNoProgress {
		t.Fatalf("got %v, want io.ErrNoProgress", err)
	}
}

// badReader claims to have read more than it was given room for.
type badReader struct{}

func (badReader) Read(p []byte) (int, error) { return len(p) + 1, nil }

func TestBadReader(t *testing.T) {
	if err := Cut(badReader{}, small, make([]byte, 1<<10), func([]byte, bool) error { return nil }); err == nil || !strings.Contains(err.Error(), "invalid count") {
		t.Fatalf("got %v, want an invalid count error", err)
	}
}

func TestNoAllocs(t *testing.T) {
	data := randBytes(17, 2<<20)
	r := bytes.NewReader(data)
	buf := make([]byte, 64<<10)
	chunks := 0
	part := func(_ []byte, end bool) error {
		if end {
			chunks++
		}
		return nil
	}
	allocs := testing.AllocsPerRun(20, func() {
		r.Reset(data)
		if err := Cut(r, small, buf, part); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 || chunks < 20*len(data)/small.Max {
		t.Fatalf("%v allocations for %d chunks, want 0", allocs, chunks/21)
	}
}

// BenchmarkCut measures chunking 64 MiB of random data with DefaultParams
// through Cut, in 1 MiB reads, as a client does a file.
func BenchmarkCut(b *testing.B) {
	data := randBytes(18, 64<<20)
	r := bytes.NewReader(data)
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(data)
		if err := Cut(r, DefaultParams, buf, func([]byte, bool) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSplitterBlocks feeds the same input to a Splitter in blocks of
// random sizes and checks it finds Cut's boundaries.
func TestSplitterBlocks(t *testing.T) {
	p := Params{Min: 1 << 10, Avg: 4 << 10, Max: 16 << 10}
	for seed := range uint64(4) {
		data := randBytes(40+seed, 300<<10)
		if seed == 3 {
			data = bytes.Repeat([]byte{7}, 100<<10) // no boundary: cut at Max
		}
		var want []int
		for _, pc := range chunkAll(t, bytes.NewReader(data), p) {
			want = append(want, len(pc.data))
		}
		sp, err := NewSplitter(p)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(seed, 9))
		var got []int
		size := 0
		for rest := data; len(rest) > 0; {
			block := rest[:min(len(rest), 1+r.IntN(40<<10))]
			rest = rest[len(block):]
			for len(block) > 0 {
				n, cut := sp.Split(block)
				size += n
				block = block[n:]
				if cut {
					got = append(got, size)
					size = 0
				}
			}
		}
		if sp.Len() != size {
			t.Fatalf("Len %d, fed %d since the last boundary", sp.Len(), size)
		}
		if size > 0 {
			got = append(got, size)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("seed %d: splitter cut %v, Cut %v", seed, got, want)
		}
	}
	if _, err := NewSplitter(Params{Min: 10, Avg: 64, Max: 128}); err == nil {
		t.Fatal("NewSplitter accepted Min below the window")
	}
}

// BenchmarkSplitter measures finding the boundaries of 64 MiB of random
// data fed in 1 MiB blocks, as a push does while it hashes and reads.
func BenchmarkSplitter(b *testing.B) {
	data := randBytes(18, 64<<20)
	sp, err := NewSplitter(DefaultParams)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		for off := 0; off < len(data); off += 1 << 20 {
			block := data[off : off+1<<20]
			for len(block) > 0 {
				n, _ := sp.Split(block)
				block = block[n:]
			}
		}
	}
}
