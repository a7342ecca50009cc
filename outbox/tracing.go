package outbox

import (
	"context"
	"maps"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ficuslabs/ficus/internal/tracing"
)

// The outbox's part in a trace: Enqueue records the caller's trace context
// in the event's headers (its own "outbox enqueue" span's, with a
// WriterConfig.TracerProvider); the relay delivers each event in a span
// that continues that context ("outbox deliver", whose context the
// CloudEvent carries on in its traceparent), and Inbox.Process runs the
// consumer's work in a span that continues the context of the ctx it is
// given (cloudevent.Event.TraceContext puts an event's there).

// tracerName is the instrumentation scope of the outbox's spans.
const tracerName = "github.com/ficuslabs/ficus/outbox"

// Span attributes.
const (
	attrEventID   = attribute.Key("messaging.message.id")
	attrEventType = attribute.Key("ficus.event.type")
	attrSubject   = attribute.Key("ficus.event.subject")
	attrConsumer  = attribute.Key("ficus.inbox.consumer")
	attrDuplicate = attribute.Key("ficus.inbox.duplicate")
)

// withTraceHeaders returns h with the trace context of ctx in
// HeaderTraceparent and HeaderTracestate when ctx has one, h has none
// and there is room for them; h itself is never changed.
func withTraceHeaders(ctx context.Context, h map[string]string) map[string]string {
	if _, ok := h[HeaderTraceparent]; ok || len(h)+2 > MaxHeaders {
		return h
	}
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return h
	}
	out := make(map[string]string, len(h)+2)
	maps.Copy(out, h)
	tracing.InjectMap(ctx, out)
	return out
}

// startEnqueue starts Enqueue's span, a producer span under the caller's.
func (w *Writer) startEnqueue(ctx context.Context, e Event) (context.Context, trace.Span) {
	return w.tracer.Start(ctx, "outbox enqueue "+e.Type, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attrEventType.String(e.Type), attrSubject.String(Subject(e.AggregateType, e.AggregateID))))
}

// send delivers records to the sink, each in a span of its own that
// continues the trace its headers carry; the CloudEvent carries the
// delivery span's context on.
func (r *Relay) send(ctx context.Context, records []Record) error {
	events := r.events(records)
	if r.tracer == nil {
		return r.cfg.Sink.Send(ctx, events)
	}
	spans := make([]trace.Span, len(records))
	for i, rec := range records {
		parent := tracing.ExtractMap(ctx, rec.Headers)
		sctx, span := r.tracer.Start(parent, "outbox deliver "+rec.Type, trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(attrEventID.String(rec.ID), attrEventType.String(rec.Type),
				attrSubject.String(Subject(rec.AggregateType, rec.AggregateID))))
		spans[i] = span
		events[i].SetTraceContext(sctx)
	}
	err := r.cfg.Sink.Send(ctx, events)
	for _, span := range spans {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "sink failed")
		}
		span.End()
	}
	return err
}

// startProcess starts the inbox's span for one event under ctx's span
// (the event's producer, with cloudevent.Event.TraceContext).
func (in *Inbox) startProcess(ctx context.Context, eventID string) (context.Context, trace.Span) {
	return in.tracer.Start(ctx, "inbox process "+in.cfg.Consumer, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attrEventID.String(eventID), attrConsumer.String(in.cfg.Consumer)))
}
