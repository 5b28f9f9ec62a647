package pack

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/spec"
)

// fuzzPack builds a real pack of a few files for the seed corpus.
func fuzzPack(t testing.TB) ([]byte, []spec.PackedFile) {
	fs := files{
		"a/config.json": []byte(`{"hidden_size": 768, "layers": 12}`),
		"a/vocab.txt":   bytes.Repeat([]byte("token\n"), 300),
		"empty":         nil,
		"z/名前.txt":      []byte("x"),
	}
	data, recs, err := Build(nil, Group(fs.entries())[0], fs.open)
	if err != nil {
		t.Fatal(err)
	}
	return data, recs
}

// rleFrame returns a zstd frame of blocks RLE blocks of blockSize copies of
// one byte: a few bytes that decompress to blocks*blockSize bytes. With fcs
// >= 0 the header declares that content size; with fcs < 0 it declares none.
func rleFrame(blocks, blockSize int, fcs int64) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0xFD2FB528)
	if fcs >= 0 {
		b = append(b, 0xC0) // 8-byte Frame_Content_Size, no single segment, no checksum
		b = append(b, 0x38) // window 128 KiB
		b = binary.LittleEndian.AppendUint64(b, uint64(fcs))
	} else {
		b = append(b, 0x00, 0x38)
	}
	for i := range blocks {
		hdr := uint32(blockSize)<<3 | 1<<1 // RLE
		if i == blocks-1 {
			hdr |= 1 // last block
		}
		b = append(b, byte(hdr), byte(hdr>>8), byte(hdr>>16), 'A')
	}
	return b
}

// allocated returns the bytes allocated while fn runs. The fuzzer runs one
// input at a time in each worker process, so this is fn's allocation (plus
// noise from the runtime).
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// decodeSlack is what Decode may allocate beyond the record's size: the
// decoder's own block buffers, and one block of overshoot before it notices
// the frame is longer than the record says.
const decodeSlack = 8 << 20

// FuzzExtract plays a hostile registry: it controls the pack bytes and every
// field of the packed file's record. Frame and Decode must never panic; a
// frame returned lies inside the pack; Decode allocates at most about the
// record's size (bounded by MaxPackedFileSize) whatever the frame claims; and
// what Decode returns always has the record's size and digest.
func FuzzExtract(f *testing.F) {
	data, recs := fuzzPack(f)
	for _, r := range recs {
		f.Add(data, r.Offset, r.Length, r.Size, string(r.Digest))
	}
	r := recs[1]
	f.Add(data, r.Offset, r.Length, r.Size+1, string(r.Digest))                          // size lies
	f.Add(data, r.Offset, r.Length, int64(-1), string(r.Digest))                         // negative size
	f.Add(data, int64(1), int64(1<<63-1), r.Size, string(r.Digest))                      // offset+length overflows
	f.Add(data, int64(-1), int64(2), r.Size, string(r.Digest))                           // negative offset
	f.Add(rleFrame(4, 128<<10, -1), int64(0), int64(28), int64(10), "sha256:0")          // bomb, no content size
	f.Add(rleFrame(1, 16, 512<<20), int64(0), int64(18), int64(10), "sha256:0")          // claims 512 MiB
	f.Add(append(data, data...), int64(0), int64(2*len(data)), r.Size, string(r.Digest)) // two packs back to back
	f.Add(data, r.Offset, r.Length, r.Size, "0")                                         // digest without ':'

	f.Fuzz(func(t *testing.T, pack []byte, offset, length, size int64, dgst string) {
		rec := spec.PackedFile{Name: "f", Digest: digest.Digest(dgst), Size: size, Offset: offset, Length: length}
		if frame, err := Frame(pack, rec); err == nil {
			if offset < 0 || length <= 0 || offset > int64(len(pack)) || length > int64(len(pack))-offset {
				t.Fatalf("Frame accepted [%d, +%d) in a %d-byte pack", offset, length, len(pack))
			}
			if int64(len(frame)) != length || !bytes.Equal(frame, pack[offset:offset+length]) {
				t.Fatalf("Frame returned %d bytes, not pack[%d:+%d]", len(frame), offset, length)
			}
			checkDecode(t, frame, rec)
		}
		checkDecode(t, pack, rec)
	})
}

func checkDecode(t *testing.T, frame []byte, rec spec.PackedFile) {
	var out []byte
	var err error
	n := allocated(func() { out, err = Decode(frame, rec) })
	if limit := uint64(max(min(rec.Size, MaxPackedFileSize), 0))*3 + decodeSlack; n > limit {
		t.Fatalf("Decode of a %d-byte frame for a %d-byte record allocated %d bytes (limit %d)", len(frame), rec.Size, n, limit)
	}
	if err != nil {
		return
	}
	if int64(len(out)) != rec.Size || digest.FromBytes(out) != rec.Digest {
		t.Fatalf("Decode returned %d bytes with digest %s for a record of %d bytes, %s", len(out), digest.FromBytes(out), rec.Size, rec.Digest)
	}
}

// TestDecodeRefusesBombs checks that a tiny frame that decompresses to far
// more than its record says is refused without allocating that much.
func TestDecodeRefusesBombs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"1 GiB of RLE blocks, no content size", rleFrame(8192, 128<<10, -1)},
		{"header claims 1 GiB", rleFrame(8192, 128<<10, 1<<30)},
		{"header claims 60 GiB", rleFrame(1, 16, 60<<30)},
		{"header claims 16 bytes, blocks make 1 GiB", rleFrame(8192, 128<<10, 16)},
		{"many small frames", bytes.Repeat(rleFrame(1, 16, 16), 1<<16)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := spec.PackedFile{Name: "bomb", Digest: digest.FromString("x"), Size: 16, Length: int64(len(tc.frame))}
			var err error
			n := allocated(func() { _, err = Decode(tc.frame, rec) })
			if err == nil || !strings.Contains(err.Error(), "bomb") {
				t.Errorf("Decode: %v, want an error naming the file", err)
			}
			if n > decodeSlack {
				t.Errorf("Decode of a %d-byte frame for a 16-byte record allocated %d bytes", len(tc.frame), n)
			}
		})
	}
}

// TestExtractHostileRecords checks records a hostile manifest could carry:
// each is refused, none panics.
func TestExtractHostileRecords(t *testing.T) {
	data, recs := fuzzPack(t)
	for _, rec := range []spec.PackedFile{
		{Name: "overflow", Offset: 1, Length: 1<<63 - 1},
		{Name: "overflow2", Offset: 1<<62 + 1<<61, Length: 1<<62 + 1<<61},
		{Name: "negative", Offset: -1, Length: 2},
	} {
		if _, err := Frame(data, rec); err == nil {
			t.Errorf("Frame accepted %+v", rec)
		}
	}
	rec := recs[1]
	rec.Size = -1
	if _, err := Decode(data[rec.Offset:rec.Offset+rec.Length], rec); err == nil {
		t.Error("Decode accepted a negative size")
	}
	rec.Size = MaxPackedFileSize + 1
	if _, err := Decode(data[rec.Offset:rec.Offset+rec.Length], rec); err == nil {
		t.Error("Decode accepted a size over MaxPackedFileSize")
	}
}
