package testenv

import (
	"sync/atomic"
	"time"
)

// Clock is a clock for a registry under test (registry.Options.Clock): the
// real time plus an offset that only Advance changes. A test advances it
// past the GC grace period instead of sleeping; time still passes, so
// leases and timers behave as they do in production. Safe for concurrent use.
type Clock struct {
	offset atomic.Int64 // nanoseconds added to the real time
}

// Now is the real time plus the offset; pass it as registry.Options.Clock.
func (c *Clock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }
