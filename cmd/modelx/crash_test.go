package main

// Crash-safety tests: the CLI is killed with SIGKILL at seeded random
// moments of a push (TestCrashKillPush) and of a pull (TestCrashKillPull),
// against an in-process registry on storage/fs, and the state it leaves is
// checked after every kill.
//
// Environment:
//
//	MODELX_CRASH_TRIALS=N  kills per test (default 50); e.g. 500 for a soak.
//	MODELX_CRASH_SEED=S    base seed (default 1). Trial i uses seed S+i: its
//	                       model edits, pull pre-state and kill point (as a
//	                       fraction of the measured transfer time) are a
//	                       function of that seed alone. To replay a logged
//	                       trial: MODELX_CRASH_SEED=<seed> MODELX_CRASH_TRIALS=1
//	                       (the kill lands at the same fraction of the
//	                       transfer; wall-clock timing cannot be replayed
//	                       exactly, and a pull trial that started from the
//	                       previous trial's directory starts from a copy of
//	                       the same version instead).
//
// The base model is the same in every run: two large files of about 9 MB,
// each cut into two content-defined chunks (a chunk boundary is planted
// after 4.1–4.4 MiB, see chunkMarker), one 1.1 MiB whole-file blob and
// 200 small files in a few packs, about 20 MB in all.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/client"
	"modelx.io/modelx/client/chunker"
	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
	"modelx.io/modelx/storage/fs"
)

// chunkMarker returns 64 bytes after which the default chunker always cuts
// a chunk that is at least Min and less than Avg long: the gear hash that
// decides a boundary depends only on the last 64 bytes, so bytes whose hash
// passes the strict mask make a boundary wherever they sit in that range.
// It is found by chunking seeded random data with Min lowered to 64 (the
// same Avg, so the same strict mask) until a boundary falls below Avg.
func chunkMarker(t *testing.T) []byte {
	t.Helper()
	avg := chunker.DefaultParams.Avg
	sp, err := chunker.NewSplitter(chunker.Params{Min: 64, Avg: avg, Max: 2 * avg})
	if err != nil {
		t.Fatal(err)
	}
	_, cc := testenv.SeededRand(0x6d61726b, "chunk-marker")
	block := make([]byte, 1<<20)
	var tail []byte
	length := 0
	for range 4096 {
		cc.Read(block)
		for b := block; len(b) > 0; {
			k, end := sp.Split(b)
			if k >= 64 {
				tail = append(tail[:0], b[k-64:k]...)
			} else {
				tail = append(tail, b[:k]...)
				tail = tail[max(0, len(tail)-64):]
			}
			length += k
			b = b[k:]
			if end {
				if length < avg && len(tail) == 64 {
					return slices.Clone(tail)
				}
				length = 0
			}
		}
	}
	t.Fatal("no chunk boundary found in 4 GiB of random data")
	return nil
}

// crashModel is a model directory's content, kept in memory: the base
// version and the current one (base plus one trial's edits).
type crashModel struct {
	marker  []byte
	base    map[string][]byte
	cur     map[string][]byte
	bigSegs map[string][][2]int // for each large file, its segments' [start, end) before the marker
	small   []string            // names of the small files
}

var words = strings.Fields("the model layer weight token vocab attention head embed norm bias scale input output tensor shard batch step loss adam")

func randomText(r *rand.Rand, size int) []byte {
	var b bytes.Buffer
	for b.Len() < size {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(12) == 0 {
			b.WriteByte('\n')
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:size]
}

func randomBytes(cc *rand.ChaCha8, size int) []byte {
	b := make([]byte, size)
	cc.Read(b)
	return b
}

// smallFile returns new content for small file name.
func smallFile(r *rand.Rand, cc *rand.ChaCha8, name string) []byte {
	size := 64 + r.IntN(2048)
	if r.IntN(4) == 0 {
		size = 2048 + r.IntN(40<<10)
	}
	if strings.HasSuffix(name, ".bin") {
		return randomBytes(cc, size)
	}
	return randomText(r, size)
}

// newCrashModel builds the base model from a fixed seed.
func newCrashModel(t *testing.T) *crashModel {
	t.Helper()
	m := &crashModel{marker: chunkMarker(t), base: map[string][]byte{}, bigSegs: map[string][][2]int{}}
	r, cc := testenv.SeededRand(0x6d6f64656c78, "base-model")
	m.base[spec.ConfigFileName] = []byte("description: crash-test model\nframework: pytorch\n")
	for _, big := range []struct {
		name string
		segs int
	}{{"weights-a.bin", 2}, {"model/weights-b.safetensors", 2}} {
		var data []byte
		for i := range big.segs {
			seg := randomBytes(cc, 4<<20+100<<10+r.IntN(300<<10)) // 4.1–4.4 MiB: one chunk each
			end := len(data) + len(seg)
			if i < big.segs-1 {
				copy(seg[len(seg)-64:], m.marker)
				end -= 64
			}
			m.bigSegs[big.name] = append(m.bigSegs[big.name], [2]int{len(data), end})
			data = append(data, seg...)
		}
		m.base[big.name] = data
	}
	m.base["embeddings.npy"] = randomBytes(cc, 1<<20+100<<10) // one whole-file blob
	for i := range 200 {
		var name string
		switch {
		case i < 100:
			name = fmt.Sprintf("tokenizer/vocab-%03d.txt", i)
		case i < 170:
			name = fmt.Sprintf("configs/layer-%03d.json", i-100)
		default:
			name = fmt.Sprintf("data/shard-%d/part-%02d.bin", (i-170)/10, i%10)
		}
		m.small = append(m.small, name)
		m.base[name] = smallFile(r, cc, name)
	}
	// The planted boundaries must cut as intended, or the test would push
	// whole files where it means to push chunks.
	for name, segs := range m.bigSegs {
		n := 0
		err := chunker.Cut(bytes.NewReader(m.base[name]), chunker.DefaultParams, make([]byte, 1<<20), func(_ []byte, end bool) error {
			if end {
				n++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n < len(segs) {
			t.Fatalf("%s: %d chunks, want at least %d: the chunk marker does not cut", name, n, len(segs))
		}
	}
	m.cur = cloneFiles(m.base)
	return m
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func cloneFiles(in map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

// variant returns the base model with seeded edits: one chunk, or
// sometimes every chunk, of one large file or sometimes both, sometimes
// the mid-sized file, up to 40 small files, and always the config (so
// every variant is new). A variant sends 5–20 MB.
func (m *crashModel) variant(seed uint64) map[string][]byte {
	r, cc := testenv.SeededRand(seed, "variant")
	v := cloneFiles(m.base)
	v[spec.ConfigFileName] = fmt.Appendf(nil, "description: crash-test model, variant %d\nframework: pytorch\n", seed)
	bigs := slices.Sorted(mapKeys(m.bigSegs))
	first := r.IntN(len(bigs))
	for i, name := range bigs {
		if i != first && r.IntN(5) != 0 {
			continue // one large file changes, sometimes both
		}
		segs := m.bigSegs[name]
		edit := slices.Clone(m.base[name])
		if r.IntN(6) == 0 { // every chunk changes
			for _, s := range segs {
				cc.Read(edit[s[0]:s[1]])
			}
		} else { // one chunk changes
			s := segs[r.IntN(len(segs))]
			cc.Read(edit[s[0]:s[1]])
		}
		v[name] = edit
	}
	if r.IntN(5) == 0 {
		v["embeddings.npy"] = randomBytes(cc, len(m.base["embeddings.npy"]))
	}
	for range 1 + r.IntN(40) {
		name := m.small[r.IntN(len(m.small))]
		v[name] = smallFile(r, cc, name)
	}
	return v
}

// writeFiles writes every file of v whose content differs from have into
// dir (all of v when have is nil).
func writeFiles(t *testing.T, dir string, v, have map[string][]byte) {
	t.Helper()
	for name, data := range v {
		if have != nil && bytes.Equal(have[name], data) {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// readTree reads every regular file under dir outside .modelx.
func readTree(dir string) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := testenv.WalkModelFiles(dir, func(rel, p string, d iofs.DirEntry) error {
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file (%v)", rel, d.Type())
		}
		data, err := os.ReadFile(p)
		out[rel] = data
		return err
	})
	return out, err
}

// sameTree describes how got differs from want ("" when it does not).
func sameTree(got, want map[string][]byte) string {
	var diffs []string
	for name, data := range want {
		g, ok := got[name]
		switch {
		case !ok:
			diffs = append(diffs, name+" is missing")
		case !bytes.Equal(g, data):
			diffs = append(diffs, fmt.Sprintf("%s differs (%d bytes, want %d)", name, len(g), len(data)))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			diffs = append(diffs, name+" should not be there")
		}
	}
	slices.Sort(diffs)
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("and %d more", len(diffs)-5))
	}
	return strings.Join(diffs, "; ")
}

// recorder wraps the registry: it counts requests in flight and records
// the blob PUTs whose body the registry read.
type recorder struct {
	next     http.Handler
	mu       sync.Mutex
	sent     map[digest.Digest]int64
	inflight int
	idle     chan struct{} // closed while inflight is 0
}

func newRecorder(next http.Handler) *recorder {
	idle := make(chan struct{})
	close(idle)
	return &recorder{next: next, sent: map[digest.Digest]int64{}, idle: idle}
}

// begin and end count a request in flight.
func (rec *recorder) begin() {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.inflight == 0 {
		rec.idle = make(chan struct{})
	}
	rec.inflight++
}

func (rec *recorder) end() {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.inflight--; rec.inflight == 0 {
		close(rec.idle)
	}
}

type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.begin()
	defer rec.end()
	if i := strings.LastIndex(r.URL.Path, "/blobs/"); i >= 0 && r.Method == http.MethodPut {
		// A shallow copy carries the counting body: the server must still
		// see its own body on its request, or it would answer Expect:
		// 100-continue by reading the body the handler did not want.
		body := &countingBody{ReadCloser: r.Body}
		r = r.WithContext(r.Context())
		r.Body = body
		defer func() {
			if body.n > 0 {
				rec.mu.Lock()
				rec.sent[digest.Digest(r.URL.Path[i+len("/blobs/"):])] += body.n
				rec.mu.Unlock()
			}
		}()
	}
	rec.next.ServeHTTP(w, r)
}

// reset starts a new record of blob bodies and returns the last one.
func (rec *recorder) reset() map[digest.Digest]int64 {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	old := rec.sent
	rec.sent = map[digest.Digest]int64{}
	return old
}

// waitIdle waits until the registry has finished every request, so that
// what a killed client's requests did is all in storage.
func (rec *recorder) waitIdle(t *testing.T) {
	t.Helper()
	rec.mu.Lock()
	idle := rec.idle
	rec.mu.Unlock()
	select {
	case <-idle:
	case <-time.After(time.Minute):
		rec.mu.Lock()
		defer rec.mu.Unlock()
		t.Fatalf("%d registry requests still running a minute after the client died", rec.inflight)
	}
}

// startCrashRegistry serves a registry on storage/fs in a temp directory.
func startCrashRegistry(t *testing.T) (*fs.Store, *recorder, string) {
	t.Helper()
	st, h := newRegistry(t)
	rec := newRecorder(h)
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	return st, rec, srv.URL
}

// storedBlobs lists the blobs in storage: digest → size.
func storedBlobs(t *testing.T, st storage.Storage) map[digest.Digest]int64 {
	t.Helper()
	out := map[digest.Digest]int64{}
	err := st.List(context.Background(), "blobs/", func(info storage.Info) error {
		hex := info.Key[strings.LastIndexByte(info.Key, '/')+1:]
		out[digest.NewDigestFromEncoded(digest.SHA256, hex)] = info.Size
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkTags checks, through the HTTP API, that every tag of every model in
// the global index resolves to a manifest whose every blob is stored with
// its declared size. It returns the tags of every model: "repo/name:tag" →
// manifest digest.
func checkTags(ctx context.Context, api *client.API, stored map[digest.Digest]int64) (map[string]digest.Digest, error) {
	global, err := api.Index(ctx, "", "", "")
	if err != nil {
		return nil, fmt.Errorf("global index: %w", err)
	}
	tags := map[string]digest.Digest{}
	for _, model := range global.Manifests {
		repo, name, ok := strings.Cut(model.Name, "/")
		if !ok {
			return nil, fmt.Errorf("global index names %q, not REPOSITORY/NAME", model.Name)
		}
		idx, err := api.Index(ctx, repo, name, "")
		if err != nil {
			return nil, fmt.Errorf("index of %s: %w", model.Name, err)
		}
		for _, tag := range idx.Manifests {
			m, _, d, err := api.GetManifest(ctx, repo, name, tag.Name)
			if err != nil {
				return nil, fmt.Errorf("%s:%s: %w", model.Name, tag.Name, err)
			}
			if d != tag.Digest {
				return nil, fmt.Errorf("%s:%s serves manifest %s, the index says %s", model.Name, tag.Name, d, tag.Digest)
			}
			for _, b := range m.Referenced() {
				size, ok := stored[b.Digest]
				if !ok {
					return nil, fmt.Errorf("%s:%s (manifest %s) names blob %s (%s), which is not stored", model.Name, tag.Name, d, b.Digest, b.Name)
				}
				if size != b.Size {
					return nil, fmt.Errorf("%s:%s names blob %s (%s) of %d bytes; %d are stored", model.Name, tag.Name, b.Digest, b.Name, b.Size, size)
				}
			}
			tags[model.Name+":"+tag.Name] = d
		}
	}
	return tags, nil
}

// cliTimeout bounds one CLI run: a hung run is killed and reported, not waited on forever.
const cliTimeout = 5 * time.Minute

// cliJSON runs the CLI with -o json -q and decodes its result.
func cliJSON(bin string, env []string, args ...string) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, "-o", "json", "-q")...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("modelx %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	var res map[string]any
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("modelx %s: output %q: %v", strings.Join(args, " "), out, err)
	}
	return res, nil
}

func num(res map[string]any, key string) int64 {
	f, _ := res[key].(float64)
	return int64(f)
}

// killAfter runs the CLI and SIGKILLs it after delay. It reports whether
// the kill came first; a run that ended by itself must have succeeded.
func killAfter(t *testing.T, bin string, env []string, delay time.Duration, args ...string) (killed bool, took time.Duration, err error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case err = <-done:
	case <-timer.C:
		_ = cmd.Process.Kill()
		select {
		case err = <-done:
		case <-time.After(time.Minute):
			t.Fatal("the CLI did not die of SIGKILL within a minute")
		}
	}
	took = time.Since(start)
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
		return true, took, nil
	}
	if err != nil {
		return false, took, fmt.Errorf("modelx %s ended by itself with %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return false, took, nil
}

// measure runs the CLI to completion and returns how long it took.
func measure(t *testing.T, bin string, env []string, args ...string) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := cliJSON(bin, env, args...); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// killClock draws kill delays. A run's first S is the CLI starting, where
// a kill tests nothing; the delay is S plus a seeded fraction of
// 1.25×(T−S), T being the median of the last three uninterrupted runs
// measured and S the median of the last three runs of `modelx version`
// (at most T/3). The tests measure both again every tenth trial, and add
// every trial that finished before its kill to T's runs, so the window
// follows the load of the machine.
type killClock struct {
	bin          string
	env          []string
	starts, runs []time.Duration
}

func newKillClock(t *testing.T, bin string, env []string) *killClock {
	t.Helper()
	k := &killClock{bin: bin, env: env}
	for range 3 {
		k.measureStartup(t)
	}
	return k
}

func (k *killClock) measureStartup(t *testing.T) {
	t.Helper()
	start := time.Now()
	cmd := exec.Command(k.bin, "version")
	cmd.Env = k.env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("modelx version: %v\n%s", err, out)
	}
	k.starts = append(k.starts, time.Since(start))
}

func (k *killClock) add(d time.Duration) { k.runs = append(k.runs, d) }

func medianOfLast3(d []time.Duration) time.Duration {
	last := slices.Clone(d[max(0, len(d)-3):])
	slices.Sort(last)
	return last[len(last)/2]
}

// window returns S and T.
func (k *killClock) window() (time.Duration, time.Duration) {
	T := medianOfLast3(k.runs)
	return min(medianOfLast3(k.starts), T/3), T
}

func (k *killClock) delay(frac float64) time.Duration {
	S, T := k.window()
	return S + time.Duration(frac*1.25*float64(T-S))
}

func (k *killClock) String() string {
	return fmt.Sprintf("[%v, %v)", k.delay(0).Round(time.Millisecond), k.delay(1).Round(time.Millisecond))
}

// TestCrashKillPush SIGKILLs `modelx push` at seeded random points of the
// transfer, MODELX_CRASH_TRIALS times (default 50). Each trial pushes a
// seeded variant of the model as a new tag and kills the CLI after a
// delay drawn from [S, S+1.25×(T−S)), T being the median time of the last
// three uninterrupted pushes of variants and S the CLI's start-up time,
// at most T/3 (see killClock). After each kill:
//
//   - every tag of every model resolves to a manifest whose blobs are all
//     stored with their declared sizes (no tag ever names a missing blob);
//   - pushing the variant again to the same tag succeeds, and the blobs it
//     sends are only ones that were not stored when the CLI died: no body
//     of a blob stored then reaches the registry, and uploaded_bytes is at
//     most the size of the manifest's blobs missing then;
//   - the tag pulls back byte-identical to the variant.
//
// Most trials must have been killed, and at least a tenth of them between
// the first blob bytes reaching the registry and the tag.
func TestCrashKillPush(t *testing.T) {
	trials, base := testenv.CrashTrials(t, 50), testenv.CrashSeed(t)
	bin := buildCLI(t)
	st, rec, url := startCrashRegistry(t)
	root := t.TempDir()
	env := append(os.Environ(), "MODELX_CONFIG="+filepath.Join(root, "config.yaml"), "MODELX_TOKEN=")
	ctx := context.Background()
	c := client.New(client.Options{})
	api := c.API(url)
	model := url + "/crash/push"

	m := newCrashModel(t)
	src := filepath.Join(root, "src")
	writeFiles(t, src, m.base, nil)
	if _, err := cliJSON(bin, env, "push", model+":base", src); err != nil {
		t.Fatal(err)
	}
	// T: uninterrupted pushes of variants (seeds outside the trials'
	// range), CLI start to exit; three now, one more every tenth trial.
	clock := newKillClock(t, bin, env)
	calibrate := func(i int) {
		v := m.variant(1<<63 + uint64(i))
		writeFiles(t, src, v, m.cur)
		m.cur = v
		clock.add(measure(t, bin, env, "push", fmt.Sprintf("%s:calibrate-%d", model, i), src))
		clock.measureStartup(t)
	}
	for i := range 3 {
		calibrate(-1 - i)
	}
	t.Logf("uninterrupted pushes of variants took %v, the CLI starts in %v; kills land in %v", clock.runs, clock.starts, clock)

	verify := filepath.Join(root, "verify")
	var killed, midway, afterTag, finished, failures int
	for i := range trials {
		seed := base + uint64(i)
		r, _ := testenv.SeededRand(seed, "trial")
		frac := r.Float64()
		delay := clock.delay(frac)
		if i%10 == 9 {
			calibrate(i)
		}
		v := m.variant(seed)
		writeFiles(t, src, v, m.cur)
		m.cur = v
		tag := fmt.Sprintf("t%04d", i)
		ref := model + ":" + tag
		fail := func(format string, args ...any) {
			t.Helper()
			failures++
			t.Errorf("trial %d (seed %d, kill at fraction %.3f = %v): %s", i, seed, frac, delay, fmt.Sprintf(format, args...))
			if failures >= 5 {
				t.FailNow()
			}
		}

		before := storedBlobs(t, st)
		rec.reset()
		wasKilled, took, err := killAfter(t, bin, env, delay, "push", ref, src, "-q")
		if err != nil {
			fail("%v", err)
			continue
		}
		rec.waitIdle(t)
		var received int64
		for _, n := range rec.reset() {
			received += n
		}
		atKill := storedBlobs(t, st)
		tags, err := checkTags(ctx, api, atKill)
		if err != nil {
			fail("after the kill: %v", err)
			continue
		}
		newBlobs := 0
		for d := range atKill {
			if _, ok := before[d]; !ok {
				newBlobs++
			}
		}
		_, tagged := tags["crash/push:"+tag]
		state := "finished"
		switch {
		case !wasKilled:
			finished++
			clock.add(took)
		case tagged:
			killed++
			afterTag++
			state = "killed after the tag was written"
		case newBlobs > 0 || received > 0:
			killed++
			midway++
			state = fmt.Sprintf("killed mid-transfer, %d blob bytes received, %d new blobs stored", received, newBlobs)
		default:
			killed++
			state = "killed before any blob bytes reached the registry"
		}

		res, err := cliJSON(bin, env, "push", ref, src)
		sent := rec.reset()
		if err != nil {
			fail("re-push after %s: %v", state, err)
			continue
		}
		d := digest.Digest(res["digest"].(string))
		pushed, _, _, err := api.GetManifest(ctx, "crash", "push", string(d))
		if err != nil {
			fail("manifest %s of the re-push: %v", d, err)
			continue
		}
		var missing, missingBytes int64
		names := map[digest.Digest]bool{}
		for _, b := range pushed.Referenced() {
			if _, ok := atKill[b.Digest]; !ok && !names[b.Digest] {
				missing++
				missingBytes += b.Size
			}
			names[b.Digest] = true
		}
		for bd, n := range sent {
			if size, ok := atKill[bd]; ok {
				fail("re-push after %s sent %d bytes of blob %s, which was stored (%d bytes) when the CLI died", state, n, bd, size)
			}
			if !names[bd] {
				fail("re-push sent blob %s, which its manifest does not name", bd)
			}
		}
		up := num(res, "uploaded_bytes")
		if up > missingBytes || num(res, "blobs_transferred") > missing {
			fail("re-push after %s uploaded %d bytes in %d blobs; only %d bytes in %d blobs were missing at the kill: %v",
				state, up, num(res, "blobs_transferred"), missingBytes, missing, res)
		}
		if !wasKilled && up != 0 {
			fail("re-push of a push that finished uploaded %d bytes", up)
		}

		if _, err := checkTags(ctx, api, storedBlobs(t, st)); err != nil {
			fail("after the re-push: %v", err)
			continue
		}
		pullRef, err := client.ParseReference(ref, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Pull(ctx, pullRef, verify, client.PullOptions{}); err != nil {
			fail("pull back: %v", err)
			continue
		}
		got, err := readTree(verify)
		if err != nil {
			fail("pulled tree: %v", err)
			continue
		}
		if diff := sameTree(got, m.cur); diff != "" {
			fail("the pushed tag pulls back different: %s", diff)
		}
		t.Logf("trial %d seed %d: kill after %v (fraction %.3f, ran %v): %s; re-push sent %d bytes in %d blobs (%d bytes in %d blobs were missing)",
			i, seed, delay.Round(time.Millisecond), frac, took.Round(time.Millisecond), state, up, num(res, "blobs_transferred"), missingBytes, missing)
	}
	t.Logf("%d trials: %d killed (%d mid-transfer, %d after the tag was written, %d before any blob bytes arrived), %d finished before the kill; uninterrupted pushes took %v, the CLI started in %v",
		trials, killed, midway, afterTag, killed-midway-afterTag, finished, clock.runs, clock.starts)
	if trials >= 10 && (killed*2 < trials || midway*10 < trials) {
		t.Errorf("the kills missed the transfer: %d of %d trials killed, %d of them mid-transfer; want at least half killed and a tenth mid-transfer", killed, trials, midway)
	}
}

// checkNoTornFiles reports every file under dir (outside .modelx) that
// holds neither the target's bytes for its name nor, when there was an
// older version in dir, that version's bytes.
func checkNoTornFiles(dir string, target, older map[string][]byte) (fromTarget, fromOlder int, problems []string) {
	if _, err := os.Stat(dir); errors.Is(err, iofs.ErrNotExist) {
		return 0, 0, nil // killed before it made the directory
	}
	err := testenv.WalkModelFiles(dir, func(rel, p string, d iofs.DirEntry) error {
		if !d.Type().IsRegular() {
			problems = append(problems, fmt.Sprintf("%s is a %v", rel, d.Type()))
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		want, inTarget := target[rel]
		old, inOlder := older[rel]
		switch {
		case inTarget && bytes.Equal(data, want):
			fromTarget++
		case inOlder && bytes.Equal(data, old):
			fromOlder++
		case !inTarget && !inOlder:
			problems = append(problems, fmt.Sprintf("%s (%d bytes) belongs to neither version", rel, len(data)))
		default:
			problems = append(problems, fmt.Sprintf("%s holds %d bytes matching neither version (target %d bytes, older %d bytes)", rel, len(data), len(want), len(old)))
		}
		return nil
	})
	if err != nil {
		problems = append(problems, err.Error())
	}
	return fromTarget, fromOlder, problems
}

// TestCrashKillPull SIGKILLs `modelx pull` at seeded random points,
// MODELX_CRASH_TRIALS times (default 50). Each trial pulls one of three
// versions of the model into a directory that is empty, holds a copy of
// another version (no .modelx, so pulled with --force), or holds the
// version the previous trial pulled (with its .modelx, so the files
// modelx wrote are replaced without --force, also after a kill), and kills the CLI after a delay drawn from
// [S, S+1.25×(T−S)), T being the median time of the last three pulls into
// an empty directory and S the CLI's start-up time, at most T/3 (see
// killClock). After each kill, every file under the directory outside
// .modelx holds exactly the bytes of the version being pulled or of the
// one that was there before: none is half-written or mixed. Pulling again
// completes, leaves exactly the version's files, and downloads no more
// than an uninterrupted pull from the same starting directory would have
// (so never more than the whole version); over the killed trials the
// resumed pulls download less than uninterrupted ones.
func TestCrashKillPull(t *testing.T) {
	trials, base := testenv.CrashTrials(t, 50), testenv.CrashSeed(t)
	bin := buildCLI(t)
	_, _, url := startCrashRegistry(t)
	root := t.TempDir()
	env := append(os.Environ(), "MODELX_CONFIG="+filepath.Join(root, "config.yaml"), "MODELX_TOKEN=")
	ctx := context.Background()
	c := client.New(client.Options{})
	model := url + "/crash/pull"
	refOf := func(v int) string { return fmt.Sprintf("%s:v%d", model, v) }
	parse := func(s string) client.Reference {
		ref, err := client.ParseReference(s, nil)
		if err != nil {
			t.Fatal(err)
		}
		return ref
	}

	m := newCrashModel(t)
	versions := []map[string][]byte{m.base, m.variant(1 << 62), m.variant(1<<62 + 1)}
	vdirs := make([]string, len(versions))
	for i, v := range versions {
		vdirs[i] = filepath.Join(root, fmt.Sprintf("v%d", i))
		writeFiles(t, vdirs[i], v, nil)
		if _, err := c.Push(ctx, parse(refOf(i)), vdirs[i]); err != nil {
			t.Fatal(err)
		}
	}
	scratch := 0
	newDir := func() string {
		scratch++
		return filepath.Join(root, fmt.Sprintf("dst-%04d", scratch))
	}
	// baseline[{from, to}]: what an uninterrupted pull of version to
	// downloads into a directory holding version from (-1: empty).
	baseline := map[[2]int]int64{}
	baselineOf := func(from, to int) int64 {
		key := [2]int{from, to}
		if n, ok := baseline[key]; ok {
			return n
		}
		dir := newDir()
		if from >= 0 {
			writeFiles(t, dir, versions[from], nil)
		}
		// A copy without .modelx: modelx does not know its files.
		res, err := c.Pull(ctx, parse(refOf(to)), dir, client.PullOptions{Force: from >= 0})
		if err != nil {
			t.Fatal(err)
		}
		os.RemoveAll(dir)
		baseline[key] = res.DownloadedBytes
		return res.DownloadedBytes
	}
	clock := newKillClock(t, bin, env)
	calibrate := func() {
		dir := newDir()
		clock.add(measure(t, bin, env, "pull", refOf(0), dir))
		clock.measureStartup(t)
		os.RemoveAll(dir)
	}
	for range 3 {
		calibrate()
	}
	t.Logf("uninterrupted pulls into an empty directory took %v, the CLI starts in %v; kills land in %v", clock.runs, clock.starts, clock)

	var killed, finished, failures int
	var resumedBytes, uninterruptedBytes int64
	prevDir, prevVersion := "", -1
	for i := range trials {
		seed := base + uint64(i)
		r, _ := testenv.SeededRand(seed, "trial")
		frac := r.Float64()
		delay := clock.delay(frac)
		if i%10 == 9 {
			calibrate()
		}
		target := r.IntN(len(versions))
		mode := r.IntN(3)
		older := r.IntN(len(versions) - 1)
		if older >= target {
			older++
		}
		dir, from, start := newDir(), -1, "empty"
		var force []string // into a copy: files modelx does not know, so --force
		switch {
		case mode == 2 && prevVersion >= 0 && prevVersion != target:
			dir, from, start = prevDir, prevVersion, fmt.Sprintf("the previous trial's v%d (with .modelx)", prevVersion)
		case mode >= 1:
			writeFiles(t, dir, versions[older], nil)
			from, start, force = older, fmt.Sprintf("a copy of v%d", older), []string{"--force"}
		}
		if prevDir != "" && prevDir != dir {
			os.RemoveAll(prevDir)
		}
		fail := func(format string, args ...any) {
			t.Helper()
			failures++
			t.Errorf("trial %d (seed %d, pull v%d into %s, kill at fraction %.3f = %v): %s", i, seed, target, start, frac, delay, fmt.Sprintf(format, args...))
			if failures >= 5 {
				t.FailNow()
			}
		}
		var olderFiles map[string][]byte
		if from >= 0 {
			olderFiles = versions[from]
		}
		want := baselineOf(from, target)

		wasKilled, took, err := killAfter(t, bin, env, delay, append([]string{"pull", refOf(target), dir, "-q"}, force...)...)
		prevDir, prevVersion = dir, -1
		if err != nil {
			fail("%v", err)
			continue
		}
		nt, no, problems := checkNoTornFiles(dir, versions[target], olderFiles)
		if len(problems) > 0 {
			fail("after the kill: %s", strings.Join(problems, "; "))
			continue
		}
		res, err := cliJSON(bin, env, append([]string{"pull", refOf(target), dir}, force...)...)
		if err != nil {
			fail("re-pull: %v", err)
			continue
		}
		got, err := readTree(dir)
		if err != nil {
			fail("pulled tree: %v", err)
			continue
		}
		if diff := sameTree(got, versions[target]); diff != "" {
			fail("the re-pulled tree differs from v%d: %s", target, diff)
			continue
		}
		prevVersion = target
		down := num(res, "downloaded_bytes")
		if down > want {
			fail("the re-pull downloaded %d bytes; an uninterrupted pull from the same start downloads %d", down, want)
		}
		if full := baselineOf(-1, target); down > full {
			fail("the re-pull downloaded %d bytes, more than the whole version (%d)", down, full)
		}
		state := "finished before the kill"
		if wasKilled {
			killed++
			resumedBytes += down
			uninterruptedBytes += want
			state = fmt.Sprintf("killed with %d files of v%d and %d of the older version in place", nt, target, no)
		} else {
			finished++
			clock.add(took)
		}
		t.Logf("trial %d seed %d: pull v%d into %s, kill after %v (fraction %.3f, ran %v): %s; re-pull downloaded %d of %d bytes",
			i, seed, target, start, delay.Round(time.Millisecond), frac, took.Round(time.Millisecond), state, down, want)
	}
	t.Logf("%d trials: %d killed, %d finished before the kill; resumed pulls downloaded %d bytes where uninterrupted ones download %d; uninterrupted pulls took %v, the CLI started in %v",
		trials, killed, finished, resumedBytes, uninterruptedBytes, clock.runs, clock.starts)
	if trials >= 10 {
		if killed*2 < trials {
			t.Errorf("only %d of %d pulls were killed: the kills missed the transfer", killed, trials)
		}
		if resumedBytes >= uninterruptedBytes {
			t.Errorf("resumed pulls downloaded %d bytes, no less than uninterrupted pulls (%d): killed pulls keep no work", resumedBytes, uninterruptedBytes)
		}
	}
}
