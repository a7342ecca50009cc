package fleet

import (
	"github.com/riverqueue/river/rivertype"
	"github.com/riverqueue/rivercontrib/otelriver"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/ficuslabs/ficus/internal/tracing"
)

// riverMiddleware returns River's OpenTelemetry middleware (rivercontrib's
// otelriver) for tp: a span per job insertion ("river.insert_many", a
// child of the inserting request's span) and per job execution
// ("river.work/<kind>", linked to the insertion's span through the trace
// context the job's metadata carries). Nil when tracing is off. Its
// metrics stay off: the fleet's own are ficus_pricing_*.
func riverMiddleware(tp trace.TracerProvider) []rivertype.Middleware {
	if !tracing.Enabled(tp) {
		return nil
	}
	return []rivertype.Middleware{otelriver.NewMiddleware(&otelriver.MiddlewareConfig{
		TracerProvider:              tp,
		MeterProvider:               metricnoop.NewMeterProvider(),
		EnableTracePropagation:      true,
		EnableWorkSpanJobKindSuffix: true,
	})}
}
