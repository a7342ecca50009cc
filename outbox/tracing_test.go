package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/ficuslabs/ficus/outbox"
)

// An event enqueued under a span is delivered in a span of that trace,
// and the inbox processes it in a span under the delivery's.
func TestTraceFollowsTheEvent(t *testing.T) {
	t.Parallel()
	db := migrated(t)
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	rec := &recorder{}
	startRelay(t, outbox.RelayConfig{Mode: outbox.ModeTable, ConnString: db.URL, Sink: rec, TracerProvider: tp})

	traced, err := outbox.NewWriter(outbox.WriterConfig{Mode: outbox.ModeTable, TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := outbox.NewWriter(outbox.WriterConfig{Mode: outbox.ModeTable})
	if err != nil {
		t.Fatal(err)
	}
	ctx, client := tp.Tracer("test").Start(t.Context(), "client")
	var ids []string
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		for _, w := range []*outbox.Writer{traced, plain} {
			id, err := w.Enqueue(ctx, tx, ev("order", "7", len(ids)))
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		// A caller's own trace context is kept.
		e := ev("order", "8", 0)
		e.Headers = map[string]string{outbox.HeaderTraceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
		id, err := plain.Enqueue(ctx, tx, e)
		ids = append(ids, id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	client.End()
	waitFor(t, 30*time.Second, "the events", func() bool { return rec.has(ids[2]) })

	inbox, err := outbox.NewInbox(outbox.InboxConfig{Consumer: "crm", TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	events := append(rec.events[:0:0], rec.events...)
	rec.mu.Unlock()
	for _, e := range events {
		err := pgx.BeginFunc(t.Context(), db.Pool, func(tx pgx.Tx) error {
			_, err := inbox.Process(e.TraceContext(context.Background()), tx, e.ID, func(pgx.Tx) error { return nil })
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	var enqueues, delivers, processes []sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		byID[s.SpanContext().SpanID()] = s
		switch s.Name() {
		case "outbox enqueue order.changed":
			enqueues = append(enqueues, s)
		case "outbox deliver order.changed":
			delivers = append(delivers, s)
		case "inbox process crm":
			processes = append(processes, s)
		}
	}
	if len(enqueues) != 1 || len(delivers) != 3 || len(processes) != 3 {
		t.Fatalf("%d enqueue, %d deliver and %d process spans, want 1, 3, 3", len(enqueues), len(delivers), len(processes))
	}
	parentName := func(s sdktrace.ReadOnlySpan) string {
		if p, ok := byID[s.Parent().SpanID()]; ok {
			return p.Name()
		}
		return s.Parent().SpanID().String()
	}
	if parentName(enqueues[0]) != "client" {
		t.Errorf("enqueue's parent is %s, want client", parentName(enqueues[0]))
	}
	want := map[string]string{ids[0]: "outbox enqueue order.changed", ids[1]: "client", ids[2]: "00f067aa0ba902b7"}
	deliverOf := map[string]sdktrace.ReadOnlySpan{}
	for _, d := range delivers {
		id := attr(d, "messaging.message.id")
		deliverOf[id] = d
		if got := parentName(d); got != want[id] {
			t.Errorf("delivery of %s: parent %s, want %s", id, got, want[id])
		}
		if id != ids[2] && d.SpanContext().TraceID() != client.SpanContext().TraceID() {
			t.Errorf("delivery of %s is in trace %s, want the client's", id, d.SpanContext().TraceID())
		}
	}
	for _, p := range processes {
		id := attr(p, "messaging.message.id")
		if d := deliverOf[id]; d == nil || p.Parent().SpanID() != d.SpanContext().SpanID() {
			t.Errorf("inbox span of %s: parent %s, want its delivery span", id, p.Parent().SpanID())
		}
		if attr(p, "ficus.inbox.duplicate") != "false" {
			t.Errorf("inbox span of %s: duplicate=%s", id, attr(p, "ficus.inbox.duplicate"))
		}
	}
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}
