package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/client"
	"modelx.io/modelx/spec"
)

// measure runs fn once, timed, after flushing dirty pages, and returns its
// duration, the requests it made and the CPU it cost each process. With
// -cpuprofile it writes the benchmark process's CPU profile of fn to
// DIR/NAME.pprof.
func (b *bench) measure(name, regHost string, fn func() error) (time.Duration, counts, cpuUse, error) {
	if b.opts.prewarm {
		if err := b.prewarm(); err != nil {
			return 0, counts{}, cpuUse{}, err
		}
	}
	if d := syncDisks(); d > time.Second {
		b.logf("(sync before %s took %s)", name, formatDuration(d))
	}
	b.counter.reset()
	b.phases.reset()
	var prof *os.File
	if b.opts.profileDir != "" {
		var err error
		if prof, err = os.Create(filepath.Join(b.opts.profileDir, name+".pprof")); err != nil {
			return 0, counts{}, cpuUse{}, err
		}
		if err := pprof.StartCPUProfile(prof); err != nil {
			prof.Close()
			return 0, counts{}, cpuUse{}, err
		}
	}
	c0 := b.cpuNow()
	start := time.Now()
	err := fn()
	d := time.Since(start)
	c1 := b.cpuNow()
	if prof != nil {
		pprof.StopCPUProfile()
		prof.Close()
	}
	return d, b.counter.snapshot(regHost), c1.sub(c0), err
}

// prewarm writes and deletes a scratch file of b.warmBytes. On a virtual
// machine whose host takes back the memory the guest frees (free page
// reporting), writing into pages the guest has not used for a few seconds
// costs about 2 CPU-seconds per GiB, and writing into pages it just freed
// about 0.15: whichever process writes first after an idle moment (the S3
// server on a push, the client on a pull) would pay, at random. After
// prewarm every timed step starts with recently used pages, as on a
// machine with no such host. The scratch file's dirty pages are dropped,
// never written to disk.
func (b *bench) prewarm() error {
	f, err := os.CreateTemp(b.root, "prewarm-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	for left := b.warmBytes; left > 0; left -= int64(len(buf)) {
		if _, err := f.Write(buf[:min(int64(len(buf)), left)]); err != nil {
			return fmt.Errorf("prewarm: %w", err)
		}
	}
	return nil
}

// treeBytes is the total size of the model files under dir.
func treeBytes(dir string) (int64, error) {
	files, err := listFiles(dir)
	var n int64
	for _, f := range files {
		n += f.size
	}
	return n, err
}

// runTransfers runs the push and pull scenarios of one model in one mode:
// v1 is the pristine model, v2 changes one small file, v3 also rewrites a
// tensor and grows the safetensors header.
func (b *bench) runTransfers(ctx context.Context, m *model, mode string) error {
	reg := b.s3Reg
	if mode == modeProxy {
		reg = b.fsReg
	}
	base := filepath.Join(b.root, m.Name+"-"+mode)
	src := filepath.Join(base, "src")
	if err := copyTree(m.Dir, src); err != nil {
		return err
	}
	regHost := strings.TrimPrefix(reg.url, "http://")
	ref := func(tag string) client.Reference {
		r, err := client.ParseReference(reg.url+"/bench/"+m.Name+":"+tag, nil)
		if err != nil {
			panic(err) // the names are ours
		}
		return r
	}
	cl := client.New(client.Options{HTTPClient: b.hc, Concurrency: b.concurrency})
	inspect := client.New(client.Options{}).API(reg.url) // not counted
	manifest := func(tag string) (*spec.Manifest, error) {
		mf, raw, _, err := inspect.GetManifest(ctx, "bench", m.Name, tag)
		if err == nil && tag == "v1" {
			m.ManifestBytes = int64(len(raw))
		}
		return mf, err
	}
	// diff compares the versions tagged from and to (diffManifests).
	diff := func(from, to, file string, shift *shiftResult) (*blobDiff, error) {
		old, err := manifest(from)
		if err != nil {
			return nil, err
		}
		cur, err := manifest(to)
		if err != nil {
			return nil, err
		}
		df := diffManifests(old, cur, file, shift)
		return &df, nil
	}
	fail := func(scenario string, err error) error {
		return fmt.Errorf("%s %s/%s: %w", scenario, m.Name, mode, err)
	}
	push := func(scenario, tag string, notes func(*client.PushResult) (string, *blobDiff, error)) error {
		if !b.need[scenario] {
			return nil
		}
		logical, err := treeBytes(src)
		if err != nil {
			return err
		}
		var res *client.PushResult
		d, c, cpu, err := b.measure(m.Name+"-"+mode+"-"+scenario, regHost, func() error {
			var err error
			res, err = cl.Push(ctx, ref(tag), src)
			return err
		})
		if err != nil {
			return fail(scenario, err)
		}
		r := row{Scenario: scenario, Mode: mode, Model: m.Name, Seconds: d.Seconds(), LogicalBytes: logical,
			MovedBytes: res.UploadedBytes, BlobsMoved: res.BlobsTransferred, BlobsSkipped: res.BlobsSkipped, counts: c, CPU: cpu,
			Phases: b.phases.snapshot()}
		if notes != nil {
			if r.Notes, r.Diff, err = notes(res); err != nil {
				return fail(scenario, err)
			}
		}
		b.addRow(r, b.want[scenario])
		return nil
	}
	pull := func(scenario, tag, dir string, logical int64, po client.PullOptions, want string, only []string, notes func() (string, error)) error {
		if !b.need[scenario] {
			return nil
		}
		var res *client.PullResult
		d, c, cpu, err := b.measure(m.Name+"-"+mode+"-"+scenario, regHost, func() error {
			var err error
			res, err = cl.Pull(ctx, ref(tag), dir, po)
			return err
		})
		if err != nil {
			return fail(scenario, err)
		}
		r := row{Scenario: scenario, Mode: mode, Model: m.Name, Seconds: d.Seconds(), LogicalBytes: logical,
			MovedBytes: res.DownloadedBytes, BlobsMoved: res.BlobsTransferred, BlobsSkipped: res.BlobsSkipped, counts: c, CPU: cpu,
			Phases: b.phases.snapshot()}
		if notes != nil {
			if r.Notes, err = notes(); err != nil {
				return fail(scenario, err)
			}
		}
		if b.opts.verify && want != "" {
			t := time.Now()
			if err := compareTrees(want, dir, only); err != nil {
				return fail(scenario, fmt.Errorf("the pulled tree is wrong: %w", err))
			}
			r.Verified = true
			if d := time.Since(t); d > time.Second {
				b.logf("(verifying %s took %s)", dir, formatDuration(d))
			}
		}
		b.addRow(r, b.want[scenario])
		return nil
	}

	// Pushes: v1 cold, v1 again, v2 (one small file), v3 (tensor + header shift).
	if err := push(scColdPush, "v1", func(res *client.PushResult) (string, *blobDiff, error) {
		v1, err := manifest("v1")
		if err != nil {
			return "", nil, err
		}
		if mode == modeProxy {
			b.proxyBlob = max(b.proxyBlob, largestBlob(v1))
			if m.Name == "llm" {
				b.metaModel = m.Name
			}
		}
		return fmt.Sprintf("no hash cache: every byte read; %d files, largest blob %s", res.Files, formatBytes(largestBlob(v1))), nil, nil
	}); err != nil {
		return err
	}
	if err := push(scNoopPush, "v1", func(*client.PushResult) (string, *blobDiff, error) {
		return "hash cache hit", nil, nil
	}); err != nil {
		return err
	}
	// v1 pushed to a second model with the first as its source: every blob
	// is offered once and linked by a mount, no byte moves (the price of
	// per-model blob links when a model is copied or forked).
	if b.need[scMountPush] {
		logical, err := treeBytes(src)
		if err != nil {
			return err
		}
		other, err := client.ParseReference(reg.url+"/bench/"+m.Name+"-fork:v1", nil)
		if err != nil {
			return err
		}
		var res *client.PushResult
		d, c, cpu, err := b.measure(m.Name+"-"+mode+"-"+scMountPush, regHost, func() error {
			var err error
			res, err = cl.PushWithOptions(ctx, other, src, client.PushOptions{From: "bench/" + m.Name})
			return err
		})
		if err != nil {
			return fail(scMountPush, err)
		}
		b.addRow(row{Scenario: scMountPush, Mode: mode, Model: m.Name, Seconds: d.Seconds(), LogicalBytes: logical,
			MovedBytes: res.UploadedBytes, BlobsMoved: res.BlobsTransferred, BlobsSkipped: res.BlobsSkipped, counts: c, CPU: cpu,
			Notes: fmt.Sprintf("v1 to a second model, --from the first: %d blobs mounted", res.BlobsSkipped)}, b.want[scMountPush])
	}
	if b.need[scSmallChange] {
		if err := editJSON(filepath.Join(src, filepath.FromSlash(m.SmallEdit))); err != nil {
			return err
		}
	}
	if err := push(scSmallChange, "v2", func(*client.PushResult) (string, *blobDiff, error) {
		df, err := diff("v1", "v2", "", nil)
		if err != nil {
			return "", nil, err
		}
		return fmt.Sprintf("edited %s; new blobs vs v1: %d pack(s), %d chunk/file blob(s), %s", m.SmallEdit, df.NewPacks, df.NewChunks, formatBytes(df.NewBytes)), df, nil
	}); err != nil {
		return err
	}
	var shift shiftResult
	if b.need[scTensorShift] {
		var err error
		if shift, err = shiftTensor(filepath.Join(src, m.Safetensors), keyFor(b.opts.seed, "shift/"+m.Name)); err != nil {
			return err
		}
	}
	if err := push(scTensorShift, "v3", func(*client.PushResult) (string, *blobDiff, error) {
		df, err := diff("v2", "v3", m.Safetensors, &shift)
		if err != nil {
			return "", nil, err
		}
		return fmt.Sprintf("tensor %s (%s) rewritten, header +%d B; new blobs vs v2: %d on the tensor + %d others, %s",
			shortTensor(shift.Tensor), formatBytes(shift.End-shift.Start), shift.HeaderGrowth, df.TensorChunks, df.NewBlobs-df.TensorChunks, formatBytes(df.NewBytes)), df, nil
	}); err != nil {
		return err
	}

	// Pulls: v1 into an empty directory, v1 again, v3 over v1, one file of v1.
	pullA := filepath.Join(base, "pull-a")
	if err := pull(scColdPull, "v1", pullA, m.Bytes, client.PullOptions{}, m.Dir, nil, nil); err != nil {
		return err
	}
	if mode == modeProxy && b.need[scColdPull] {
		if v1, err := manifest("v1"); err == nil {
			b.proxyBlob = max(b.proxyBlob, largestBlob(v1))
		}
	}
	if err := pull(scNoopPull, "v1", pullA, m.Bytes, client.PullOptions{}, "", nil, func() (string, error) {
		return "directory already holds v1", nil
	}); err != nil {
		return err
	}
	if b.need[scPartialPull] {
		v3Bytes, err := treeBytes(src)
		if err != nil {
			return err
		}
		if err := pull(scPartialPull, "v3", pullA, v3Bytes, client.PullOptions{}, src, nil, func() (string, error) {
			df, err := diff("v1", "v3", "", nil)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("directory holds v1, pulls v3; blobs v3 has and v1 lacks: %d, %s", df.NewBlobs, formatBytes(df.NewBytes)), nil
		}); err != nil {
			return err
		}
	}
	pullB := filepath.Join(base, "pull-one")
	return pull(scOneFile, "v1", pullB, m.OneFileSize, client.PullOptions{Files: []string{m.OneFile}}, m.Dir, []string{m.OneFile},
		func() (string, error) { return fmt.Sprintf("only %s (%s)", m.OneFile, formatBytes(m.OneFileSize)), nil })
}

// shortTensor drops the "model.layers." prefix from a tensor name.
func shortTensor(name string) string { return strings.TrimPrefix(name, "model.layers.") }

// blobDiff says which blobs a manifest has that an older one lacks.
type blobDiff struct {
	NewBlobs  int   `json:"new_blobs"`
	NewPacks  int   `json:"new_packs"`
	NewChunks int   `json:"new_chunk_or_file_blobs"`
	NewBytes  int64 `json:"new_bytes"`
	// TensorChunks counts the new blobs of the edited file that overlap
	// the rewritten tensor (tensor-shift scenario only).
	TensorChunks int          `json:"tensor_chunks,omitempty"`
	Shift        *shiftResult `json:"shift,omitempty"`
}

// diffManifests lists the blobs of cur that old does not reference. With a
// shift, new blobs of file that overlap the rewritten tensor are counted
// in TensorChunks.
func diffManifests(old, cur *spec.Manifest, file string, shift *shiftResult) blobDiff {
	have := map[digest.Digest]bool{}
	for _, d := range old.Referenced() {
		have[d.Digest] = true
	}
	df := blobDiff{Shift: shift}
	isNew := func(d digest.Digest, size int64) bool {
		if have[d] {
			return false
		}
		have[d] = true
		df.NewBlobs++
		df.NewBytes += size
		return true
	}
	overlaps := func(name string, off, size int64) bool {
		return shift != nil && name == file && off < shift.End && off+size > shift.Start
	}
	for _, bl := range append([]spec.Descriptor{cur.Config}, cur.Blobs...) {
		switch bl.MediaType {
		case spec.MediaTypePack:
			if isNew(bl.Digest, bl.Size) {
				df.NewPacks++
			}
		case spec.MediaTypeChunkedFile:
			var off int64
			for _, ch := range bl.Chunks {
				if isNew(ch.Digest, ch.Size) {
					df.NewChunks++
					if overlaps(bl.Name, off, ch.Size) {
						df.TensorChunks++
					}
				}
				off += ch.Size
			}
		default:
			if isNew(bl.Digest, bl.Size) {
				df.NewChunks++
				if overlaps(bl.Name, 0, bl.Size) {
					df.TensorChunks++
				}
			}
		}
	}
	return df
}

// largestBlob is the size of the largest blob a manifest references.
func largestBlob(m *spec.Manifest) int64 {
	var n int64
	for _, d := range m.Referenced() {
		n = max(n, d.Size)
	}
	return n
}

// runMeta measures HEAD blob and GET manifest throughput on the fs
// modelxd, on the LLM-like model's v1 when it was pushed there, else on a
// small model pushed for the purpose.
func (b *bench) runMeta(ctx context.Context) error {
	api := client.New(client.Options{}).API(b.fsReg.url)
	name := b.metaModel
	if name == "" {
		name = "meta"
		dir := filepath.Join(b.root, "meta-model")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "modelx.yaml"), []byte(llmConfigYAML), 0o644); err != nil {
			return err
		}
		if err := writeFileWith(filepath.Join(dir, "weights.bin"), func(w io.Writer) error {
			return writeRandom(w, 24<<20, keyFor(b.opts.seed, "meta"))
		}); err != nil {
			return err
		}
		ref, err := client.ParseReference(b.fsReg.url+"/bench/meta:v1", nil)
		if err != nil {
			return err
		}
		if _, err := client.New(client.Options{}).Push(ctx, ref, dir); err != nil {
			return fmt.Errorf("push the metadata test model: %w", err)
		}
	}
	mf, raw, _, err := api.GetManifest(ctx, "bench", name, "v1")
	if err != nil {
		return err
	}
	blob := mf.Referenced()[len(mf.Referenced())-1].Digest
	base := b.fsReg.url + "/bench/" + name
	b.logf("metadata: %d clients, %s each, on bench/%s (manifest %s)", b.opts.metaClients, b.opts.metaDuration, name, formatBytes(int64(len(raw))))
	// Dirty pages the transfers left are written back first, so the
	// kernel's writeback does not share the two cores with the test.
	syncDisks()
	runtime.GC()
	head := loadTest(ctx, b.fsReg, "HEAD blob", "HEAD", base+"/blobs/"+string(blob), b.opts.metaClients, b.opts.metaDuration)
	head.Path = "/bench/" + name + "/blobs/" + string(blob)
	syncDisks()
	get := loadTest(ctx, b.fsReg, "GET manifest", "GET", base+"/manifests/v1", b.opts.metaClients, b.opts.metaDuration)
	get.Path = "/bench/" + name + "/manifests/v1"
	for _, r := range []metaResult{head, get} {
		b.logf("%-12s %8.0f req/s  p50 %.2f ms  p99 %.2f ms  errors %d", r.Op, r.PerSecond, r.P50Ms, r.P99Ms, r.Errors)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	b.report.Meta = []metaResult{head, get}
	b.report.MetaManifestBytes = int64(len(raw))
	return nil
}
