package main

import (
	"sync"
	"time"

	"modelx.io/modelx/client"
)

// rateWindow is how far back rates look: long enough to smooth bursts,
// short enough that a stall shows within seconds.
const rateWindow = 5 * time.Second

// minRateSpan is the least time a rate is measured over; a rate over a
// shorter span is unknown.
const minRateSpan = time.Second

// sampleEvery is the granularity of a meter's samples.
const sampleEvery = 100 * time.Millisecond

// progressModel turns the events of one push, pull or copy into frames:
// the plan, bytes moved and skipped, the files in flight, and rates over
// the last rateWindow. It reads the time only from its clock, so tests
// drive it with a fake one. It is safe for concurrent use.
type progressModel struct {
	op  string // push, pull, copy, or "" for another transfer
	now func() time.Time

	mu      sync.Mutex
	begun   time.Time
	planned bool
	total   int64 // bytes to move or skip
	present int64 // bytes in place before the operation, outside total
	moved   int64
	skipped int64
	meter   meter
	lines   []*progressLine // started and not done, in start order
	final   *progressFrame
}

// newProgressModel returns the model of one operation, begun now.
func newProgressModel(op string, now func() time.Time) *progressModel {
	return &progressModel{op: op, now: now, begun: now()}
}

// Plan adds to the plan (client.Progress).
func (m *progressModel) Plan(total, present int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.planned = true
	m.total += total
	m.present += present
}

// Start begins the line of one file (client.Progress).
func (m *progressModel) Start(name string, size int64) client.Tracker {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := &progressLine{m: m, name: name, size: size}
	m.lines = append(m.lines, l)
	return l
}

// progressLine is one file (or pack) being moved.
type progressLine struct {
	m                    *progressModel
	name                 string
	size, moved, skipped int64
	meter                meter
	done                 bool
}

// Add counts n bytes moved (client.Tracker).
func (l *progressLine) Add(n int64) {
	m := l.m
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.moved += n
	m.meter.record(now, m.moved, n)
	if !l.done {
		l.moved += n
		l.meter.record(now, l.moved, n)
	}
}

// Skip counts n bytes that need not move (client.Tracker).
func (l *progressLine) Skip(n int64) {
	m := l.m
	m.mu.Lock()
	defer m.mu.Unlock()
	m.skipped += n
	if !l.done {
		l.skipped += n
	}
}

// Done ends the line (client.Tracker).
func (l *progressLine) Done(error) {
	m := l.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if l.done {
		return
	}
	l.done = true
	for i, x := range m.lines {
		if x == l {
			m.lines = append(m.lines[:i], m.lines[i+1:]...)
			break
		}
	}
}

// outcome is how an operation ended.
type outcome int

const (
	running outcome = iota
	succeeded
	interrupted
	failed
)

// progressFrame is what the display shows at one moment.
type progressFrame struct {
	Op      string
	Outcome outcome
	Elapsed time.Duration
	Planned bool // the plan is known
	Total   int64
	Present int64
	Moved   int64
	Skipped int64 // of Total; Present is skipped too
	// Repeated is content repeated within the model, moved once: set on
	// success from the result (see settle), which counts each blob once,
	// while the display counts a repeat as skipped as it passes.
	Repeated int64
	Rate     float64
	// RateKnown is false until bytes moved over minRateSpan.
	RateKnown bool
	ETA       time.Duration
	ETAKnown  bool
	Files     []fileFrame // the files moving bytes, in start order
}

// fileFrame is one file in flight.
type fileFrame struct {
	Name                 string
	Size, Moved, Skipped int64
	Rate                 float64
	RateKnown            bool
}

// Done is the bytes of the plan moved or skipped.
func (f progressFrame) Done() int64 { return f.Moved + f.Skipped + f.Repeated }

// settle replaces a successful frame's figures with the result's: moved
// and skipped bytes (present ones included), each blob once. What the
// display counted beyond them is content repeated within the model.
// Negative figures mean none are known.
func (f progressFrame) settle(moved, skipped int64) progressFrame {
	if f.Outcome != succeeded || moved < 0 {
		return f
	}
	shown := f.Moved + f.Skipped + f.Present
	f.Moved = moved
	f.Skipped = skipped - f.Present
	f.Repeated = max(0, shown-moved-skipped)
	return f
}

// Fraction is the part of the plan done, in [0, 1].
func (f progressFrame) Fraction() float64 {
	if f.Total <= 0 {
		if f.Planned {
			return 1
		}
		return 0
	}
	return min(1, max(0, float64(f.Done())/float64(f.Total)))
}

// AverageRate is the bytes moved per second since the operation began.
func (f progressFrame) AverageRate() float64 {
	if f.Elapsed <= 0 {
		return 0
	}
	return float64(f.Moved) / f.Elapsed.Seconds()
}

// Frame returns the current frame; after Finish, the final one.
func (m *progressModel) Frame() progressFrame {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.final != nil {
		return *m.final
	}
	return m.frame(m.now())
}

func (m *progressModel) frame(now time.Time) progressFrame {
	f := progressFrame{Op: m.op, Elapsed: now.Sub(m.begun), Planned: m.planned,
		Total: m.total, Present: m.present, Moved: m.moved, Skipped: m.skipped}
	f.Rate, f.RateKnown = m.meter.rate(now)
	switch remaining := m.total - m.moved - m.skipped; {
	case !m.planned:
	case remaining <= 0:
		f.ETAKnown = true
	case f.RateKnown && f.Rate > 0:
		f.ETA, f.ETAKnown = time.Duration(float64(remaining)/f.Rate*float64(time.Second)), true
	}
	for _, l := range m.lines {
		if l.moved <= 0 {
			continue // not moving bytes (yet): hashing, or only skipping
		}
		ff := fileFrame{Name: l.name, Size: l.size, Moved: l.moved, Skipped: l.skipped}
		ff.Rate, ff.RateKnown = l.meter.rate(now)
		f.Files = append(f.Files, ff)
	}
	return f
}

// Finish ends the operation, with err nil on success; the final frame
// shows what was really done, and no file in flight. Events after it
// change nothing shown.
func (m *progressModel) Finish(err error, wasInterrupted bool) progressFrame {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.final != nil {
		return *m.final
	}
	f := m.frame(m.now())
	f.Files = nil
	f.ETA, f.ETAKnown = 0, false
	switch {
	case err == nil:
		f.Outcome = succeeded
	case wasInterrupted:
		f.Outcome = interrupted
	default:
		f.Outcome = failed
	}
	m.final = &f
	return f
}

// meter measures a rate over the last rateWindow from a running count.
type meter struct {
	first   time.Time // the first record; zero before
	base    int64     // the count before the first record
	samples []sample  // oldest first, at most one per sampleEvery
}

// sample is a running count at a moment.
type sample struct {
	at    time.Time
	count int64
}

// record notes the count, now n more than before.
func (m *meter) record(now time.Time, count, n int64) {
	if m.first.IsZero() {
		m.first, m.base = now, count-n
	}
	if k := len(m.samples); k > 0 && now.Sub(m.samples[k-1].at) < sampleEvery {
		m.samples[k-1].count = count
	} else {
		m.samples = append(m.samples, sample{now, count})
	}
	// Keep the last sample at or before the window's start, and all after.
	from := now.Add(-rateWindow)
	drop := 0
	for drop+1 < len(m.samples) && !m.samples[drop+1].at.After(from) {
		drop++
	}
	m.samples = m.samples[drop:]
}

// rate returns the bytes per second over the last rateWindow, or since
// the first record when that is later; unknown over less than minRateSpan.
func (m *meter) rate(now time.Time) (float64, bool) {
	if m.first.IsZero() {
		return 0, false
	}
	from, base := now.Add(-rateWindow), m.base
	if from.Before(m.first) {
		from = m.first
	} else {
		for _, s := range m.samples {
			if s.at.After(from) {
				break
			}
			base = s.count
		}
	}
	span := now.Sub(from)
	if span < minRateSpan {
		return 0, false
	}
	count := m.base
	if k := len(m.samples); k > 0 {
		count = m.samples[k-1].count
	}
	return max(0, float64(count-base)/span.Seconds()), true
}
