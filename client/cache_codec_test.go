package client

import (
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/client/chunker"
	"modelx.io/modelx/spec"
)

func sampleCache() (map[string]cachedFile, map[string]cachedPack) {
	d := digest.FromString
	files := map[string]cachedFile{
		"modelx.yaml":       {Key: fileKey{Size: 20, ModTime: 1733400000123456789, Inode: 42}, Digest: d("a")},
		"weights/model.bin": {Key: fileKey{Size: 3 << 30, ModTime: -5, Inode: 1 << 40}, Digest: d("b"), Chunks: []spec.Chunk{{Digest: d("c"), Size: 1 << 20}, {Digest: d("d"), Size: 7}}, Boot: "3f1c"},
		"odd":               {Digest: "sha512:abc"},
		"empty":             {},
		"upper":             {Digest: "sha256:ABcd000000000000000000000000000000000000000000000000000000000000"},
	}
	packs := map[string]cachedPack{
		"k1": {Digest: d("p"), Size: 99, Files: []spec.PackedFile{{Name: "a.txt", Digest: d("x"), Size: 3, Mode: 0o755, Offset: 0, Length: 12}, {Name: "b.txt", Digest: d("y"), Size: 0, Offset: 12, Length: 9}}},
		"k2": {},
	}
	return files, packs
}

// TestCacheCodec: the binary cache reads back exactly what was written,
// digests of any form included, and a cache cut short or with a byte
// changed is no cache, never a wrong one.
func TestCacheCodec(t *testing.T) {
	files, packs := sampleCache()
	params := chunker.Params{Min: 1, Avg: 2, Max: 3}
	data := encodeCache(cacheVersion, params, files, packs)
	v, p, gotFiles, gotPacks, err := decodeCache(data)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range files { // the decoder makes no empty slices
		if len(f.Chunks) == 0 {
			f.Chunks = nil
			files[name] = f
		}
	}
	if v != cacheVersion || p != params || !reflect.DeepEqual(gotFiles, files) || !reflect.DeepEqual(gotPacks, packs) {
		t.Fatalf("round trip:\n got %v %v %+v %+v\nwant %v %v %+v %+v", v, p, gotFiles, gotPacks, cacheVersion, params, files, packs)
	}
	for n := range len(data) {
		if _, _, _, _, err := decodeCache(data[:n]); err == nil {
			t.Fatalf("a cache cut at %d of %d bytes decoded", n, len(data))
		}
	}
	for i := range data {
		bad := append([]byte(nil), data...)
		bad[i] ^= 0x10
		if _, _, _, _, err := decodeCache(bad); err == nil {
			t.Fatalf("a cache with byte %d changed decoded", i)
		}
	}
}

// FuzzDecodeCache: whatever the state folder holds, decoding never panics
// nor allocates beyond what the bytes can describe.
func FuzzDecodeCache(f *testing.F) {
	files, packs := sampleCache()
	f.Add(encodeCache(cacheVersion, chunker.DefaultParams, files, packs))
	f.Add([]byte(cacheMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeCache(data)
		// Without the checksum in the way, the field decoding itself.
		body := append([]byte(nil), data...)
		if len(body) >= len(cacheMagic) {
			copy(body, cacheMagic)
		}
		decodeCache(append(body, crcOf(body)...))
	})
}

func crcOf(b []byte) []byte {
	return binary.LittleEndian.AppendUint32(nil, crc32.Checksum(b, castagnoli))
}

// TestCacheReadsJSONOfEarlierVersions: a directory pulled by an earlier
// version keeps what modelx knows: the JSON cache is read, and replaced
// by the binary one when saved.
func TestCacheReadsJSONOfEarlierVersions(t *testing.T) {
	dir := t.TempDir()
	files, _ := sampleCache()
	var old struct {
		Version int                   `json:"version"`
		Chunker chunker.Params        `json:"chunker"`
		Files   map[string]cachedFile `json:"files"`
	}
	old.Version, old.Chunker, old.Files = cacheVersion, chunker.DefaultParams, files
	data, _ := json.Marshal(old)
	if err := os.MkdirAll(filepath.Join(dir, stateDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, stateDir, jsonCacheFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	c := loadCache(dir, chunker.DefaultParams)
	if got, ok := c.entry("weights/model.bin"); !ok || !reflect.DeepEqual(got, files["weights/model.bin"]) {
		t.Fatalf("entry from the JSON cache: %+v %v", got, ok)
	}
	if err := c.save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, stateDir, jsonCacheFile)); !os.IsNotExist(err) {
		t.Fatalf("the JSON cache is still there: %v", err)
	}
	if got, ok := loadCache(dir, chunker.DefaultParams).entry("weights/model.bin"); !ok || !reflect.DeepEqual(got, files["weights/model.bin"]) {
		t.Fatalf("entry from the binary cache: %+v %v", got, ok)
	}
}
