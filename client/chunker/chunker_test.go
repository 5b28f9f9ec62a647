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

// chunkAll runs a chunker over r to the end, copying each chunk.
func chunkAll(t testing.TB, r io.Reader, p Params) []piece {
	t.Helper()
	c, err := New(r, p)
	if err != nil {
		t.Fatal(err)
	}
	var out []piece
	for {
		ch, err := c.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, piece{ch.Offset, bytes.Clone(ch.Data)})
	}
	// io.EOF is sticky.
	if _, err := c.Next(); err != io.EOF {
		t.Fatalf("Next after EOF: %v, want io.EOF", err)
	}
	return out
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
			c, err := New(bytes.NewReader(data), small)
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.chunks {
				ch, err := c.Next()
				if err != nil {
					t.Fatalf("chunk %d: %v", i, err)
				}
				if ch.Offset != 0 || !bytes.Equal(ch.Data, data) {
					t.Fatalf("chunk %d: offset %d, %d bytes; want the whole input", i, ch.Offset, len(ch.Data))
				}
			}
			if _, err := c.Next(); err != io.EOF {
				t.Fatalf("got %v, want io.EOF", err)
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
}

// TestBufferGrowth uses a Max above the initial 1 MiB buffer, so that the
// buffer has to grow while a chunk is in progress (runs of zeros are cut only
// at Max) and is later compacted.
func TestBufferGrowth(t *testing.T) {
	p := Params{Min: 64 << 10, Avg: 256 << 10, Max: 2 << 20}
	data := append(make([]byte, 5<<20), randBytes(19, 1<<20)...)
	want := chunkAll(t, bytes.NewReader(data), p)
	checkChunks(t, data, want, p)
	if len(want[0].data) != p.Max || len(want[1].data) != p.Max {
		t.Fatalf("zeros not cut at Max: %d, %d", len(want[0].data), len(want[1].data))
	}
	got := chunkAll(t, &shortReader{bytes.NewReader(data), rand.New(rand.NewPCG(5, 6)), 700 << 10}, p)
	if wb, gb := boundaries(want), boundaries(got); !slices.Equal(gb, wb) {
		t.Fatalf("boundaries %v, want %v", gb, wb)
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
		if _, nerr := New(bytes.NewReader(nil), tc.p); nerr == nil || nerr.Error() != err.Error() {
			t.Errorf("%+v: New returned %v, want %v", tc.p, nerr, err)
		}
	}
}

func TestReaderError(t *testing.T) {
	boom := errors.New("boom")
	data := randBytes(16, 1<<20)
	full := chunkAll(t, bytes.NewReader(data), small)
	r := io.MultiReader(bytes.NewReader(data[:len(data)/2]), iotest.ErrReader(boom))
	c, err := New(r, small)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for {
		ch, err := c.Next()
		if err != nil {
			if err != boom {
				t.Fatalf("got %v, want boom", err)
			}
			break
		}
		if !bytes.Equal(ch.Data, full[n].data) {
			t.Fatalf("chunk %d before the error differs", n)
		}
		n++
	}
	if n == 0 || int64(len(data)/2)-(full[n-1].off+int64(len(full[n-1].data))) > int64(small.Max) {
		t.Fatalf("only %d chunks returned before the error", n)
	}
	if _, err := c.Next(); err != boom {
		t.Fatalf("error not sticky: %v", err)
	}
}

type stuckReader struct{}

func (stuckReader) Read([]byte) (int, error) { return 0, nil }

func TestNoProgress(t *testing.T) {
	c, _ := New(stuckReader{}, small)
	if _, err := c.Next(); err != io.ErrNoProgress {
		t.Fatalf("got %v, want io.ErrNoProgress", err)
	}
}

// badReader claims to have read more than it was given room for.
type badReader struct{}

func (badReader) Read(p []byte) (int, error) { return len(p) + 1, nil }

func TestBadReader(t *testing.T) {
	c, _ := New(badReader{}, small)
	if _, err := c.Next(); err == nil || !strings.Contains(err.Error(), "invalid count") {
		t.Fatalf("got %v, want an invalid count error", err)
	}
}

func TestNoAllocsPerChunk(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{17})
	c, err := New(rng, small) // an endless stream
	if err != nil {
		t.Fatal(err)
	}
	for range 200 { // let the buffer reach full size
		if _, err := c.Next(); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := c.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per chunk, want 0", allocs)
	}
}

// cycleReader returns the bytes of d over and over, never reaching EOF.
type cycleReader struct {
	d   []byte
	off int
}

func (r *cycleReader) Read(p []byte) (int, error) {
	n := copy(p, r.d[r.off:])
	r.off = (r.off + n) % len(r.d)
	return n, nil
}

// BenchmarkChunker measures chunking 64 MiB of random data with DefaultParams.
// "file" starts a new Chunker for each pass, as a client does per file, and
// closes it, so the next one reuses its buffer; "file-unreleased" does not
// close it and so pays for a fresh buffer each time; "stream" keeps one Chunker with a full-size buffer running
// over an endless stream and so measures the steady state: reads into the
// buffer, moving the unfinished chunk to its front, and the boundary scan.
func BenchmarkChunker(b *testing.B) {
	data := randBytes(18, 64<<20)
	file := func(b *testing.B, release bool) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			c, err := New(bytes.NewReader(data), DefaultParams)
			if err != nil {
				b.Fatal(err)
			}
			for {
				if _, err := c.Next(); err == io.EOF {
					break
				} else if err != nil {
					b.Fatal(err)
				}
			}
			if release {
				c.Close()
			}
		}
	}
	b.Run("file", func(b *testing.B) { file(b, true) })
	b.Run("file-unreleased", func(b *testing.B) { file(b, false) })
	b.Run("stream", func(b *testing.B) {
		c, err := New(&cycleReader{d: data}, DefaultParams)
		if err != nil {
			b.Fatal(err)
		}
		var done int64 // input consumed, as the end of the last chunk
		next := func() {
			ch, err := c.Next()
			if err != nil {
				b.Fatal(err)
			}
			done = ch.Offset + int64(len(ch.Data))
		}
		for done < 4*int64(len(data)) { // until the buffer is full-size
			next()
		}
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			for target := done + int64(len(data)); done < target; {
				next()
			}
		}
	})
}

// TestCloseReusesBuffer checks that a chunker started after another was
// closed chunks the same input to the same boundaries (the reused buffer's
// old bytes must not leak into the new stream) and that Next after Close
// fails.
func TestCloseReusesBuffer(t *testing.T) {
	p := Params{Min: 1 << 10, Avg: 4 << 10, Max: 16 << 10}
	a, b := randBytes(31, 200<<10), randBytes(32, 150<<10)
	want := func(data []byte) []int {
		c, err := New(bytes.NewReader(data), p)
		if err != nil {
			t.Fatal(err)
		}
		var sizes []int
		for {
			ch, err := c.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ch.Data, data[ch.Offset:ch.Offset+int64(len(ch.Data))]) {
				t.Fatalf("chunk at %d holds other bytes", ch.Offset)
			}
			sizes = append(sizes, len(ch.Data))
		}
		c.Close()
		if _, err := c.Next(); err == nil || err == io.EOF {
			t.Fatalf("Next after Close: %v", err)
		}
		return sizes
	}
	first := want(a)
	want(b)
	if again := want(a); !slices.Equal(first, again) {
		t.Fatalf("boundaries changed after a buffer was reused: %v vs %v", first, again)
	}
}

// TestSplitterMatchesChunker feeds the same input to a Splitter in blocks
// of random sizes and checks it finds the Chunker's boundaries.
func TestSplitterMatchesChunker(t *testing.T) {
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
			t.Fatalf("seed %d: splitter cut %v, chunker %v", seed, got, want)
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
