package client

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
)

// tracer names the spans of a push's and a pull's phases (modelx.push.scan,
// modelx.pull.plan, …; see docs/benchmarks.md). Without a tracer provider
// they cost next to nothing; the CLI exports them over OTLP when
// OTEL_EXPORTER_OTLP_ENDPOINT is set, and the benchmark sums them per step.
var tracer = otel.Tracer("modelx.io/modelx/client")

// phase starts the span of one phase; end it with span.End.
func phase(ctx context.Context, name string) (context.Context, trace.Span) {
	return tracer.Start(ctx, name)
}
