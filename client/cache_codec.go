package client

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"os"
	"strings"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/client/chunker"
	"modelx.io/modelx/spec"
)

// The hash cache is read at the start of every push and pull that is not
// a no-op, and written at the end: with 20,000 files it is megabytes of
// JSON, which took longer to decode and encode than everything else a
// one-file push does. It is stored in a compact binary form instead:
//
//	"MXC1" | fields | crc32c of everything before it (4 bytes, little-endian)
//
// where fields are uvarints (counts, inodes, modes), zigzag varints
// (sizes, times, offsets), strings as a uvarint length and bytes, and
// digests as one byte 1 and the 32 bytes of a sha256 (0 and a string for
// any other). A cache that does not decode exactly is no cache.

const cacheMagic = "MXC1"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type cacheEncoder struct{ b []byte }

func (e *cacheEncoder) uint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *cacheEncoder) int(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *cacheEncoder) str(s string) {
	e.uint(uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *cacheEncoder) digest(d digest.Digest) {
	if hexPart, ok := strings.CutPrefix(string(d), "sha256:"); ok && len(hexPart) == 64 {
		var sum [32]byte
		if _, err := hex.Decode(sum[:], []byte(hexPart)); err == nil && strings.ToLower(hexPart) == hexPart {
			e.b = append(e.b, 1)
			e.b = append(e.b, sum[:]...)
			return
		}
	}
	e.b = append(e.b, 0)
	e.str(string(d))
}

// encodeCache returns the binary form of a cache's data.
func encodeCache(version int, params chunker.Params, files map[string]cachedFile, packs map[string]cachedPack) []byte {
	e := &cacheEncoder{b: make([]byte, 0, 64+len(files)*96)}
	e.b = append(e.b, cacheMagic...)
	e.uint(uint64(version))
	e.int(int64(params.Min))
	e.int(int64(params.Avg))
	e.int(int64(params.Max))
	e.uint(uint64(len(files)))
	for name, f := range files {
		e.str(name)
		e.int(f.Key.Size)
		e.int(f.Key.ModTime)
		e.uint(f.Key.Inode)
		e.digest(f.Digest)
		e.uint(uint64(len(f.Chunks)))
		for _, ch := range f.Chunks {
			e.digest(ch.Digest)
			e.int(ch.Size)
		}
		e.str(f.Boot)
	}
	e.uint(uint64(len(packs)))
	for key, p := range packs {
		e.str(key)
		e.digest(p.Digest)
		e.int(p.Size)
		e.uint(uint64(len(p.Files)))
		for _, pf := range p.Files {
			e.str(pf.Name)
			e.digest(pf.Digest)
			e.int(pf.Size)
			e.uint(uint64(pf.Mode))
			e.int(pf.Offset)
			e.int(pf.Length)
		}
	}
	return binary.LittleEndian.AppendUint32(e.b, crc32.Checksum(e.b, castagnoli))
}

var errCacheCorrupt = errors.New("corrupt cache")

type cacheDecoder struct {
	b   []byte
	err error
}

func (d *cacheDecoder) fail() { d.err, d.b = errCacheCorrupt, nil }

func (d *cacheDecoder) uint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *cacheDecoder) int() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a count of items of at least min bytes each, refusing one
// the rest of the data cannot hold.
func (d *cacheDecoder) count(min int) int {
	n := d.uint()
	if n > uint64(len(d.b)/min) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *cacheDecoder) str() string {
	n := d.uint()
	if n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *cacheDecoder) digest() digest.Digest {
	if len(d.b) == 0 {
		d.fail()
		return ""
	}
	kind := d.b[0]
	d.b = d.b[1:]
	switch {
	case kind == 1 && len(d.b) >= 32:
		var buf [7 + 64]byte
		copy(buf[:], "sha256:")
		hex.Encode(buf[7:], d.b[:32])
		d.b = d.b[32:]
		return digest.Digest(buf[:])
	case kind == 0:
		return digest.Digest(d.str())
	}
	d.fail()
	return ""
}

// decodeCache reads what encodeCache wrote; an error means no cache.
func decodeCache(data []byte) (version int, params chunker.Params, files map[string]cachedFile, packs map[string]cachedPack, err error) {
	if len(data) < len(cacheMagic)+4 || string(data[:len(cacheMagic)]) != cacheMagic {
		return 0, params, nil, nil, errCacheCorrupt
	}
	body := data[:len(data)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(data[len(data)-4:]) {
		return 0, params, nil, nil, errCacheCorrupt
	}
	d := &cacheDecoder{b: body[len(cacheMagic):]}
	version = int(d.uint())
	params = chunker.Params{Min: int(d.int()), Avg: int(d.int()), Max: int(d.int())}
	n := d.count(6)
	files = make(map[string]cachedFile, n)
	for range n {
		name := d.str()
		f := cachedFile{Key: fileKey{Size: d.int(), ModTime: d.int(), Inode: d.uint()}, Digest: d.digest()}
		if nc := d.count(2); nc > 0 {
			f.Chunks = make([]spec.Chunk, nc)
			for i := range f.Chunks {
				f.Chunks[i] = spec.Chunk{Digest: d.digest(), Size: d.int()}
			}
		}
		f.Boot = d.str()
		files[name] = f
	}
	n = d.count(4)
	packs = make(map[string]cachedPack, n)
	for range n {
		key := d.str()
		p := cachedPack{Digest: d.digest(), Size: d.int()}
		if nf := d.count(7); nf > 0 {
			p.Files = make([]spec.PackedFile, nf)
			for i := range p.Files {
				p.Files[i] = spec.PackedFile{Name: d.str(), Digest: d.digest(), Size: d.int(), Mode: os.FileMode(d.uint()), Offset: d.int(), Length: d.int()}
			}
		}
		packs[key] = p
	}
	if d.err != nil || len(d.b) != 0 {
		return 0, params, nil, nil, errCacheCorrupt
	}
	return version, params, files, packs, nil
}
