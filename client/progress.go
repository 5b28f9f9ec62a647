package client

import (
	"fmt"
	"sync"
)

// fileTracker is the Tracker of one file whose blobs (the chunks of a
// large file) are moved or skipped concurrently: it ends once the file is
// sealed (every blob handed out) and its last blob is over, with the first
// error any blob or the sealing reported.
type fileTracker struct {
	Tracker
	mu     sync.Mutex
	open   int  // blobs handed out and not over
	sealed bool // no blob will be handed out any more
	ended  bool
	err    error
}

// startFile starts the tracking of one file of size planned bytes.
func startFile(p Progress, name string, size int64) *fileTracker {
	return &fileTracker{Tracker: p.Start(name, size)}
}

// begin counts one more blob of the file handed out.
func (f *fileTracker) begin() {
	f.mu.Lock()
	f.open++
	f.mu.Unlock()
}

// end counts one blob of the file over; err is nil on success.
func (f *fileTracker) end(err error) {
	f.mu.Lock()
	f.open--
	f.finish(err)
}

// seal says no blob of the file will be handed out any more; err is why
// not all of them were (nil when they were).
func (f *fileTracker) seal(err error) {
	f.mu.Lock()
	f.sealed = true
	f.finish(err)
}

// finish records err and ends the tracker when the file is over; it
// unlocks f.mu.
func (f *fileTracker) finish(err error) {
	if f.err == nil {
		f.err = err
	}
	if f.ended || !f.sealed || (f.open > 0 && f.err == nil) {
		f.mu.Unlock()
		return
	}
	f.ended = true
	err = f.err
	f.mu.Unlock()
	f.Tracker.Done(err)
}

// packLabel names a pack of small files in progress: what it holds.
func packLabel(name string, files int) string {
	return fmt.Sprintf("%d small files (%s)", files, name)
}

// sendMeter counts the bytes of one blob upload into its file's progress
// as they are read, starting over when a retry reopens the body, and
// settles, once the registry answered, on the figure the result counts:
// the whole blob moved when it was sent, nothing when it was not.
type sendMeter struct {
	file    Tracker
	mu      sync.Mutex
	moved   int64
	settled bool
}

// reopened starts the count over for a new attempt at the body.
func (m *sendMeter) reopened() {
	m.mu.Lock()
	if !m.settled {
		m.file.Add(-m.moved)
		m.moved = 0
	}
	m.mu.Unlock()
}

// add counts n bytes read, until the answer settles the count.
func (m *sendMeter) add(n int64) {
	m.mu.Lock()
	if !m.settled {
		m.moved += n
		m.file.Add(n)
	}
	m.mu.Unlock()
}

// settle ends the count: size bytes moved when sent, none otherwise (err
// set: as far as it got).
func (m *sendMeter) settle(sent bool, size int64, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.settled = true
	switch {
	case err != nil:
	case sent:
		m.file.Add(size - m.moved)
	default:
		m.file.Add(-m.moved)
	}
}
