package main

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// phaseRecorder sums the durations of the client's phase spans
// (modelx.push.scan, modelx.pull.plan, …) during one measured step: the
// split of a step's time the report shows. It is an OpenTelemetry span
// processor, installed as the global tracer provider's only one.
type phaseRecorder struct {
	mu  sync.Mutex
	sum map[string]time.Duration
}

func newPhaseRecorder() *phaseRecorder {
	r := &phaseRecorder{sum: map[string]time.Duration{}}
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r)))
	return r
}

func (r *phaseRecorder) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (r *phaseRecorder) Shutdown(context.Context) error                  { return nil }
func (r *phaseRecorder) ForceFlush(context.Context) error                { return nil }

// OnEnd adds the span's duration to its phase (the span name without
// "modelx.").
func (r *phaseRecorder) OnEnd(s sdktrace.ReadOnlySpan) {
	name, ok := strings.CutPrefix(s.Name(), "modelx.")
	if !ok {
		return
	}
	r.mu.Lock()
	r.sum[name] += s.EndTime().Sub(s.StartTime())
	r.mu.Unlock()
}

func (r *phaseRecorder) reset() {
	r.mu.Lock()
	clear(r.sum)
	r.mu.Unlock()
}

// phase is the time spent in one phase of a step; spans of phases that
// run at once (the push's current manifest beside its scan) overlap.
type phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// snapshot returns the phases recorded since reset, in name order.
func (r *phaseRecorder) snapshot() []phase {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]phase, 0, len(r.sum))
	for name, d := range r.sum {
		out = append(out, phase{Name: name, Seconds: d.Seconds()})
	}
	slices.SortFunc(out, func(a, b phase) int { return strings.Compare(a.Name, b.Name) })
	return out
}
