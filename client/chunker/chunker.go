// Package chunker splits a byte stream into content-defined chunks.
//
// It implements FastCDC-style chunking: a gear rolling hash is computed over
// the stream and a chunk boundary is placed where the top bits of the hash
// are all zero. Because the hash only sees the last 64 bytes, the boundaries
// depend on local content, so an insertion or deletion inside a large file (a
// model's safetensors or GGUF blob, say) only changes the chunks around the
// edit; the boundaries after it fall back into step with those of the
// original file.
//
// Normalized chunking keeps chunk sizes close to the average: no boundary is
// taken below Params.Min, a stricter mask (log2(Avg)+1 bits) applies up to
// Params.Avg, a looser one (log2(Avg)-1 bits) from there up to Params.Max, and
// a chunk is cut unconditionally at Params.Max. This is level 1
// normalization; on random data it re-synchronised after an edit more
// reliably than level 2 (±2 bits), which more often carried a shifted
// boundary on through several chunks. On random data chunks average about
// 1.2 × Avg.
//
// Precisely, with h = 0 at the start of each chunk and h = h<<1 + gear[x]
// (mod 2^64) after each byte x, the chunk ends after the byte that brings its
// length to L when
//
//   - Min <= L < Avg and the top log2(Avg)+1 bits of h are zero, or
//   - Avg <= L < Max and the top log2(Avg)-1 bits of h are zero, or
//   - L == Max, or the input ends.
//
// Since Min >= 64, h at every tested position depends only on the 64 bytes
// ending there. The boundaries are therefore a pure function of the input
// bytes and the Params, independent of how the io.Reader splits its reads.
// This rule and the gear table are part of modelx's on-disk format: changing
// either changes every chunk digest.
package chunker

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// Params bound chunk sizes in bytes.
type Params struct{ Min, Avg, Max int }

// DefaultParams are the chunk sizes used for model files: Min 4 MiB, Avg 16
// MiB, Max 64 MiB.
var DefaultParams = Params{Min: 4 << 20, Avg: 16 << 20, Max: 64 << 20}

// window is the number of bytes the gear hash depends on: each byte is shifted
// out of the 64-bit state after 64 further bytes.
const window = 64

// Validate reports whether p is usable: Min >= 64, Min < Avg < Max and Avg a
// power of two. The error names the offending field.
func (p Params) Validate() error {
	switch {
	case p.Min < window:
		return fmt.Errorf("chunker: Params.Min is %d, must be at least %d", p.Min, window)
	case p.Avg <= p.Min:
		return fmt.Errorf("chunker: Params.Avg is %d, must be greater than Min (%d)", p.Avg, p.Min)
	case p.Avg&(p.Avg-1) != 0:
		return fmt.Errorf("chunker: Params.Avg is %d, must be a power of two", p.Avg)
	case p.Max <= p.Avg:
		return fmt.Errorf("chunker: Params.Max is %d, must be greater than Avg (%d)", p.Max, p.Avg)
	}
	return nil
}

// gear holds the random value mixed into the hash for each byte value.
//
// The table is part of the on-disk format: chunk boundaries, and hence the
// digests of stored chunks, depend on it. It must never change — not its seed,
// not the generator, not the order of the values.
var gear = func() (t [256]uint64) {
	// splitmix64, seeded with the ASCII bytes of "modelx".
	s := uint64(0x6d6f64656c78)
	for i := range t {
		s += 0x9e3779b97f4a7c15
		z := s
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		t[i] = z ^ z>>31
	}
	return t
}()

// maxEmptyReads is how many (0, nil) reads in a row Cut tolerates before it
// gives up with io.ErrNoProgress.
const maxEmptyReads = 100

// Cut reads r to its end through buf and hands every byte of it to part,
// in order, cut into chunks: part receives the next bytes of the chunk in
// progress, and end when the chunk ends after them; the last chunk ends
// with the input (a final call may then carry no bytes). No chunk is held
// in memory: each read of r is scanned for boundaries and handed on, so
// the caller hashes or sends the chunk's bytes as they pass (part must not
// keep b). The boundaries do not depend on how r splits its reads, nor on
// len(buf). An empty input makes no call. An error from r, or from part,
// ends Cut and is returned; so is p.Validate's error.
func Cut(r io.Reader, p Params, buf []byte, part func(b []byte, end bool) error) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if len(buf) == 0 {
		return errors.New("chunker: Cut needs a buffer")
	}
	sp := newSplitter(p)
	empty := 0
	for {
		n, err := r.Read(buf)
		if n < 0 || n > len(buf) {
			return errors.New("chunker: reader returned invalid count")
		}
		if n == 0 && err == nil {
			if empty++; empty >= maxEmptyReads {
				return io.ErrNoProgress
			}
			continue
		}
		empty = 0
		for block := buf[:n]; len(block) > 0; {
			k, end := sp.Split(block)
			if perr := part(block[:k], end); perr != nil {
				return perr
			}
			block = block[k:]
		}
		switch {
		case err == io.EOF && sp.n > 0:
			return part(nil, true)
		case err == io.EOF:
			return nil
		case err != nil:
			return err
		}
	}
}

// Splitter finds chunk boundaries in input fed to it block by block, for a
// caller that keeps no chunk in memory: it hashes or sends each block's
// bytes itself, up to the boundaries Split reports. The boundaries are
// the same however the input is cut into blocks. Cut is the loop that
// feeds one from a reader.
type Splitter struct {
	p Params
	// maskS applies to chunk lengths in [Min, Avg), maskL to [Avg, Max).
	// Both select high bits of the hash, which depend on the most bytes.
	maskS, maskL uint64
	n            int    // bytes of the chunk in progress seen so far
	h            uint64 // the gear hash after them
}

// NewSplitter returns a Splitter for p, or p.Validate's error.
func NewSplitter(p Params) (*Splitter, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	s := newSplitter(p)
	return &s, nil
}

func newSplitter(p Params) Splitter {
	b := bits.TrailingZeros64(uint64(p.Avg)) // log2(Avg), at least 7
	return Splitter{p: p, maskS: ^uint64(0) << (64 - (b + 1)), maskL: ^uint64(0) << (64 - (b - 1))}
}

func (s *Splitter) reset() { s.n, s.h = 0, 0 }

// Len is the length of the chunk in progress: the bytes fed since the last
// boundary.
func (s *Splitter) Len() int { return s.n }

// Split takes the next bytes of the input. It returns how many of them
// belong to the chunk in progress and whether the chunk ends after them;
// when it does, the rest of block starts the next chunk and is fed again.
// The last chunk ends with the input, which the caller knows and Split
// does not: a final Len() > 0 is one more chunk.
//
// With the chunk's bytes numbered from 0, byte i is where a chunk of length
// i+1 would end. Bytes below Min-64 are skipped; bytes Min-64 .. Min-2 are
// hashed without testing, so that at the first test the hash covers a full
// 64-byte window and is therefore independent of where the chunk began.
func (s *Splitter) Split(block []byte) (int, bool) {
	minSize, avgSize, maxSize := s.p.Min, s.p.Avg, s.p.Max
	base := s.n // chunk position of block[0]
	if len(block) > maxSize-base {
		block = block[:maxSize-base]
	}
	end := base + len(block)
	i, h := base, s.h

	// Skip: no boundary is possible and the hash would be shifted out.
	if i < minSize-window {
		i = min(minSize-window, end)
	}
	// Warm up the hash.
	if lim := min(minSize-1, end); i < lim {
		for _, b := range block[i-base : lim-base] {
			h = h<<1 + gear[b]
		}
		i = lim
	}
	// Lengths [Min, Avg): strict mask.
	if lim := min(avgSize-1, end); i < lim {
		var k int
		if k, h = gearScan(block[i-base:lim-base], h, s.maskS); k > 0 {
			s.reset()
			return i - base + k, true
		}
		i = lim
	}
	// Lengths [Avg, Max): loose mask.
	if lim := min(maxSize-1, end); i < lim {
		var k int
		if k, h = gearScan(block[i-base:lim-base], h, s.maskL); k > 0 {
			s.reset()
			return i - base + k, true
		}
		i = lim
	}
	if end == maxSize {
		s.reset()
		return len(block), true
	}
	s.n, s.h = end, h
	return len(block), false
}

// gearScan feeds the bytes of d into the gear hash h until h&mask == 0. It
// returns the number of bytes consumed up to and including that point, or 0
// if there is none in d, together with the hash after the last byte consumed.
//
// The loop handles four bytes per iteration. Writing g(x) for gear[x], the
// hash after each of the bytes b0..b3 is
//
//	h0 = h<<1 + g(b0)
//	h1 = h<<2 + g(b0)<<1 + g(b1)
//	h2 = h<<3 + g(b0)<<2 + g(b1)<<1 + g(b2)
//	h3 = h<<4 + g(b0)<<3 + g(b1)<<2 + g(b2)<<1 + g(b3)
//
// The sums of table values do not depend on h, so the chain of dependent
// operations from one iteration to the next is one shift and one add instead
// of four of each; this runs about 1.6 times as fast as the obvious loop.
func gearScan(d []byte, h, mask uint64) (int, uint64) {
	i := 0
	for ; i+4 <= len(d); i += 4 {
		p := d[i : i+4 : i+4] // one bounds check for four bytes
		g0 := gear[p[0]]
		t1 := g0<<1 + gear[p[1]]
		t2 := t1<<1 + gear[p[2]]
		t3 := t2<<1 + gear[p[3]]
		if h0 := h<<1 + g0; h0&mask == 0 {
			return i + 1, h0
		}
		if h1 := h<<2 + t1; h1&mask == 0 {
			return i + 2, h1
		}
		if h2 := h<<3 + t2; h2&mask == 0 {
			return i + 3, h2
		}
		h = h<<4 + t3
		if h&mask == 0 {
			return i + 4, h
		}
	}
	for j, b := range d[i:] {
		h = h<<1 + gear[b]
		if h&mask == 0 {
			return i + j + 1, h
		}
	}
	return 0, h
}
