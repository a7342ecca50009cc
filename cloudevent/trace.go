package cloudevent

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// The attributes of the CloudEvents distributed tracing extension: the
// W3C trace context of the occurrence the event is about.
const (
	ExtTraceparent = "traceparent"
	ExtTracestate  = "tracestate"
)

// TraceContext returns ctx with the remote span context that e's
// traceparent and tracestate carry, so that a consumer's span continues
// the producer's trace; ctx as is when e carries none (or a malformed
// one).
func (e Event) TraceContext(ctx context.Context) context.Context {
	tp, _ := e.Extensions[ExtTraceparent].(string)
	if tp == "" {
		return ctx
	}
	m := map[string]string{ExtTraceparent: tp}
	if ts, _ := e.Extensions[ExtTracestate].(string); ts != "" {
		m[ExtTracestate] = ts
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(m))
}

// SetTraceContext writes the span context of ctx into e's traceparent
// and tracestate, replacing what they held, and reports whether ctx had
// one (it changes nothing otherwise).
func (e *Event) SetTraceContext(ctx context.Context) bool {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return false
	}
	m := make(map[string]string, 2)
	propagation.TraceContext{}.Inject(ctx, propagation.MapCarrier(m))
	if e.Extensions == nil {
		e.Extensions = make(map[string]any, 2)
	}
	delete(e.Extensions, ExtTracestate)
	for k, v := range m {
		e.Extensions[k] = v
	}
	return true
}
