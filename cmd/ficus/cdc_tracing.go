package main

import (
	"context"
	"maps"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ficuslabs/ficus/cdc"
	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/internal/tracing"
)

// cdcTracer gives "ficus cdc run" its spans: per delivery a root span
// "cdc deliver" (a WAL transaction carries no trace context to continue),
// under it a span per transaction ("cdc transaction", with its xid, LSN
// and size) and one for the sink call ("cdc sink send"). The events of a
// sampled transaction carry its span's context in their traceparent (the
// CloudEvents distributed tracing extension), so a consumer's span joins
// the transaction's trace. Nil when tracing is off.
type cdcTracer struct {
	tracer trace.Tracer
}

func newCDCTracer(tp trace.TracerProvider) *cdcTracer {
	if !tracing.Enabled(tp) {
		return nil
	}
	return &cdcTracer{tracer: tp.Tracer("github.com/ficuslabs/ficus/cdc")}
}

// deliver sends events, the events of txs in order (one per change), with
// send, in the spans of the delivery.
func (t *cdcTracer) deliver(ctx context.Context, txs []cdc.Tx, events []cloudevent.Event,
	send func(context.Context, []cloudevent.Event) error) error {
	if t == nil {
		return send(ctx, events)
	}
	ctx, batch := t.tracer.Start(ctx, "cdc deliver", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.Int("ficus.cdc.transactions", len(txs)), attribute.Int("ficus.cdc.events", len(events))))
	defer batch.End()
	spans := make([]trace.Span, 0, len(txs))
	off := 0
	for _, tx := range txs {
		tctx, span := t.tracer.Start(ctx, "cdc transaction", trace.WithAttributes(
			attribute.Int64("ficus.cdc.xid", int64(tx.XID)), attribute.String("ficus.cdc.commit_lsn", tx.CommitLSN.String()),
			attribute.Int("ficus.cdc.changes", len(tx.Changes)), attribute.Bool("ficus.cdc.part", tx.More)))
		spans = append(spans, span)
		end := min(off+len(tx.Changes), len(events))
		if span.IsRecording() {
			for i := off; i < end; i++ {
				events[i].Extensions = maps.Clone(events[i].Extensions) // never shared with another event
				events[i].SetTraceContext(tctx)
			}
		}
		off = end
	}
	sctx, call := t.tracer.Start(ctx, "cdc sink send", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.Int("ficus.cdc.events", len(events))))
	err := send(sctx, events)
	for _, s := range append(spans, call, batch) {
		if err != nil {
			s.RecordError(err)
			s.SetStatus(codes.Error, "delivery failed")
		}
	}
	call.End()
	for _, s := range spans {
		s.End()
	}
	return err
}
