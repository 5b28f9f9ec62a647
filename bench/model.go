package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// model is one synthetic model: its pristine first version on disk and
// the files the scenarios edit or select.
type model struct {
	Name        string `json:"name"`          // "llm", "small" or "mixed"
	Dir         string `json:"-"`             // pristine v1
	Safetensors string `json:"safetensors"`   // file the tensor-shift scenario edits
	SmallEdit   string `json:"small_edit"`    // small file the small-change scenario edits
	OneFile     string `json:"one_file"`      // file the selective pull fetches
	OneFileSize int64  `json:"one_file_size"` // its size
	Bytes       int64  `json:"bytes"`         // every file, modelx.yaml included
	Files       int    `json:"files"`
	Largest     int64  `json:"largest_file"`
	// ManifestBytes is the size of v1's manifest, once pushed.
	ManifestBytes int64 `json:"manifest_bytes,omitempty"`
}

// stateDirName is the client's per-directory state folder; never part of a model.
const stateDirName = ".modelx"

// keyFor derives a ChaCha8 key for one file from the run's seed.
func keyFor(seed uint64, name string) [32]byte {
	return sha256.Sum256(fmt.Appendf(nil, "modelx-bench/%d/%s", seed, name))
}

// writeFileWith creates path (and its parents) and fills it through fill.
func writeFileWith(path string, fill func(w io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := fill(bw); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeRandom writes n incompressible bytes from a ChaCha8 stream.
func writeRandom(w io.Writer, n int64, key [32]byte) error {
	_, err := io.CopyN(w, rand.NewChaCha8(key), n)
	return err
}

// tensor is one entry of a safetensors header.
type tensor struct {
	Name        string   `json:"-"`
	Dtype       string   `json:"dtype"`
	Shape       []int64  `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// tensorPattern is the byte size of the tensors of one transformer layer,
// repeated until the data section is full.
var tensorPattern = []struct {
	part string
	size int64
}{
	{"self_attn.q_proj.weight", 4 << 20}, {"self_attn.k_proj.weight", 1 << 20},
	{"self_attn.v_proj.weight", 1 << 20}, {"self_attn.o_proj.weight", 4 << 20},
	{"mlp.gate_proj.weight", 6 << 20}, {"mlp.up_proj.weight", 6 << 20},
	{"mlp.down_proj.weight", 6 << 20}, {"input_layernorm.weight", 8 << 10},
}

// planTensors lays out tensors filling dataSize bytes.
func planTensors(dataSize int64) []tensor {
	var ts []tensor
	var off int64
	for i := 0; off < dataSize; i++ {
		p := tensorPattern[i%len(tensorPattern)]
		size := min(p.size, dataSize-off)
		t := tensor{Name: fmt.Sprintf("model.layers.%03d.%s", i/len(tensorPattern), p.part), DataOffsets: [2]int64{off, off + size}}
		switch {
		case size%2048 == 0:
			t.Dtype, t.Shape = "BF16", []int64{size / 2048, 1024}
		case size%2 == 0:
			t.Dtype, t.Shape = "BF16", []int64{size / 2}
		default:
			t.Dtype, t.Shape = "U8", []int64{size}
		}
		ts = append(ts, t)
		off += size
	}
	return ts
}

// safetensorsHeader encodes the JSON header, padded with spaces to a
// multiple of 8 bytes as the format recommends.
func safetensorsHeader(entries map[string]json.RawMessage) ([]byte, error) {
	hdr, err := json.Marshal(entries) // keys sorted: deterministic
	if err != nil {
		return nil, err
	}
	if r := len(hdr) % 8; r != 0 {
		hdr = append(hdr, bytes.Repeat([]byte(" "), 8-r)...)
	}
	return hdr, nil
}

// writeSafetensors writes a safetensors file whose data section holds
// dataSize random bytes: 8-byte little-endian header length, JSON header,
// tensor data.
func writeSafetensors(path string, dataSize int64, key [32]byte) error {
	entries := map[string]json.RawMessage{"__metadata__": json.RawMessage(`{"format":"pt"}`)}
	for _, t := range planTensors(dataSize) {
		b, err := json.Marshal(t)
		if err != nil {
			return err
		}
		entries[t.Name] = b
	}
	hdr, err := safetensorsHeader(entries)
	if err != nil {
		return err
	}
	return writeFileWith(path, func(w io.Writer) error {
		if err := binary.Write(w, binary.LittleEndian, uint64(len(hdr))); err != nil {
			return err
		}
		if _, err := w.Write(hdr); err != nil {
			return err
		}
		return writeRandom(w, dataSize, key)
	})
}

// shiftResult says what shiftTensor changed, in the new file's offsets.
type shiftResult struct {
	Tensor       string `json:"tensor"`
	Start        int64  `json:"start"` // absolute offset of the tensor's data
	End          int64  `json:"end"`
	HeaderGrowth int64  `json:"header_growth"` // every later byte moved by this much
}

// shiftTensor rewrites one tensor near the middle of a safetensors file
// with new random bytes and grows the header (a longer __metadata__), so
// every byte after the header shifts. Like a real tool, it writes a new
// file and renames it over the old one.
func shiftTensor(path string, key [32]byte) (shiftResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return shiftResult{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return shiftResult{}, err
	}
	var n uint64
	if err := binary.Read(f, binary.LittleEndian, &n); err != nil {
		return shiftResult{}, err
	}
	if n > 100<<20 || int64(n)+8 > fi.Size() {
		return shiftResult{}, fmt.Errorf("%s: header length %d is implausible", path, n)
	}
	hdr := make([]byte, n)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return shiftResult{}, err
	}
	var entries map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &entries); err != nil {
		return shiftResult{}, fmt.Errorf("%s: header: %w", path, err)
	}
	dataStart := 8 + int64(n)
	dataLen := fi.Size() - dataStart
	var pick *tensor
	var names []string
	for name := range entries {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if name == "__metadata__" {
			continue
		}
		var t tensor
		if err := json.Unmarshal(entries[name], &t); err != nil {
			return shiftResult{}, fmt.Errorf("%s: tensor %s: %w", path, name, err)
		}
		t.Name = name
		if t.DataOffsets[1]-t.DataOffsets[0] < 1<<20 {
			continue
		}
		dist := func(t *tensor) int64 { return abs(t.DataOffsets[0] - dataLen/2) }
		if pick == nil || dist(&t) < dist(pick) {
			pick = &t
		}
	}
	if pick == nil {
		return shiftResult{}, fmt.Errorf("%s has no tensor of 1 MiB or more", path)
	}
	meta := map[string]string{}
	if raw, ok := entries["__metadata__"]; ok {
		_ = json.Unmarshal(raw, &meta)
	}
	meta["modelx_bench_edit"] = "tensor " + pick.Name + " rewritten; header grown " + strings.Repeat("0123456789abcdef", 16)
	mb, err := json.Marshal(meta)
	if err != nil {
		return shiftResult{}, err
	}
	entries["__metadata__"] = mb
	newHdr, err := safetensorsHeader(entries)
	if err != nil {
		return shiftResult{}, err
	}
	tmp := path + ".bench-tmp"
	err = writeFileWith(tmp, func(w io.Writer) error {
		if err := binary.Write(w, binary.LittleEndian, uint64(len(newHdr))); err != nil {
			return err
		}
		if _, err := w.Write(newHdr); err != nil {
			return err
		}
		b, e := pick.DataOffsets[0], pick.DataOffsets[1]
		if _, err := io.Copy(w, io.NewSectionReader(f, dataStart, b)); err != nil {
			return err
		}
		if err := writeRandom(w, e-b, key); err != nil {
			return err
		}
		_, err := io.Copy(w, io.NewSectionReader(f, dataStart+e, dataLen-e))
		return err
	})
	if err != nil {
		os.Remove(tmp)
		return shiftResult{}, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return shiftResult{}, err
	}
	newStart := 8 + int64(len(newHdr))
	return shiftResult{Tensor: pick.Name, Start: newStart + pick.DataOffsets[0], End: newStart + pick.DataOffsets[1],
		HeaderGrowth: int64(len(newHdr)) - int64(n)}, nil
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// editJSON changes one small JSON file: it adds a key, so the content and
// the size change and the hash cache notices.
func editJSON(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	doc["modelx_bench_edited"] = true
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

// words is a deterministic vocabulary for compressible text.
var words = func() []string {
	syl := []string{"ka", "lo", "mi", "ne", "ra", "tu", "vi", "so", "pe", "da", "gu", "xo", "fe", "zi", "ba", "wu"}
	out := make([]string, 256)
	for i := range out {
		w := syl[i%16] + syl[(i/16)%16]
		if i%3 == 0 {
			w += syl[(i*7)%16]
		}
		out[i] = w
	}
	return out
}()

// textOf returns about size bytes of word text.
func textOf(rng *rand.Rand, size int) []byte {
	var b bytes.Buffer
	b.Grow(size + 32)
	for col := 0; b.Len() < size; col++ {
		b.WriteString(words[rng.IntN(len(words))])
		if col%12 == 11 {
			b.WriteByte('\n')
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:size]
}

// jsonOf returns a JSON object of about size bytes.
func jsonOf(rng *rand.Rand, id, size int) []byte {
	var b bytes.Buffer
	b.Grow(size + 64)
	fmt.Fprintf(&b, `{"id":%d,"records":[`, id)
	for i := 0; b.Len() < size-2; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"w":%q,"n":%d}`, words[rng.IntN(len(words))], rng.IntN(100000))
	}
	b.WriteString("]}")
	return b.Bytes()
}

const llmConfigYAML = `description: synthetic LLM-like model written by the modelx benchmark
framework: pytorch
task: text-generation
tags: [bench, synthetic]
`

const smallConfigYAML = `description: synthetic many-small-files model written by the modelx benchmark
framework: custom
task: classification
tags: [bench, synthetic]
`

// genLLM writes the LLM-like model: 2 (3 from 1 GiB) incompressible weight
// shards with 80% of size, a safetensors file with the rest, and a few
// small tokenizer and config files that travel in a pack.
func genLLM(dir string, size int64, seed uint64) (*model, error) {
	m := &model{Name: "llm", Dir: dir, Safetensors: "model.safetensors", SmallEdit: "config.json"}
	rng := rand.New(rand.NewPCG(seed, 1))
	small := map[string][]byte{
		"modelx.yaml": []byte(llmConfigYAML),
		"config.json": []byte(`{"architectures":["LlamaForCausalLM"],"hidden_size":4096,"intermediate_size":11008,` +
			`"num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":32,"rms_norm_eps":1e-05,` +
			`"rope_theta":10000.0,"torch_dtype":"bfloat16","vocab_size":32000}`),
		"generation_config.json":  []byte(`{"bos_token_id":1,"eos_token_id":2,"max_length":4096,"temperature":0.6,"top_p":0.9}`),
		"special_tokens_map.json": []byte(`{"bos_token":"<s>","eos_token":"</s>","unk_token":"<unk>"}`),
		"tokenizer_config.json":   []byte(`{"add_bos_token":true,"add_eos_token":false,"model_max_length":4096,"tokenizer_class":"LlamaTokenizer"}`),
		"README.md":               append([]byte("# synthetic model\n\n"), textOf(rng, 6000)...),
	}
	var tok bytes.Buffer
	tok.WriteString(`{"version":"1.0","model":{"type":"BPE","vocab":{`)
	for i := range 32000 {
		if i > 0 {
			tok.WriteByte(',')
		}
		fmt.Fprintf(&tok, `"%s%s":%d`, words[i%256], words[(i/256)%256], i)
	}
	tok.WriteString(`}}}`)
	small["tokenizer.json"] = tok.Bytes()
	var smallTotal int64
	for name, data := range small {
		if err := writeFileWith(filepath.Join(dir, name), func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
			return nil, err
		}
		smallTotal += int64(len(data))
	}
	shards := 2
	if size >= 1<<30 {
		shards = 3
	}
	shardSize := size * 8 / 10 / int64(shards)
	rest := size - shardSize*int64(shards) - smallTotal - 64<<10 // room for the safetensors header
	if rest < 8<<20 || shardSize < 8<<20 {
		return nil, fmt.Errorf("-size %s is too small for the LLM-like model: use at least 64MiB", formatBytes(size))
	}
	for i := range shards {
		name := fmt.Sprintf("weights-%05d-of-%05d.bin", i+1, shards)
		if i == 0 {
			m.OneFile = name
		}
		if err := writeFileWith(filepath.Join(dir, name), func(w io.Writer) error { return writeRandom(w, shardSize, keyFor(seed, name)) }); err != nil {
			return nil, err
		}
	}
	if err := writeSafetensors(filepath.Join(dir, m.Safetensors), rest, keyFor(seed, m.Safetensors)); err != nil {
		return nil, err
	}
	return m, m.measure()
}

// smallFileName is the path of small file i; even files are JSON, odd text.
func smallFileName(i int) string {
	leaf := i / 100
	ext := "json"
	if i%2 == 1 {
		ext = "txt"
	}
	return fmt.Sprintf("data/d%02d/s%02d/item-%05d.%s", leaf/10, leaf%10, i, ext)
}

// textFiles describes n small seeded files of minSize to 8 KiB, even ones
// JSON and odd ones text, perDir to a folder, file i at name(i); file i's
// bytes come from the random stream stream+i of the seed.
type textFiles struct {
	n, minSize, perDir int
	stream             uint64
	name               func(i int) string
}

func writeTextFiles(dir string, tf textFiles, seed uint64) error {
	for i := range tf.n {
		rng := rand.New(rand.NewPCG(seed, uint64(i)+tf.stream))
		size := tf.minSize + rng.IntN(8192-tf.minSize+1)
		var data []byte
		if i%2 == 0 {
			data = jsonOf(rng, i, size)
		} else {
			data = textOf(rng, size)
		}
		path := filepath.Join(dir, filepath.FromSlash(tf.name(i)))
		if i%tf.perDir == 0 {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// genSmall writes the many-small-files model: n compressible files of
// 100 B to 8 KiB in nested folders, a 32 MiB safetensors file, a 32 MiB
// incompressible file, and modelx.yaml.
func genSmall(dir string, n int, seed uint64) (*model, error) {
	if n < 10 {
		return nil, errors.New("-small-files must be at least 10")
	}
	m := &model{Name: "small", Dir: dir, Safetensors: "weights.safetensors",
		SmallEdit: smallFileName((n / 2) &^ 1), OneFile: smallFileName((n / 3) | 1)}
	if err := os.WriteFile(filepath.Join(dir, "modelx.yaml"), []byte(smallConfigYAML), 0o644); err != nil {
		return nil, err
	}
	if err := writeTextFiles(dir, textFiles{n: n, stream: 1000, minSize: 100, perDir: 100, name: smallFileName}, seed); err != nil {
		return nil, err
	}
	if err := writeSafetensors(filepath.Join(dir, m.Safetensors), 32<<20, keyFor(seed, "small/"+m.Safetensors)); err != nil {
		return nil, err
	}
	if err := writeFileWith(filepath.Join(dir, "embeddings.bin"), func(w io.Writer) error {
		return writeRandom(w, 32<<20, keyFor(seed, "small/embeddings.bin"))
	}); err != nil {
		return nil, err
	}
	return m, m.measure()
}

const mixedConfigYAML = `description: synthetic mixed model written by the modelx benchmark
framework: pytorch
task: text-generation
tags: [bench, synthetic]
`

// mixedFileName is the path of small file i of the mixed model, three
// folders deep, 50 files to a folder; even files are JSON, odd text.
func mixedFileName(i int) string {
	leaf := i / 50
	ext := "json"
	if i%2 == 1 {
		ext = "txt"
	}
	return fmt.Sprintf("assets/g%d/d%02d/s%d/file-%05d.%s", leaf/100, (leaf/10)%10, leaf%10, i, ext)
}

// genMixed writes the mixed model, what a real checkpoint directory holds:
// 4 incompressible weight shards of shard bytes, a safetensors file of
// shard bytes, n text and JSON files of 1 to 8 KiB in nested folders, and
// modelx.yaml. The defaults (128 MiB, 5,000 files) make 672 MB.
func genMixed(dir string, shard int64, n int, seed uint64) (*model, error) {
	if n < 10 {
		return nil, errors.New("-mixed-files must be at least 10")
	}
	if shard < 8<<20 {
		return nil, fmt.Errorf("-mixed-shard %s is too small: use at least 8MiB", formatBytes(shard))
	}
	m := &model{Name: "mixed", Dir: dir, Safetensors: "model.safetensors",
		SmallEdit: mixedFileName((n / 2) &^ 1), OneFile: "model-00002-of-00004.bin"}
	if err := os.WriteFile(filepath.Join(dir, "modelx.yaml"), []byte(mixedConfigYAML), 0o644); err != nil {
		return nil, err
	}
	if err := writeTextFiles(dir, textFiles{n: n, stream: 500000, minSize: 1024, perDir: 50, name: mixedFileName}, seed); err != nil {
		return nil, err
	}
	for i := range 4 {
		name := fmt.Sprintf("model-%05d-of-00004.bin", i+1)
		if err := writeFileWith(filepath.Join(dir, name), func(w io.Writer) error { return writeRandom(w, shard, keyFor(seed, "mixed/"+name)) }); err != nil {
			return nil, err
		}
	}
	if err := writeSafetensors(filepath.Join(dir, m.Safetensors), shard, keyFor(seed, "mixed/"+m.Safetensors)); err != nil {
		return nil, err
	}
	return m, m.measure()
}

// measure fills Bytes, Files, Largest and OneFileSize from the disk.
func (m *model) measure() error {
	files, err := listFiles(m.Dir)
	if err != nil {
		return err
	}
	m.Bytes, m.Files, m.Largest = 0, len(files), 0
	for _, f := range files {
		m.Bytes += f.size
		m.Largest = max(m.Largest, f.size)
		if f.name == m.OneFile {
			m.OneFileSize = f.size
		}
	}
	return nil
}

// fileEntry is a regular file of a model directory.
type fileEntry struct {
	name string // slash-separated, relative
	path string
	size int64
}

// listFiles lists the regular files under dir, sorted, without .modelx.
func listFiles(dir string) ([]fileEntry, error) {
	var out []fileEntry
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			if rel == stateDirName {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, fileEntry{name: filepath.ToSlash(rel), path: path, size: info.Size()})
		return nil
	})
	slices.SortFunc(out, func(a, b fileEntry) int { return strings.Compare(a.name, b.name) })
	return out, err
}

// copyTree copies the model files of src into dst (no .modelx).
func copyTree(src, dst string) error {
	files, err := listFiles(src)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := copyFile(f.path, filepath.Join(dst, filepath.FromSlash(f.name))); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// compareTrees checks that got holds exactly the model files of want
// (only those named in only, plus modelx.yaml, when only is not nil) with
// the same bytes.
func compareTrees(want, got string, only []string) error {
	wf, err := listFiles(want)
	if err != nil {
		return err
	}
	gf, err := listFiles(got)
	if err != nil {
		return err
	}
	if only != nil {
		keep := append(slices.Clone(only), "modelx.yaml")
		wf = slices.DeleteFunc(wf, func(f fileEntry) bool { return !slices.Contains(keep, f.name) })
	}
	if len(wf) != len(gf) {
		return fmt.Errorf("%s has %d files, want %d", got, len(gf), len(wf))
	}
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for i := range wf {
		if wf[i].name != gf[i].name || wf[i].size != gf[i].size {
			return fmt.Errorf("%s: got %s (%d bytes), want %s (%d bytes)", got, gf[i].name, gf[i].size, wf[i].name, wf[i].size)
		}
		if err := sameBytes(wf[i].path, gf[i].path, ba, bb); err != nil {
			return err
		}
	}
	return nil
}

// sameBytes compares two files through the buffers ba and bb.
func sameBytes(a, b string, ba, bb []byte) error {
	fa, err := os.Open(a)
	if err != nil {
		return err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return err
	}
	defer fb.Close()
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return fmt.Errorf("%s differs from %s", b, a)
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			if eb != ea {
				return fmt.Errorf("%s differs from %s in length", b, a)
			}
			return nil
		}
		if ea != nil {
			return ea
		}
		if eb != nil {
			return eb
		}
	}
}
