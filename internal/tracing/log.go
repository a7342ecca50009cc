package tracing

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// LogHandler wraps an slog.Handler so that a record logged with a context
// that holds a span (logger.InfoContext(ctx, ...)) carries the span's
// trace_id and span_id, which lead from a log line to its trace.
type LogHandler struct {
	inner slog.Handler
}

// NewLogHandler wraps h. Wrapping a LogHandler again returns it as is.
func NewLogHandler(h slog.Handler) *LogHandler {
	if lh, ok := h.(*LogHandler); ok {
		return lh
	}
	return &LogHandler{inner: h}
}

// Enabled reports whether the wrapped handler handles level.
func (h *LogHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// Handle adds trace_id and span_id when ctx holds a valid span context.
func (h *LogHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r = r.Clone()
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.inner.Handle(ctx, r)
}

// WithAttrs returns a LogHandler wrapping the inner handler's WithAttrs.
func (h *LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &LogHandler{inner: h.inner.WithAttrs(attrs)}
}

// WithGroup returns a LogHandler wrapping the inner handler's WithGroup.
func (h *LogHandler) WithGroup(name string) slog.Handler {
	return &LogHandler{inner: h.inner.WithGroup(name)}
}
