package main

// TestCrashKillModelxd SIGKILLs the modelxd binary (storage/fs) while
// several clients push into it, restarts it on the same data directory and
// checks what survived.
//
// Environment:
//
//	MODELX_CRASH_TRIALS=N  the client crash tests' trial count; this test
//	                       restarts modelxd N/5 times (default 50/5 = 10,
//	                       never fewer than 10).
//	MODELX_CRASH_SEED=S    base seed (default 1); trial i uses seed S+i for
//	                       the kill point and the pushers' edits. Replay a
//	                       logged trial with MODELX_CRASH_SEED=<seed>
//	                       MODELX_CRASH_TRIALS=5 (the kill lands at the same
//	                       fraction of the window; the interleaving of the
//	                       pushes cannot be replayed exactly).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	iofs "io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/client"
	"modelx.io/modelx/client/chunker"
	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/spec"
)

// pushedVersion is one push a client saw acknowledged (Push returned nil).
type pushedVersion struct {
	model, tag string
	digest     digest.Digest
	files      map[string]digest.Digest // the pushed files' content
	trial      int
}

// crashPusher pushes edited versions of its own model directory, one after
// another, until its context ends.
type crashPusher struct {
	id    int
	dir   string
	r     *rand.Rand
	cc    *rand.ChaCha8
	n     int
	files map[string]digest.Digest
}

func newCrashPusher(t *testing.T, id int, dir string) *crashPusher {
	p := &crashPusher{id: id, dir: dir}
	p.r, p.cc = testenv.SeededRand(uint64(id), "pusher")
	if err := os.MkdirAll(filepath.Join(dir, "tok"), 0o755); err != nil {
		t.Fatal(err)
	}
	w := make([]byte, 256<<10+p.r.IntN(512<<10))
	p.cc.Read(w)
	p.write(t, "weights.bin", w)
	for i := range 12 {
		p.write(t, fmt.Sprintf("tok/vocab-%02d.txt", i), fmt.Appendf(nil, "pusher %d vocab %d %x\n", id, i, p.r.Uint64()))
	}
	return p
}

func (p *crashPusher) read(t *testing.T, name string) []byte {
	data, err := os.ReadFile(filepath.Join(p.dir, name))
	if err != nil {
		t.Error(err)
	}
	return data
}

func (p *crashPusher) write(t *testing.T, name string, data []byte) {
	if err := os.WriteFile(filepath.Join(p.dir, name), data, 0o644); err != nil {
		t.Error(err)
	}
}

// edit changes the config, a region of the weights (a chunk or two) and a
// small file, and returns the digests of every file.
func (p *crashPusher) edit(t *testing.T, seed uint64) map[string]digest.Digest {
	p.n++
	p.write(t, spec.ConfigFileName, fmt.Appendf(nil, "description: pusher %d version %d of trial seed %d\n", p.id, p.n, seed))
	w := p.read(t, "weights.bin")
	off := p.r.IntN(len(w) - 1)
	p.cc.Read(w[off:min(len(w), off+1+p.r.IntN(96<<10))])
	p.write(t, "weights.bin", w)
	p.write(t, fmt.Sprintf("tok/vocab-%02d.txt", p.r.IntN(12)), fmt.Appendf(nil, "pusher %d edit %d %x\n", p.id, p.n, p.r.Uint64()))
	files, err := fileDigests(p.dir)
	if err != nil {
		t.Error(err)
	}
	return files
}

// fileDigests is the digest of every file under dir, by slash path.
func fileDigests(dir string) (map[string]digest.Digest, error) {
	files := map[string]digest.Digest{}
	err := testenv.WalkModelFiles(dir, func(rel, path string, d iofs.DirEntry) error {
		data, err := os.ReadFile(path)
		files[rel] = digest.FromBytes(data)
		return err
	})
	return files, err
}

func parseRef(t *testing.T, s string) client.Reference {
	ref, err := client.ParseReference(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// checkDataDir reads the data directory as the fs backend lays it out and
// checks every document: each blob's bytes hash to its name, each manifest
// hashes to its name and parses, each index parses. It returns the stored
// blobs (digest → size).
func checkDataDir(dataDir string) (map[digest.Digest]int64, []string) {
	blobs := map[digest.Digest]int64{}
	var problems []string
	err := testenv.WalkModelFiles(dataDir, func(rel, p string, d iofs.DirEntry) error {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		name := filepath.Base(p)
		switch {
		case strings.HasPrefix(rel, "blobs/sha256/"):
			if hex.EncodeToString(sum[:]) != name {
				problems = append(problems, fmt.Sprintf("blob %s holds %d bytes of other content (torn or partial write)", rel, len(data)))
			}
			blobs[digest.NewDigestFromEncoded(digest.SHA256, name)] = int64(len(data))
		case strings.Contains(rel, "/manifests/sha256/"):
			if hex.EncodeToString(sum[:]) != name {
				problems = append(problems, fmt.Sprintf("manifest %s holds %d bytes of other content", rel, len(data)))
			} else if _, err := spec.ParseManifest(data); err != nil {
				problems = append(problems, fmt.Sprintf("manifest %s: %v", rel, err))
			}
		case name == "index.json":
			var idx spec.Index
			if err := json.Unmarshal(data, &idx); err != nil {
				problems = append(problems, fmt.Sprintf("index %s (%d bytes) does not parse: %v", rel, len(data), err))
			}
		}
		return nil
	})
	if err != nil {
		problems = append(problems, err.Error())
	}
	return blobs, problems
}

// checkServedTags reads the global index and every model's index through
// the API, and checks that every tag resolves to the manifest the index
// names and that every blob it names is stored with its declared size.
// It returns "repo/name:tag" → digest.
func checkServedTags(ctx context.Context, api *client.API, blobs map[digest.Digest]int64) (map[string]digest.Digest, []string) {
	global, err := api.Index(ctx, "", "", "")
	if err != nil {
		return nil, []string{fmt.Sprintf("global index: %v", err)}
	}
	tags := map[string]digest.Digest{}
	var problems []string
	for _, model := range global.Manifests {
		repo, name, _ := strings.Cut(model.Name, "/")
		idx, err := api.Index(ctx, repo, name, "")
		if err != nil {
			problems = append(problems, fmt.Sprintf("index of %s: %v", model.Name, err))
			continue
		}
		for _, tag := range idx.Manifests {
			m, _, d, err := api.GetManifest(ctx, repo, name, tag.Name)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s:%s: %v", model.Name, tag.Name, err))
				continue
			}
			if d != tag.Digest {
				problems = append(problems, fmt.Sprintf("%s:%s serves %s, the index says %s", model.Name, tag.Name, d, tag.Digest))
			}
			for _, b := range m.Referenced() {
				if size, ok := blobs[b.Digest]; !ok || size != b.Size {
					problems = append(problems, fmt.Sprintf("%s:%s names blob %s (%s, %d bytes); stored: %v, %d bytes", model.Name, tag.Name, b.Digest, b.Name, b.Size, ok, size))
				}
			}
			tags[model.Name+":"+tag.Name] = d
		}
	}
	return tags, problems
}

// pulledFiles pulls ref into a new directory and returns its files' digests.
func pulledFiles(ctx context.Context, c *client.Client, ref client.Reference, dir string) (map[string]digest.Digest, error) {
	if _, err := c.Pull(ctx, ref, dir, client.PullOptions{DropState: true}); err != nil {
		return nil, err
	}
	return fileDigests(dir)
}

// TestCrashKillModelxd runs modelxd on a data directory while four clients
// push (with client.Client.Push) edited versions of their models: unique
// tags of three shared models, a tag of its own each client moves, and a
// new model per client and trial (so the global index is written too).
// After a seeded delay it SIGKILLs modelxd, restarts it on the same data
// directory and checks:
//
//   - every blob file hashes to its name, every manifest file hashes to
//     its name and parses, every index file parses (no torn write);
//   - the global index and every model's index are served, and every tag
//     resolves to a manifest whose every blob is stored with its size;
//   - every push ever acknowledged (in this and earlier trials) is still
//     tagged with the acknowledged digest, and a moved tag names its last
//     acknowledged version or the version that was being pushed to it;
//   - two acknowledged versions of this trial pull back byte-identical;
//   - a new push works and pulls back.
//
// The restarted server is the next trial's server.
func TestCrashKillModelxd(t *testing.T) {
	trials, base := max(10, testenv.CrashTrials(t, 50)/5), testenv.CrashSeed(t)
	bin := buildModelxd(t)
	dataDir := t.TempDir()
	work := t.TempDir()
	ctx := context.Background()
	// Small chunks and a low pack threshold: many blobs per push, so
	// the kill finds blob writes as well as manifest and index writes.
	c := client.New(client.Options{Concurrency: 2, SmallFileThreshold: 32 << 10,
		Chunker: chunker.Params{Min: 32 << 10, Avg: 64 << 10, Max: 256 << 10}})
	const pushers = 4
	ps := make([]*crashPusher, pushers)
	for i := range ps {
		ps[i] = newCrashPusher(t, i, filepath.Join(work, fmt.Sprintf("pusher-%d", i)))
	}

	start := func() (string, *exec.Cmd, *bytes.Buffer) {
		return startModelxd(t, bin, nil, "--data-dir", dataDir)
	}
	url, cmd, logs := start()

	// The window kills are drawn from: ten times the median time of one
	// push, measured on the first server and then on every trial's acks.
	var pushTimes []time.Duration
	for i := range 3 {
		p := ps[i%pushers]
		p.edit(t, 0)
		began := time.Now()
		if _, err := c.Push(ctx, parseRef(t, fmt.Sprintf("%s/crash/warmup:v%d", url, i)), p.dir); err != nil {
			t.Fatal(err)
		}
		pushTimes = append(pushTimes, time.Since(began))
	}
	window := func() time.Duration {
		last := slices.Clone(pushTimes[max(0, len(pushTimes)-9):])
		slices.Sort(last)
		return 10 * last[len(last)/2]
	}

	var acked []pushedVersion             // every acknowledged push, all trials
	moved := map[string][]digest.Digest{} // a moved tag's acknowledged digests, in order
	var failures int
	for trial := range trials {
		seed := base + uint64(trial)
		r, _ := testenv.SeededRand(seed, "trial")
		frac := r.Float64()
		win := window()
		delay := time.Duration(frac * float64(win))
		fail := func(format string, args ...any) {
			t.Helper()
			failures++
			t.Errorf("trial %d (seed %d, kill at %.3f of the window = %v): %s", trial, seed, frac, delay, fmt.Sprintf(format, args...))
			if failures >= 5 {
				t.FailNow()
			}
		}

		tempsBefore, _ := os.ReadDir(filepath.Join(dataDir, ".modelx", "tmp"))

		// Push until the kill.
		pctx, cancel := context.WithCancel(ctx)
		var killed atomic.Bool
		var mu sync.Mutex
		var trialAcks []pushedVersion
		// movedCandidates: for each moved tag, the digests a push to it
		// may have been writing at the kill.
		movedCandidates := map[string][]digest.Digest{}
		var wg sync.WaitGroup
		for _, p := range ps {
			wg.Go(func() {
				for i := 0; pctx.Err() == nil; i++ {
					files := p.edit(t, seed)
					model := fmt.Sprintf("crash/m%d", p.r.IntN(3))
					if i == 0 {
						model = fmt.Sprintf("crash/t%d-p%d", trial, p.id)
					}
					tag := fmt.Sprintf("p%d-%d", p.id, p.n)
					began := time.Now()
					res, err := c.Push(pctx, parseRef(t, url+"/"+model+":"+tag), p.dir)
					if err != nil {
						if !killed.Load() {
							t.Errorf("trial %d: push %s:%s failed while modelxd was up: %v", trial, model, tag, err)
						}
						return
					}
					mu.Lock()
					trialAcks = append(trialAcks, pushedVersion{model: model, tag: tag, digest: res.Digest, files: files, trial: trial})
					pushTimes = append(pushTimes, time.Since(began))
					movedTag := fmt.Sprintf("crash/moved:p%d", p.id)
					movedCandidates[movedTag] = append(movedCandidates[movedTag], res.Digest)
					mu.Unlock()
					if p.n%2 == 0 {
						// Move this pusher's tag to the version just pushed.
						res, err := c.Push(pctx, parseRef(t, url+"/"+movedTag), p.dir)
						if err != nil {
							if !killed.Load() {
								t.Errorf("trial %d: push %s failed while modelxd was up: %v", trial, movedTag, err)
							}
							return
						}
						mu.Lock()
						moved[movedTag] = append(moved[movedTag], res.Digest)
						movedCandidates[movedTag] = nil
						mu.Unlock()
					}
				}
			})
		}
		time.Sleep(delay)
		killed.Store(true)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		cancel()
		wg.Wait()
		if t.Failed() {
			t.Fatalf("modelxd log:\n%s", logs.String())
		}
		acked = append(acked, trialAcks...)

		// Restart on the same data directory and look at what survived.
		url, cmd, logs = start()
		api := c.API(url)
		blobs, problems := checkDataDir(dataDir)
		for _, p := range problems {
			fail("data directory after the kill: %s", p)
		}
		tags, problems := checkServedTags(ctx, api, blobs)
		for _, p := range problems {
			fail("after the restart: %s", p)
		}
		for _, a := range acked {
			if got, ok := tags[a.model+":"+a.tag]; !ok {
				fail("acknowledged push %s:%s (trial %d, %s) is gone", a.model, a.tag, a.trial, a.digest)
			} else if got != a.digest {
				fail("acknowledged push %s:%s (trial %d) was %s, the tag now names %s", a.model, a.tag, a.trial, a.digest, got)
			}
		}
		for tag, ds := range moved {
			got, ok := tags[tag]
			if !ok {
				fail("moved tag %s, acknowledged %d times, is gone", tag, len(ds))
				continue
			}
			switch {
			case got == ds[len(ds)-1]:
			case slices.Contains(movedCandidates[tag], got):
				// The push under way at the kill had moved it: that is
				// the version the tag holds from now on.
				moved[tag] = append(ds, got)
			default:
				fail("moved tag %s names %s; its last acknowledged version is %s (position among earlier ones: %d)", tag, got, ds[len(ds)-1], slices.Index(ds, got))
			}
		}
		for i, a := range trialAcks {
			if i != 0 && i != len(trialAcks)-1 {
				continue
			}
			files, err := pulledFiles(ctx, c, parseRef(t, url+"/"+a.model+":"+a.tag), filepath.Join(work, fmt.Sprintf("pull-%d-%d", trial, i)))
			if err != nil {
				fail("pull %s:%s: %v", a.model, a.tag, err)
			} else if !maps.Equal(files, a.files) {
				fail("%s:%s pulls back different files", a.model, a.tag)
			}
		}
		p := ps[trial%pushers]
		want := p.edit(t, seed)
		fresh := parseRef(t, fmt.Sprintf("%s/crash/fresh:after-%d", url, trial))
		if _, err := c.Push(ctx, fresh, p.dir); err != nil {
			fail("push after the restart: %v", err)
		} else if files, err := pulledFiles(ctx, c, fresh, filepath.Join(work, fmt.Sprintf("fresh-%d", trial))); err != nil {
			fail("pull after the restart: %v", err)
		} else if !maps.Equal(files, want) {
			fail("the push after the restart pulls back different files")
		}
		// Each temp file the kill left is a write it interrupted.
		temps, _ := os.ReadDir(filepath.Join(dataDir, ".modelx", "tmp"))
		t.Logf("trial %d seed %d: killed after %v (%.3f of %v) with %d pushes acknowledged, interrupting %d writes; now %d blobs, %d tags",
			trial, seed, delay.Round(time.Millisecond), frac, win.Round(time.Millisecond), len(trialAcks), len(temps)-len(tempsBefore), len(blobs), len(tags))
		if t.Failed() {
			t.Logf("modelxd log after the restart:\n%s", logs.String())
		}
	}
	t.Logf("%d kills, %d acknowledged pushes, all present after every restart", trials, len(acked))
}
