package chunker

import "testing"

func loop1(d []byte, h, m uint64) (int, uint64) {
	for i, b := range d {
		h = h<<1 + gear[b]
		if h&m == 0 {
			return i + 1, h
		}
	}
	return -1, h
}

func loop2(d []byte, h, m uint64) (int, uint64) {
	i := 0
	for ; i+2 <= len(d); i += 2 {
		p := d[i : i+2 : i+2]
		g0 := gear[p[0]]
		g1 := gear[p[1]]
		h0 := h<<1 + g0
		h = h<<2 + (g0<<1 + g1)
		if h0&m == 0 {
			return i + 1, h0
		}
		if h&m == 0 {
			return i + 2, h
		}
	}
	for ; i < len(d); i++ {
		h = h<<1 + gear[d[i]]
		if h&m == 0 {
			return i + 1, h
		}
	}
	return -1, h
}

func loop4(d []byte, h, m uint64) (int, uint64) {
	i := 0
	for ; i+4 <= len(d); i += 4 {
		p := d[i : i+4 : i+4]
		g0 := gear[p[0]]
		g1 := gear[p[1]]
		g2 := gear[p[2]]
		g3 := gear[p[3]]
		t1 := g0<<1 + g1
		t2 := t1<<1 + g2
		t3 := t2<<1 + g3
		h0 := h<<1 + g0
		h1 := h<<2 + t1
		h2 := h<<3 + t2
		h = h<<4 + t3
		if h0&m == 0 {
			return i + 1, h0
		}
		if h1&m == 0 {
			return i + 2, h1
		}
		if h2&m == 0 {
			return i + 3, h2
		}
		if h&m == 0 {
			return i + 4, h
		}
	}
	for ; i < len(d); i++ {
		h = h<<1 + gear[d[i]]
		if h&m == 0 {
			return i + 1, h
		}
	}
	return -1, h
}

var sink int

func benchLoop(b *testing.B, f func([]byte, uint64, uint64) (int, uint64)) {
	d := randBytes(1, 16<<20)
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		n, _ := f(d, 0, ^uint64(0)) // never matches practically
		sink += n
	}
}

func BenchmarkLoop1(b *testing.B) { benchLoop(b, loop1) }
func BenchmarkLoop2(b *testing.B) { benchLoop(b, loop2) }
func BenchmarkLoop4(b *testing.B) { benchLoop(b, loop4) }

func TestLoopsAgree(t *testing.T) {
	d := randBytes(2, 1<<20)
	for _, m := range []uint64{0xffff<<48, 0x3f<<58, 0xfff<<52} {
		for off := 0; off < len(d); {
			a, ha := loop1(d[off:], 0, m)
			b, hb := loop2(d[off:], 0, m)
			c, hc := loop4(d[off:], 0, m); e, he := loop8(d[off:], 0, m); if e != a || he != ha { t.Fatal("8", off) }
			if a != b || a != c || ha != hb || ha != hc {
				t.Fatal(off, a, b, c)
			}
			if a < 0 { break }
			off += a
		}
	}
}

func loop8(d []byte, h, m uint64) (int, uint64) {
	i := 0
	for ; i+8 <= len(d); i += 8 {
		p := d[i : i+8 : i+8]
		g0 := gear[p[0]]
		g1 := gear[p[1]]
		g2 := gear[p[2]]
		g3 := gear[p[3]]
		g4 := gear[p[4]]
		g5 := gear[p[5]]
		g6 := gear[p[6]]
		g7 := gear[p[7]]
		t1 := g0<<1 + g1
		t2 := t1<<1 + g2
		t3 := t2<<1 + g3
		t4 := t3<<1 + g4
		t5 := t4<<1 + g5
		t6 := t5<<1 + g6
		t7 := t6<<1 + g7
		h0 := h<<1 + g0
		h1 := h<<2 + t1
		h2 := h<<3 + t2
		h3 := h<<4 + t3
		h4 := h<<5 + t4
		h5 := h<<6 + t5
		h6 := h<<7 + t6
		h7 := h<<8 + t7
		if (h0|h1|h2|h3)&m != m && false {
		}
		if h0&m == 0 {
			return i + 1, h0
		}
		if h1&m == 0 {
			return i + 2, h1
		}
		if h2&m == 0 {
			return i + 3, h2
		}
		if h3&m == 0 {
			return i + 4, h3
		}
		if h4&m == 0 {
			return i + 5, h4
		}
		if h5&m == 0 {
			return i + 6, h5
		}
		if h6&m == 0 {
			return i + 7, h6
		}
		h = h7
		if h&m == 0 {
			return i + 8, h
		}
	}
	for ; i < len(d); i++ {
		h = h<<1 + gear[d[i]]
		if h&m == 0 {
			return i + 1, h
		}
	}
	return -1, h
}

func BenchmarkLoop8(b *testing.B) { benchLoop(b, loop8) }
