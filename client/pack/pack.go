// Package pack writes and reads modelx packs: many small files in one blob,
// each file its own zstd frame, concatenated in path order. The bytes are a
// pure function of the files' paths and contents (fixed encoder settings, no
// times or owners), so the same files always make the same pack digest, and
// any one file can be fetched with a Range request and verified alone.
package pack

import (
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/content"
	"modelx.io/modelx/spec"
)

// Entry is one file to pack.
type Entry struct {
	Name   string
	Mode   os.FileMode
	Size   int64
	Digest digest.Digest
}

// Grouping bounds: a group ends after a file whose path hash hits the
// boundary condition (so groups depend on paths, not contents), or when it
// reaches maxGroupFiles files or maxGroupBytes bytes.
const (
	boundaryModulus = 256 // see docs/formats.md
	maxGroupFiles   = 1024
	maxGroupBytes   = 16 << 20
)

// Group splits entries, sorted by name, into packs. Boundaries fall after
// files whose path hash hits a fixed condition, so editing a file changes
// only the pack that holds it, and adding or removing one changes at most
// that pack and its neighbour.
func Group(entries []Entry) [][]Entry {
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	var groups [][]Entry
	start := 0
	var bytes int64
	for i, e := range sorted {
		bytes += e.Size
		h := fnv.New64a()
		h.Write([]byte(e.Name))
		if h.Sum64()%boundaryModulus == 0 || i-start+1 >= maxGroupFiles || bytes >= maxGroupBytes || i == len(sorted)-1 {
			groups = append(groups, sorted[start:i+1])
			start, bytes = i+1, 0
		}
	}
	return groups
}

var (
	encoderOnce sync.Once
	encoder     *zstd.Encoder
	decoder     *zstd.Decoder
)

// The encoder settings are part of the format: changing them changes pack
// digests and so defeats deduplication against packs already pushed.
func codecs() (*zstd.Encoder, *zstd.Decoder) {
	encoderOnce.Do(func() {
		var err error
		// Concurrency only sets how many EncodeAll calls may run at
		// once (packs are built in parallel); each frame is encoded on
		// one goroutine either way, so it does not change the bytes.
		encoder, err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithEncoderCRC(true), zstd.WithZeroFrames(true), zstd.WithLowerEncoderMem(false),
			zstd.WithWindowSize(1<<20))
		if err != nil {
			panic(err)
		}
		// A hostile registry controls the frames: DecodeAllCapLimit makes
		// DecodeAll stop at the capacity Decode gives it (the record's
		// size) instead of growing its output to whatever a tiny frame
		// claims or expands to (a "zip bomb": 32 KiB of RLE blocks make
		// 1 GiB), and no frame may need more than MaxPackedFileSize.
		decoder, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(MaxPackedFileSize),
			zstd.WithDecodeAllCapLimit(true))
		if err != nil {
			panic(err)
		}
	})
	return encoder, decoder
}

// Build encodes the files of one group into a pack, reading each through
// open, and returns the pack and the files' records with frame offsets. The
// pack is appended to dst[:0], so a caller can reuse a buffer. Each file's
// content is checked against its Entry's size and digest, so a file that
// changed since it was hashed fails the pack instead of corrupting it; an
// Entry without a Digest is hashed in the same read, and its record carries
// the digest.
func Build(dst []byte, entries []Entry, open func(name string) (io.ReadCloser, error)) ([]byte, []spec.PackedFile, error) {
	enc, _ := codecs()
	var bound int
	for _, e := range entries {
		bound += enc.MaxEncodedSize(int(e.Size))
	}
	out := slices.Grow(dst[:0], bound)
	files := make([]spec.PackedFile, 0, len(entries))
	for _, e := range entries {
		data, err := readEntry(&e, open)
		if err != nil {
			return nil, nil, err
		}
		offset := len(out)
		out = enc.EncodeAll(data, out)
		files = append(files, spec.PackedFile{Name: e.Name, Digest: e.Digest, Size: e.Size, Mode: e.Mode, Offset: int64(offset), Length: int64(len(out) - offset)})
	}
	return out, files, nil
}

// readEntry reads e's file, checks its size and digest, and fills in the
// digest when e has none.
func readEntry(e *Entry, open func(string) (io.ReadCloser, error)) ([]byte, error) {
	rc, err := open(e.Name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data := make([]byte, e.Size+1)
	n, err := io.ReadFull(rc, data)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, fmt.Errorf("read %s: %w", e.Name, err)
	}
	data = data[:n]
	d := digest.FromBytes(data)
	if int64(n) != e.Size || (e.Digest != "" && d != e.Digest) {
		return nil, fmt.Errorf("%s changed while it was being pushed; push again", e.Name)
	}
	e.Digest = d
	return data, nil
}

// MaxPackedFileSize bounds the size a packed file's record may claim: packs
// hold small files only, and Decode allocates up to this much.
const MaxPackedFileSize = 64 << 20

// Decode decompresses one file's frame and checks its size and digest.
func Decode(frame []byte, f spec.PackedFile) ([]byte, error) {
	_, dec := codecs()
	if f.Size < 0 || f.Size > MaxPackedFileSize { // a negative size made make() below panic
		return nil, fmt.Errorf("packed file %s claims %d bytes; packs hold small files only", f.Name, f.Size)
	}
	if f.Digest == "" { // content.VerifyBytes would check the size alone
		return nil, fmt.Errorf("packed file %s has no digest; its record is corrupt", f.Name)
	}
	// The capacity is the limit: a frame that decodes to more is refused
	// (see codecs), so memory is bounded by the record, not by the frame.
	data, err := dec.DecodeAll(frame, make([]byte, 0, f.Size))
	if err != nil {
		return nil, fmt.Errorf("packed file %s: corrupt frame: %w", f.Name, err)
	}
	if err := content.VerifyBytes(data, f.Size, f.Digest); err != nil {
		return nil, fmt.Errorf("packed file %s: %w", f.Name, err)
	}
	return data, nil
}

// Frame returns the bytes of f's frame within a whole pack.
func Frame(pack []byte, f spec.PackedFile) ([]byte, error) {
	// Compared without adding Offset and Length, which a hostile manifest
	// can make overflow (Offset 1, Length MaxInt64 sliced pack[1:MinInt64]).
	if f.Offset < 0 || f.Length <= 0 || f.Offset > int64(len(pack)) || f.Length > int64(len(pack))-f.Offset {
		return nil, fmt.Errorf("packed file %s: frame [%d, +%d) lies outside the %d-byte pack", f.Name, f.Offset, f.Length, len(pack))
	}
	return pack[f.Offset : f.Offset+f.Length], nil
}
