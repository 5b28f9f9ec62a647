package main

import (
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"modelx.io/modelx/client"
	"modelx.io/modelx/internal/humanize"
)

// progress returns how transfers are shown: bars on a terminal, a line
// every few seconds otherwise, nothing with -q.
func (a *app) progress() client.Progress {
	switch {
	case a.quiet:
		return nil
	case isTerminal(a.stderr):
		p := &barProgress{container: mpb.New(mpb.WithOutput(a.stderr), mpb.WithWidth(32), mpb.WithRefreshRate(150*time.Millisecond))}
		a.stop = p.stop
		return p
	default:
		p := &lineProgress{out: a.stderr, start: time.Now(), quit: make(chan struct{}), done: make(chan struct{})}
		go p.loop(5 * time.Second)
		a.stop = p.stop
		return p
	}
}

func (a *app) stopProgress() {
	if a.stop != nil {
		a.stop()
		a.stop = nil
	}
}

// barProgress draws one bar per running transfer and a total.
type barProgress struct {
	container *mpb.Progress
	once      sync.Once
	total     *mpb.Bar
	totalSize atomic.Int64
}

func (p *barProgress) Start(label string, size int64) client.Tracker {
	p.once.Do(func() {
		p.total = p.container.AddBar(0,
			mpb.PrependDecorators(decor.Name("total", decor.WC{W: 28, C: decor.DindentRight})),
			mpb.AppendDecorators(decor.Counters(decor.SizeB1024(0), "% .1f / % .1f"), decor.Name(" "),
				decor.AverageSpeed(decor.SizeB1024(0), "% .1f"), decor.Name(" "), decor.AverageETA(decor.ET_STYLE_GO)))
	})
	p.total.SetTotal(p.totalSize.Add(size), false)
	if len(label) > 28 {
		label = "…" + label[len(label)-27:]
	}
	bar := p.container.AddBar(size, mpb.BarRemoveOnComplete(),
		mpb.PrependDecorators(decor.Name(label, decor.WC{W: 28, C: decor.DindentRight})),
		mpb.AppendDecorators(decor.Counters(decor.SizeB1024(0), "% .1f / % .1f"), decor.Name(" "), decor.EwmaSpeed(decor.SizeB1024(0), "% .1f", 30)))
	return &barTracker{p: p, bar: bar, start: time.Now()}
}

func (p *barProgress) stop() {
	if p.total != nil {
		p.total.SetTotal(-1, true)
	}
	p.container.Shutdown()
}

type barTracker struct {
	p     *barProgress
	bar   *mpb.Bar
	start time.Time
	moved atomic.Int64
}

func (t *barTracker) Add(n int64) {
	t.moved.Add(n)
	t.bar.EwmaIncrInt64(n, time.Since(t.start))
	t.p.total.IncrInt64(n)
}

func (t *barTracker) Done(err error) {
	if err != nil {
		t.bar.Abort(true)
		return
	}
	t.bar.SetTotal(-1, true)
}

// lineProgress prints a summary line periodically, for logs and CI.
type lineProgress struct {
	out        io.Writer
	start      time.Time
	total      atomic.Int64
	moved      atomic.Int64
	transfers  atomic.Int64
	finished   atomic.Int64
	quit, done chan struct{}
	stopOnce   sync.Once
}

func (p *lineProgress) Start(label string, size int64) client.Tracker {
	p.total.Add(size)
	p.transfers.Add(1)
	return &lineTracker{p: p}
}

func (p *lineProgress) loop(every time.Duration) {
	defer close(p.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.quit:
			return
		case <-t.C:
			secs := time.Since(p.start).Seconds()
			fmt.Fprintf(p.out, "progress: %s of %s, %d of %d blobs, %s/s\n",
				humanize.Bytes(p.moved.Load()), humanize.Bytes(p.total.Load()), p.finished.Load(), p.transfers.Load(), humanize.Bytes(int64(float64(p.moved.Load())/secs)))
		}
	}
}

func (p *lineProgress) stop() {
	p.stopOnce.Do(func() { close(p.quit); <-p.done })
}

type lineTracker struct{ p *lineProgress }

func (t *lineTracker) Add(n int64) { t.p.moved.Add(n) }
func (t *lineTracker) Done(err error) {
	if err == nil {
		t.p.finished.Add(1)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (p *barProgress) Plan(int64, int64)  {}
func (t *barTracker) Skip(int64)          {}
func (p *lineProgress) Plan(int64, int64) {}
func (t *lineTracker) Skip(int64)         {}
