package client_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/client"
)

// progressLog records what an operation reports to its Progress and
// checks the contract: the plan comes before any file; every file is
// tracked once, by one tracker, that ends once, with all its bytes moved
// or skipped; and the sums are the result's figures.
type progressLog struct {
	mu                             sync.Mutex
	planned                        bool
	total, present, moved, skipped int64
	files                          []*fileLog
	problems                       []string
}

type fileLog struct {
	log                  *progressLog
	name                 string
	size, moved, skipped int64
	done                 int
	err                  error
}

func (l *progressLog) Plan(total, present int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.planned = true
	l.total += total
	l.present += present
}

func (l *progressLog) Start(name string, size int64) client.Tracker {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.planned {
		l.problems = append(l.problems, fmt.Sprintf("%s started before the plan", name))
	}
	f := &fileLog{log: l, name: name, size: size}
	l.files = append(l.files, f)
	return f
}

func (f *fileLog) Add(n int64) {
	f.log.mu.Lock()
	defer f.log.mu.Unlock()
	if f.done > 0 {
		f.log.problems = append(f.log.problems, fmt.Sprintf("%s: %d bytes moved after Done", f.name, n))
	}
	f.moved += n
	f.log.moved += n
}

func (f *fileLog) Skip(n int64) {
	f.log.mu.Lock()
	defer f.log.mu.Unlock()
	if f.done > 0 {
		f.log.problems = append(f.log.problems, fmt.Sprintf("%s: %d bytes skipped after Done", f.name, n))
	}
	f.skipped += n
	f.log.skipped += n
}

func (f *fileLog) Done(err error) {
	f.log.mu.Lock()
	defer f.log.mu.Unlock()
	f.done++
	f.err = err
}

// check compares the log with a successful operation's figures: moved
// bytes, and skipped bytes (present ones included), plus repeated, the
// bytes of content repeated within the model, which progress shows as
// skipped while the result counts each blob once (negative: at least 0).
func (l *progressLog) check(t *testing.T, what string, moved, skipped, repeated int64) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.problems {
		t.Errorf("%s: %s", what, p)
	}
	if repeated < 0 { // not known exactly: whatever the display shows beyond the result
		repeated = max(0, l.skipped+l.present-skipped)
	}
	if l.moved != moved || l.skipped+l.present != skipped+repeated {
		t.Errorf("%s: progress moved %d, skipped %d + present %d; the result says moved %d, skipped %d, and %d bytes repeat", what, l.moved, l.skipped, l.present, moved, skipped, repeated)
	}
	if l.moved+l.skipped != l.total {
		t.Errorf("%s: moved %d + skipped %d != planned total %d", what, l.moved, l.skipped, l.total)
	}
	names := map[string]bool{}
	for _, f := range l.files {
		if names[f.name] {
			t.Errorf("%s: %s tracked twice", what, f.name)
		}
		names[f.name] = true
		if f.done != 1 || f.err != nil {
			t.Errorf("%s: %s ended %d times (%v)", what, f.name, f.done, f.err)
		}
		if f.moved+f.skipped != f.size {
			t.Errorf("%s: %s moved %d + skipped %d of %d", what, f.name, f.moved, f.skipped, f.size)
		}
	}
}

// tracked returns the tracked file named name, or nil.
func (l *progressLog) tracked(name string) *fileLog {
	i := slices.IndexFunc(l.files, func(f *fileLog) bool { return f.name == name })
	if i < 0 {
		return nil
	}
	return l.files[i]
}

// TestProgressAccountsForEveryByte: for pushes (new, repeated content,
// then a small change), pulls (new, over an older version, resumed,
// unchanged) and copies (mounted, streamed), the progress plans its total
// before any file starts, tracks a chunked file as one file, counts every
// planned byte once as moved or skipped, and its sums equal the result's.
func TestProgressAccountsForEveryByte(t *testing.T) {
	es := envs(t)
	ctx := context.Background()
	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: accounting\n"), 0o644)
	weights := random(31, 1<<20)
	write(t, src, "weights.bin", weights, 0o644)
	write(t, src, "copy-of-weights.bin", weights, 0o644)   // every chunk repeats one
	write(t, src, "zeros.bin", make([]byte, 1<<20), 0o644) // one chunk, repeated
	medium := random(32, 12<<10)                           // one chunk: a whole-file blob
	write(t, src, "medium.bin", medium, 0o644)
	for i := range 40 {
		write(t, src, fmt.Sprintf("vocab/%02d.txt", i), random(uint64(100+i), 2<<10), 0o644)
	}
	for k, e := range es {
		t.Run(e.name, func(t *testing.T) {
			model := fmt.Sprintf("acct%d/model", k)
			with := func(l *progressLog) *client.Client { return newClient(client.Options{Progress: l}) }

			l := &progressLog{}
			v1, err := with(l).Push(ctx, ref(t, e, model+":v1"), src)
			if err != nil {
				t.Fatal(err)
			}
			l.check(t, "push", v1.UploadedBytes, v1.SkippedBytes, -1)
			if v1.SkippedBytes != 0 || l.skipped < int64(len(weights)) {
				t.Errorf("first push: result skipped %d bytes, progress %d; want 0, and the repeated weights (%d) shown as skipped", v1.SkippedBytes, l.skipped, len(weights))
			}
			if f := l.tracked("weights.bin"); f == nil || f.size != int64(len(weights)) {
				t.Errorf("weights.bin is not tracked as one file of %d bytes: %+v", len(weights), f)
			}

			changed := t.TempDir()
			if err := os.CopyFS(changed, os.DirFS(src)); err != nil {
				t.Fatal(err)
			}
			edited := slices.Clone(weights)
			copy(edited[500<<10:], random(33, 4<<10))
			write(t, changed, "weights.bin", edited, 0o644)
			write(t, changed, "vocab/07.txt", []byte("changed"), 0o644)
			l = &progressLog{}
			v2, err := with(l).Push(ctx, ref(t, e, model+":v2"), changed)
			if err != nil {
				t.Fatal(err)
			}
			l.check(t, "push of a change", v2.UploadedBytes, v2.SkippedBytes, -1)
			if v2.UploadedBytes == 0 || v2.UploadedBytes >= v2.SkippedBytes {
				t.Errorf("push of a small change: uploaded %d, skipped %d", v2.UploadedBytes, v2.SkippedBytes)
			}

			dst := t.TempDir()
			l = &progressLog{}
			pulled, err := with(l).Pull(ctx, ref(t, e, model+":v1"), dst, client.PullOptions{})
			if err != nil {
				t.Fatal(err)
			}
			l.check(t, "pull", pulled.DownloadedBytes, pulled.SkippedBytes, -1)
			if l.present != 0 || l.skipped < int64(len(weights)) { // the second copy of weights.bin is copied, not downloaded
				t.Errorf("pull into an empty directory: present %d, skipped %d", l.present, l.skipped)
			}

			l = &progressLog{}
			pulled, err = with(l).Pull(ctx, ref(t, e, model+":v2"), dst, client.PullOptions{})
			if err != nil {
				t.Fatal(err)
			}
			l.check(t, "pull over v1", pulled.DownloadedBytes, pulled.SkippedBytes, -1)
			if l.present == 0 || l.skipped == 0 {
				t.Errorf("pull over v1: present %d, chunks reused %d", l.present, l.skipped)
			}

			resumed := t.TempDir()
			part := filepath.Join(resumed, ".modelx", "tmp", digest.FromBytes(medium).Encoded()+".part")
			write(t, resumed, filepath.Join(".modelx", "tmp", filepath.Base(part)), medium[:5000], 0o600)
			l = &progressLog{}
			pulled, err = with(l).Pull(ctx, ref(t, e, model+":v2"), resumed, client.PullOptions{Files: []string{"medium.bin"}})
			if err != nil {
				t.Fatal(err)
			}
			l.check(t, "resumed pull", pulled.DownloadedBytes, pulled.SkippedBytes, 0)
			if f := l.tracked("medium.bin"); f == nil || f.skipped != 5000 || f.moved != int64(len(medium))-5000 {
				t.Errorf("resumed medium.bin: %+v, want 5000 bytes skipped", f)
			}

			l = &progressLog{}
			pulled, err = with(l).Pull(ctx, ref(t, e, model+":v2"), dst, client.PullOptions{})
			if err != nil {
				t.Fatal(err)
			}
			l.check(t, "pull of what is there", pulled.DownloadedBytes, pulled.SkippedBytes, -1)
			if l.total != 0 || len(l.files) != 0 {
				t.Errorf("pull of what is there planned %d bytes in %d files", l.total, len(l.files))
			}

			for _, to := range es {
				l = &progressLog{}
				copied, err := with(l).Copy(ctx, ref(t, e, model+":v2"), ref(t, to, fmt.Sprintf("copy%d/model:v2", k)))
				if err != nil {
					t.Fatal(err)
				}
				l.check(t, "copy to "+to.name, copied.CopiedBytes, copied.MountedBytes+copied.SkippedBytes, 0)
				if f := l.tracked("weights.bin"); f == nil {
					t.Errorf("copy to %s: weights.bin is not tracked as one file", to.name)
				}
			}
		})
	}
}
