package crm

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/ficuslabs/ficus/cloudevent"
)

// tracerName is the instrumentation scope of the CRM's spans.
const tracerName = "github.com/ficuslabs/ficus/sim/crm"

// traceEvent records the receipt of e in a consumer span that continues
// the trace e carries (the CloudEvents distributed tracing extension):
// the order's path ends here. It does nothing without a tracer provider
// or when e carries no trace context.
func (c *CRM) traceEvent(ctx context.Context, e cloudevent.Event, duplicate bool, ch *Change, started time.Time) {
	if c.tracer == nil {
		return
	}
	parent := e.TraceContext(ctx)
	if !trace.SpanContextFromContext(parent).IsValid() {
		return
	}
	_, span := c.tracer.Start(parent, "crm receive "+e.Type, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithTimestamp(started),
		trace.WithAttributes(attribute.String("messaging.message.id", e.ID), attribute.String("ficus.event.source", e.Source),
			attribute.Bool("ficus.crm.duplicate", duplicate)))
	if ch != nil && span.IsRecording() {
		span.SetAttributes(attribute.Int64("ficus.order.id", ch.OrderID), attribute.String("ficus.order.status", ch.Status))
	}
	span.End()
}
