package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"modelx.io/modelx/internal/humanize"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

const mib = 1 << 20

// etaAt is the time remaining bytes take at rate bytes per second.
func etaAt(remaining, rate float64) time.Duration {
	return time.Duration(remaining / rate * float64(time.Second))
}

func newTestModel(op string) (*progressModel, *fakeClock) {
	clock := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	return newProgressModel(op, clock.now), clock
}

// TestProgressModelPush drives a push through the model with a fake clock:
// the total is known before any byte moves, skipped bytes count as done
// at once, rates look at the last rateWindow (after a burst, during a
// stall, after it), the ETA follows the windowed rate, only files moving
// bytes have lines, and the final line has the true figures.
func TestProgressModelPush(t *testing.T) {
	m, clock := newTestModel("push")
	m.Plan(100*mib, 0)
	f := m.Frame()
	if !f.Planned || f.Total != 100*mib || f.Done() != 0 || f.RateKnown || f.ETAKnown {
		t.Fatalf("frame after the plan: %+v", f)
	}
	if got, want := statusLine(f), "push: 0% 0 B of 100.0 MiB, --/s, ETA --"; got != want {
		t.Errorf("status line after the plan:\n got %q\nwant %q", got, want)
	}

	// A file the registry holds: skipped, done at once, never a line.
	cached := m.Start("cached.bin", 40*mib)
	cached.Skip(40 * mib)
	if f := m.Frame(); f.Skipped != 40*mib || f.Fraction() != 0.4 || len(f.Files) != 0 {
		t.Fatalf("after a skipped file: %+v", f)
	}
	cached.Done(nil)

	// A file sent at 10 MiB/s, for 5 s.
	weights := m.Start("weights.bin", 60*mib)
	if f := m.Frame(); len(f.Files) != 0 {
		t.Fatalf("a file that moved nothing has a line: %+v", f.Files)
	}
	for range 5 {
		clock.advance(time.Second)
		weights.Add(10 * mib)
	}
	f = m.Frame()
	// Bytes first moved at 1s: the rate is over 4s, the first block included.
	if !f.RateKnown || f.Rate != 50*mib/4.0 || !f.ETAKnown || f.ETA != etaAt(10*mib, 50*mib/4.0) {
		t.Fatalf("after 5s at 10 MiB/s: rate %v (%v), ETA %v (%v)", f.Rate, f.RateKnown, f.ETA, f.ETAKnown)
	}
	if len(f.Files) != 1 || f.Files[0].Name != "weights.bin" || f.Files[0].Moved != 50*mib || f.Files[0].Rate != f.Rate {
		t.Fatalf("file lines: %+v", f.Files)
	}

	// A stall: the rate falls as the window slides past the burst.
	clock.advance(2500 * time.Millisecond) // t = 7.5s: the window holds the bytes of 3s, 4s and 5s
	f = m.Frame()
	if f.Rate != 30*mib/5.0 || f.ETA != etaAt(10*mib, 30*mib/5.0) {
		t.Fatalf("2.5s into a stall: rate %v, ETA %v", f.Rate, f.ETA)
	}
	clock.advance(5 * time.Second) // t = 12.5s: nothing moved in the window
	f = m.Frame()
	if !f.RateKnown || f.Rate != 0 || f.ETAKnown {
		t.Fatalf("after a 7.5s stall: rate %v (%v), ETA known %v", f.Rate, f.RateKnown, f.ETAKnown)
	}
	if got, want := statusLine(f), "push: 90% 90.0 MiB of 100.0 MiB (40.0 MiB skipped), 0 B/s, ETA --, 1 file in flight"; got != want {
		t.Errorf("status line in a stall:\n got %q\nwant %q", got, want)
	}
	lines := ttyLines(f, 100)
	want := []string{
		"push ██████████████████░░  90%  90.0 MiB of 100.0 MiB  0 B/s  ETA -- (40.0 MiB skipped)",
		"  weights.bin                        █████████████████░░░  83%   50.0 MiB / 60.0 MiB   0 B/s",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("terminal lines:\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}

	// It moves again: a burst of 10 MiB in one second.
	clock.advance(time.Second)
	weights.Add(10 * mib)
	f = m.Frame()
	if f.Rate != 10*mib/5.0 || !f.ETAKnown || f.ETA != 0 {
		t.Fatalf("after a new burst: rate %v, ETA %v (%v)", f.Rate, f.ETA, f.ETAKnown)
	}
	weights.Done(nil)
	if f := m.Frame(); len(f.Files) != 0 {
		t.Fatalf("a done file keeps its line: %+v", f.Files)
	}

	f = m.Finish(nil, false)
	if f.Outcome != succeeded || f.Moved != 60*mib || f.Skipped != 40*mib || f.Elapsed != 13500*time.Millisecond {
		t.Fatalf("final frame: %+v", f)
	}
	if got, want := summaryLine(f), "push done: 100.0 MiB of 100.0 MiB in 13s; uploaded 60.0 MiB, skipped 40.0 MiB; 4.4 MiB/s average"; got != want {
		t.Errorf("summary:\n got %q\nwant %q", got, want)
	}
	if got := m.Frame(); got.Outcome != succeeded {
		t.Errorf("the frame after Finish is not the final one: %+v", got)
	}
	// The result counts each blob once: 8 MiB the display skipped were
	// repeats of content moved once, and the summary says so.
	if got, want := summaryLine(f.settle(60*mib, 32*mib)), "push done: 100.0 MiB of 100.0 MiB in 13s; uploaded 60.0 MiB, skipped 32.0 MiB, 8.0 MiB repeated content moved once; 4.4 MiB/s average"; got != want {
		t.Errorf("summary settled on the result:\n got %q\nwant %q", got, want)
	}
	if got := f.settle(-1, -1); got.Moved != f.Moved || got.Skipped != f.Skipped || got.Repeated != 0 {
		t.Errorf("settling on unknown figures changed the frame: %+v", got)
	}
}

// TestProgressModelInterrupted: the final frame after an interruption
// shows the real fraction, not a full bar, and no file in flight.
func TestProgressModelInterrupted(t *testing.T) {
	m, clock := newTestModel("push")
	m.Plan(200*mib, 0)
	a := m.Start("a.bin", 100*mib)
	b := m.Start("b.bin", 100*mib)
	clock.advance(2 * time.Second)
	a.Add(50 * mib)
	b.Skip(40 * mib)
	f := m.Finish(context.Canceled, true)
	if f.Outcome != interrupted || f.Fraction() != 0.45 || len(f.Files) != 0 {
		t.Fatalf("final frame: %+v", f)
	}
	if got, want := ttyLines(f, 120)[0], "push █████████░░░░░░░░░░░  45%  90.0 MiB of 200.0 MiB (40.0 MiB skipped)"; got != want {
		t.Errorf("final bar:\n got %q\nwant %q", got, want)
	}
	if got, want := summaryLine(f), "push interrupted at 45%: 90.0 MiB of 200.0 MiB in 2.0s; uploaded 50.0 MiB, skipped 40.0 MiB; 25.0 MiB/s average"; got != want {
		t.Errorf("summary:\n got %q\nwant %q", got, want)
	}
	a.Add(10 * mib) // a transfer that was still running
	if got := m.Frame(); got.Moved != 50*mib {
		t.Errorf("bytes after Finish changed the final frame: %+v", got)
	}
	m2, _ := newTestModel("pull")
	m2.Plan(10, 0)
	if f := m2.Finish(errors.New("disk full"), false); f.Outcome != failed || !strings.HasPrefix(summaryLine(f), "pull failed at 0%: 0 B of 10 B") {
		t.Errorf("failure: %q", summaryLine(f))
	}
}

// TestProgressModelPull: a pull's total is what it fetches; files already
// present are shown beside it and counted in the final skipped figure, as
// in the result.
func TestProgressModelPull(t *testing.T) {
	m, clock := newTestModel("pull")
	m.Plan(100*mib, 900*mib)
	f := m.Frame()
	if f.Fraction() != 0 || f.Present != 900*mib {
		t.Fatalf("frame after the plan: %+v", f)
	}
	if got, want := statusLine(f), "pull: 0% 0 B of 100.0 MiB (900.0 MiB already present), --/s, ETA --"; got != want {
		t.Errorf("status line:\n got %q\nwant %q", got, want)
	}
	if got, want := ttyLines(f, 120)[0], "pull ░░░░░░░░░░░░░░░░░░░░   0%  0 B of 100.0 MiB  --/s  ETA -- (900.0 MiB present)"; got != want {
		t.Errorf("terminal line:\n got %q\nwant %q", got, want)
	}
	w := m.Start("w.bin", 100*mib)
	w.Skip(20 * mib) // chunks found in local files
	clock.advance(4 * time.Second)
	w.Add(80 * mib)
	w.Done(nil)
	f = m.Finish(nil, false)
	if got, want := summaryLine(f), "pull done: 100.0 MiB of 100.0 MiB in 4.0s; downloaded 80.0 MiB, skipped 920.0 MiB (900.0 MiB already present); 20.0 MiB/s average"; got != want {
		t.Errorf("summary:\n got %q\nwant %q", got, want)
	}

	empty, _ := newTestModel("pull")
	empty.Plan(0, 5*mib)
	if f := empty.Finish(nil, false); f.Fraction() != 1 || summaryLine(f) != "pull done: 0 B of 0 B in 0.0s; downloaded 0 B, skipped 5.0 MiB (5.0 MiB already present); 0 B/s average" {
		t.Errorf("pull of what is there: %q", summaryLine(f))
	}
}

// TestProgressLines: a terminal shows at most maxFileLines files, in the
// order they started, names shortened from the front, no line wider than
// the terminal.
func TestProgressLines(t *testing.T) {
	m, clock := newTestModel("copy")
	m.Plan(1000*mib, 0)
	for i := range maxFileLines + 3 {
		m.Start(fmt.Sprintf("some/rather/long/directory/name/shard-%02d.safetensors", i), 10*mib).Add(mib)
	}
	clock.advance(2 * time.Second)
	for _, width := range []int{80, 100, 200} {
		lines := ttyLines(m.Frame(), width)
		if len(lines) != 1+maxFileLines+1 || lines[len(lines)-1] != "  … and 3 more files" {
			t.Fatalf("lines:\n%s", strings.Join(lines, "\n"))
		}
		if !strings.HasPrefix(lines[1], "  …") || !strings.Contains(lines[1], "/shard-00.safetensors ") || !strings.HasSuffix(lines[1], "512.0 KiB/s") {
			t.Errorf("first file line at %d columns: %q", width, lines[1])
		}
		for _, l := range lines {
			if n := len([]rune(l)); n >= width {
				t.Errorf("line of %d columns in a %d-column terminal: %q", n, width, l)
			}
		}
	}
	if lines := ttyLines(m.Frame(), 40); columns(lines[1]) != 39 {
		t.Errorf("a line is not clipped to a 40-column terminal: %q", lines[1])
	}
	// Wide characters take two columns: names are cut by columns.
	for name, want := range map[string]string{
		"名前/vocab.txt":         "名前/vocab.txt  ",
		"ünïcode/名前/vocab.txt": "…/名前/vocab.txt",
		"長い名前の長い名前のファイル.bin":   "…のファイル.bin ",
	} {
		if got := fit(name, 16); got != want || columns(got) != 16 {
			t.Errorf("fit(%q, 16) = %q (%d columns), want %q", name, got, columns(got), want)
		}
	}
	if got := clip("ab名前cd", 5); got != "ab名" {
		t.Errorf("clip by columns: %q", got)
	}
}

// TestProgressDisplay: the display draws a block in place on a terminal
// (back up over the last block, each line cleared, the rest erased), and
// on other output prints nothing for an operation that never planned, and
// the summary line for one that did.
func TestProgressDisplay(t *testing.T) {
	var out bytes.Buffer
	d := newProgressDisplay(&out, "push", time.Now)
	d.tty = true
	d.draw([]string{"a", "b"})
	d.draw([]string{"c"})
	if got, want := out.String(), "\r\x1b[2Ka\n\x1b[2Kb\n\x1b[J\r\x1b[2A\x1b[2Kc\n\x1b[J"; got != want {
		t.Errorf("drawn %q, want %q", got, want)
	}
	// No more lines than the screen holds, less one for the cursor.
	d.size = func() (int, int) { return 100, 4 }
	d.Plan(100, 0)
	for i := range 5 {
		d.Start(fmt.Sprint("f", i), 10).Add(1)
	}
	if lines := d.block(d.Frame()); len(lines) != 3 || !strings.HasPrefix(lines[0], "push ") {
		t.Errorf("block on a 4-line screen: %q", lines)
	}
	d.stop(nil, false, -1, -1)

	out.Reset()
	d = newProgressDisplay(&out, "pull", time.Now)
	d.stop(errors.New("no such tag"), false, -1, -1)
	if out.Len() != 0 {
		t.Errorf("a pull that never planned printed %q", out.String())
	}
	d = newProgressDisplay(&out, "pull", time.Now)
	d.Plan(3, 0)
	d.Start("f", 3).Add(3)
	d.stop(nil, false, -1, -1)
	if got := out.String(); !strings.HasPrefix(got, "pull done: 3 B of 3 B in ") || strings.Count(got, "\n") != 1 {
		t.Errorf("summary of a pull: %q", got)
	}
}

var summaryPattern = regexp.MustCompile(`^(\w+) done: (.+) of (.+) in `)

// TestCLIProgressFigures: a real push and pull through the CLI, with
// stderr not a terminal, end with a summary line whose figures are the
// result's; -q prints none.
func TestCLIProgressFigures(t *testing.T) {
	t.Setenv("MODELX_CONFIG", filepath.Join(t.TempDir(), "config.yaml"))
	t.Setenv("MODELX_TOKEN", "")
	url := startRegistry(t)
	model := filepath.Join(t.TempDir(), "m")
	mustRun(t, "init", model)
	big := bytes.Repeat([]byte("0123456789abcdef"), 5<<20/16) // one chunk, repeated
	for name, data := range map[string][]byte{
		"weights.bin":       big,
		"weights-again.bin": big,
		"vocab.txt":         []byte(strings.Repeat("token\n", 1000)),
	} {
		if err := os.WriteFile(filepath.Join(model, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	type figures struct {
		Uploaded   int64   `json:"uploaded_bytes"`
		Downloaded int64   `json:"downloaded_bytes"`
		Skipped    int64   `json:"skipped_bytes"`
		Seconds    float64 `json:"duration_seconds"`
	}
	check := func(what, stdout, stderr, verb string) {
		t.Helper()
		var res figures
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("%s -o json: %v\n%s", what, err, stdout)
		}
		moved := res.Uploaded + res.Downloaded
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		last := lines[len(lines)-1]
		m := summaryPattern.FindStringSubmatch(last)
		figures := fmt.Sprintf("; %s %s, skipped %s", verb, humanize.Bytes(moved), humanize.Bytes(res.Skipped))
		if m == nil || m[1] != strings.Fields(what)[0] || m[2] != m[3] || !strings.Contains(last, figures) {
			t.Errorf("%s: last progress line %q; want OP done: TOTAL of TOTAL, with %q", what, last, figures)
		}
	}
	stdout, stderr, err := run(t, "", "push", url+"/p/m:v1", model, "-o", "json")
	if err != nil {
		t.Fatal(err, stderr)
	}
	check("push v1", stdout, stderr, "uploaded")
	if err := os.WriteFile(filepath.Join(model, "vocab.txt"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err = run(t, "", "push", url+"/p/m:v2", model, "-o", "json")
	if err != nil {
		t.Fatal(err, stderr)
	}
	check("push v2", stdout, stderr, "uploaded")

	dst := filepath.Join(t.TempDir(), "out")
	stdout, stderr, err = run(t, "", "pull", url+"/p/m:v1", dst, "-o", "json")
	if err != nil {
		t.Fatal(err, stderr)
	}
	check("pull v1", stdout, stderr, "downloaded")
	stdout, stderr, err = run(t, "", "pull", url+"/p/m:v2", dst, "-o", "json")
	if err != nil {
		t.Fatal(err, stderr)
	}
	check("pull v2", stdout, stderr, "downloaded")
	if !strings.Contains(stderr, "already present") {
		t.Errorf("pull over v1 names no present bytes: %q", stderr)
	}

	if _, stderr, err := run(t, "", "pull", "-q", url+"/p/m:v2", t.TempDir()); err != nil || stderr != "" {
		t.Errorf("pull -q: %v, stderr %q", err, stderr)
	}
}
