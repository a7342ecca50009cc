package fleet_test

import (
	"context"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ficuslabs/ficus/pricing/fleet"
)

// A quote submitted under a span is inserted in a child span, and its
// job runs in a span linked to the insertion's.
func TestQuoteJobSpans(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	q, err := fleet.NewQueue(fleet.QueueConfig{Pool: db.Pool, Logger: quiet, StatsInterval: time.Hour, TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig(db.Pool, fleet.LaneB2B, &calc{})
	cfg.TracerProvider = tp
	startWorker(t, cfg)
	ctx, parent := tp.Tracer("test").Start(context.Background(), "POST /api/v1/quotes")
	sub, err := q.Submit(ctx, submission("acme", "traced-1", fleet.LaneB2B))
	parent.End()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	var insert, work sdktrace.ReadOnlySpan
	for (insert == nil || work == nil) && time.Now().Before(deadline) {
		for _, s := range rec.Ended() {
			switch {
			case s.Name() == "river.insert_many":
				insert = s
			case strings.HasPrefix(s.Name(), "river.work/"):
				work = s
			}
		}
		time.Sleep(20 * time.Millisecond) // polls for the job's span
	}
	if insert == nil || work == nil {
		t.Fatalf("spans of quote %s: insert %v, work %v", sub.ID, insert, work)
	}
	if insert.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("insert span's parent %s, want the request's", insert.Parent().SpanID())
	}
	if l := work.Links(); len(l) != 1 || l[0].SpanContext.TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("work span's links %v, want the insertion's trace", l)
	}
}
