package client

import (
	"sync"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/spec"
)

// offerBatcher offers the blobs of a push to the registry in batches (POST
// …/blobs/batch, operation upload) as they are sent: while one batch
// request runs, the blobs sent meanwhile wait for the next, so a request
// carries whatever became known in one round trip. Each answered blob goes
// to the sender's uploads with its answer. Once the registry shows it has
// no batch endpoint, or carries the bytes itself (an answer with neither
// present nor a URL), blobs go to the uploads unanswered, each then offered
// with its own PUT.
type offerBatcher struct {
	s *sender

	mu      sync.Mutex
	queue   []upload
	running bool
	off     bool
}

// add queues u for the next batch, starting one unless one runs.
func (b *offerBatcher) add(u upload) {
	b.mu.Lock()
	if b.off {
		b.mu.Unlock()
		b.s.dispatch <- offered{u: u}
		return
	}
	b.queue = append(b.queue, u)
	start := !b.running
	b.running = true
	b.mu.Unlock()
	if start {
		go b.run()
	}
}

// run sends batches until the queue is empty.
func (b *offerBatcher) run() {
	select { // the blobs the current manifest names are not offered
	case <-b.s.ready:
	case <-b.s.ctx.Done():
	}
	for {
		b.mu.Lock()
		n := min(len(b.queue), spec.MaxBatchBlobs)
		batch := b.queue[:n:n]
		b.queue = b.queue[n:]
		off := b.off
		if n == 0 {
			b.running = false
		}
		b.mu.Unlock()
		if n == 0 {
			return
		}
		b.answer(batch, off)
	}
}

// answer offers batch (unless off) and hands each blob to the uploads.
func (b *offerBatcher) answer(batch []upload, off bool) {
	s := b.s
	ready := false
	select { // known and currentErr are set once ready is closed
	case <-s.ready:
		ready = true
	default: // canceled first: the uploads end at once
	}
	var ask []spec.BlobRef
	if !off && ready && s.currentErr == nil && s.ctx.Err() == nil {
		for _, u := range batch {
			if !s.known[u.digest] {
				ask = append(ask, spec.BlobRef{Digest: u.digest, Size: u.size})
			}
		}
	}
	var locs map[digest.Digest]spec.BlobLocation
	if len(ask) > 0 {
		var err error
		locs, err = s.api.BlobBatch(s.ctx, s.ref.Repository, s.ref.Name, spec.BlobBatchRequest{Operation: spec.BatchOperationUpload, From: s.from, Blobs: ask})
		if err != nil || carriesBytes(locs) {
			// Each blob's PUT says what is wrong, if anything is.
			b.mu.Lock()
			b.off = true
			b.mu.Unlock()
		}
	}
	for _, u := range batch {
		s.dispatch <- offered{u: u, loc: locs[u.digest]}
	}
}

// carriesBytes reports whether an upload batch's answers come from a
// registry that takes the bytes itself: a blob neither present nor given
// a URL.
func carriesBytes(locs map[digest.Digest]spec.BlobLocation) bool {
	for _, loc := range locs {
		if !loc.Present && loc.Href == "" {
			return true
		}
	}
	return false
}
