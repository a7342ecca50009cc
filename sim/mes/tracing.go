package mes

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ficuslabs/ficus/internal/tracing"
)

// tracerName is the instrumentation scope of the MES's spans.
const tracerName = "github.com/ficuslabs/ficus/sim/mes"

// startSpan starts the server span of an API request under the caller's
// traceparent and returns r with it in its context.
func (s *Server) startSpan(r *http.Request, route string) (*http.Request, trace.Span) {
	ctx := tracing.Extract(r.Context(), r.Header)
	ctx, span := s.tracer.Start(ctx, "mes "+route, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.route", route), attribute.String("http.request.method", r.Method)))
	return r.WithContext(ctx), span
}

// traceReply notes a route's answer on the request's span: the status,
// and the order it created or read.
func traceReply(ctx context.Context, rep reply) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.Int("http.response.status_code", rep.status))
	var o *Order
	switch b := rep.body.(type) {
	case Order:
		o = &b
	case *Order:
		o = b
	}
	if o != nil {
		span.SetAttributes(attribute.Int64("ficus.mes.order_id", o.ID), attribute.String("ficus.order.client_ref", o.ClientRef),
			attribute.String("ficus.order.status", o.Status))
	}
	if rep.status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(rep.status))
	}
}
