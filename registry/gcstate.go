package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
)

// Garbage collection and pushes meet in one small document, gcStateKey.
//
// The hazard: a push checks that every blob its manifest names is stored,
// then stores the manifest. A collection that listed the manifests before
// that store, and deletes an old unreferenced blob the new manifest reuses
// after that check, would leave the manifest naming a missing blob.
//
// The same holds for an old untagged manifest that a push stores again and
// tags while a collection deletes it.
//
// The protocol: a collection holds a sweep lease in the document (written
// with compare-and-swap, so one sweep runs at a time across replicas) from
// before its final reading of the tags and listing of manifests until its
// last delete, and counts finished sweeps in Generation. A push reads the
// document before its check and again after storing and tagging its
// manifest, waiting while a sweep runs. If a sweep was running at either
// read, or one finished in between, it checks the manifest and its blobs
// again, and takes its tag back if anything is gone. Either the sweep's
// final reading came after the push's tag, and so kept what it names, or
// the push's second check comes after the sweep's deletes, and so sees
// them.
const gcStateKey = "gc/state.json"

// sweepLease is how long a sweep lease lasts; the sweeping collection
// renews it every sweepLease/3 and stops deleting once it could have run
// out. A lease left by a crashed replica delays pushes by at most this.
const sweepLease = 30 * time.Second

// gcState is the document at gcStateKey.
type gcState struct {
	// Generation counts finished sweeps.
	Generation int64 `json:"generation"`
	// SweepUntil is set while a sweep may be deleting blobs: until it
	// ends, or at the latest until this time.
	SweepUntil time.Time `json:"sweepUntil,omitzero"`
}

func (s gcState) sweeping(now time.Time) bool { return now.Before(s.SweepUntil) }

// errSweepRunning reports that another collection holds the sweep lease.
var errSweepRunning = errors.New("another garbage collection is sweeping")

func (reg *Registry) readGCState(ctx context.Context) (gcState, string, error) {
	data, info, err := storage.ReadAll(ctx, reg.store, gcStateKey, 1<<16)
	if errors.Is(err, storage.ErrNotFound) {
		return gcState{}, "", nil
	}
	if err != nil {
		return gcState{}, "", internal("read gc state", err)
	}
	var s gcState
	if err := json.Unmarshal(data, &s); err != nil {
		return gcState{}, "", fmt.Errorf("%s is corrupt: %w", gcStateKey, err)
	}
	return s, info.ETag, nil
}

func (reg *Registry) writeGCState(ctx context.Context, s gcState, etag string) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if etag == "" {
		return reg.store.PutIfAbsent(ctx, gcStateKey, data)
	}
	return reg.store.PutIfMatch(ctx, gcStateKey, data, etag)
}

// sweep is a held sweep lease.
type sweep struct {
	reg    *Registry
	stopAt atomic.Int64 // unix nanoseconds after which nothing may be deleted
	stop   chan struct{}
	done   chan struct{}
}

// beginSweep takes the sweep lease and keeps renewing it until end.
func (reg *Registry) beginSweep(ctx context.Context) (*sweep, error) {
	s, etag, err := reg.readGCState(ctx)
	if err != nil {
		return nil, err
	}
	now := reg.now()
	if s.sweeping(now) {
		return nil, errSweepRunning
	}
	s.SweepUntil = now.Add(sweepLease)
	if err := reg.writeGCState(ctx, s, etag); errors.Is(err, storage.ErrPreconditionFailed) {
		return nil, errSweepRunning
	} else if err != nil {
		return nil, internal("write gc state", err)
	}
	sw := &sweep{reg: reg, stop: make(chan struct{}), done: make(chan struct{})}
	sw.stopAt.Store(now.Add(sweepLease * 2 / 3).UnixNano())
	go sw.renew(context.WithoutCancel(ctx))
	return sw, nil
}

// renew extends the lease every sweepLease/3 while the sweep runs. A lease
// that cannot be renewed just runs out: the sweep then stops deleting.
func (sw *sweep) renew(ctx context.Context) {
	defer close(sw.done)
	t := time.NewTicker(sweepLease / 3)
	defer t.Stop()
	for {
		select {
		case <-sw.stop:
			return
		case <-t.C:
		}
		s, etag, err := sw.reg.readGCState(ctx)
		now := sw.reg.now()
		if err != nil || !s.sweeping(now) {
			return
		}
		s.SweepUntil = now.Add(sweepLease)
		if sw.reg.writeGCState(ctx, s, etag) != nil {
			return
		}
		sw.stopAt.Store(now.Add(sweepLease * 2 / 3).UnixNano())
	}
}

// mayDelete reports whether the lease is certainly still held.
func (sw *sweep) mayDelete() bool { return sw.reg.now().UnixNano() < sw.stopAt.Load() }

// end releases the lease and counts the sweep as finished.
func (sw *sweep) end(ctx context.Context) error {
	close(sw.stop)
	<-sw.done
	ctx = context.WithoutCancel(ctx)
	for range maxUpdateAttempts {
		cur, etag, err := sw.reg.readGCState(ctx)
		if err != nil {
			return err
		}
		cur.Generation++
		cur.SweepUntil = time.Time{}
		if err := sw.reg.writeGCState(ctx, cur, etag); !errors.Is(err, storage.ErrPreconditionFailed) {
			return err
		}
	}
	return spec.Errorf(spec.ErrorConflict, "%s changed on every attempt to end the sweep", gcStateKey)
}

// afterSweeps waits while a sweep holds the lease and returns the state then.
func (reg *Registry) afterSweeps(ctx context.Context) (gcState, error) {
	for {
		s, _, err := reg.readGCState(ctx)
		if err != nil || !s.sweeping(reg.now()) {
			return s, err
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
