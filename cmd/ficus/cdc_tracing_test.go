package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/ficuslabs/ficus/cdc"
	"github.com/ficuslabs/ficus/cloudevent"
)

func TestCDCTracerSpans(t *testing.T) {
	if newCDCTracer(noop.NewTracerProvider()) != nil || newCDCTracer(nil) != nil {
		t.Fatal("a tracer with tracing off")
	}
	rec := tracetest.NewSpanRecorder()
	tr := newCDCTracer(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	shared := map[string]any{"lsn": "0/1"}
	txs := []cdc.Tx{{XID: 7, Changes: make([]cdc.Change, 2)}, {XID: 8, Changes: make([]cdc.Change, 1)}}
	events := []cloudevent.Event{{ID: "a", Extensions: shared}, {ID: "b", Extensions: shared}, {ID: "c"}}
	var sent []cloudevent.Event
	var sendSpan trace.SpanContext
	err := tr.deliver(context.Background(), txs, events, func(ctx context.Context, ev []cloudevent.Event) error {
		sent, sendSpan = ev, trace.SpanContextFromContext(ctx)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		byName[s.Name()] = append(byName[s.Name()], s)
	}
	batch, txSpans, send := byName["cdc deliver"], byName["cdc transaction"], byName["cdc sink send"]
	if len(batch) != 1 || len(txSpans) != 2 || len(send) != 1 {
		t.Fatalf("spans %v", byName)
	}
	if send[0].SpanContext().SpanID() != sendSpan.SpanID() || send[0].Parent().SpanID() != batch[0].SpanContext().SpanID() {
		t.Error("the sink call's span is not the send's context, under the delivery")
	}
	for i, e := range sent {
		tx := txSpans[0]
		if i == 2 {
			tx = txSpans[1]
		}
		got := trace.SpanContextFromContext(e.TraceContext(context.Background()))
		if got.SpanID() != tx.SpanContext().SpanID() {
			t.Errorf("event %s carries span %s, want its transaction's %s", e.ID, got.SpanID(), tx.SpanContext().SpanID())
		}
	}
	if _, ok := shared["traceparent"]; ok {
		t.Error("an extension map shared by events was changed")
	}
	boom := errors.New("sink down")
	if err := tr.deliver(context.Background(), txs[:1], events[:2], func(context.Context, []cloudevent.Event) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("deliver: %v", err)
	}
}

func TestServiceName(t *testing.T) {
	root := (&app{}).rootCommand()
	for args, want := range map[string]string{"proxy": "ficus-proxy", "cdc run": "ficus-cdc", "sim mes": "ficus-sim-mes",
		"orders serve": "ficus-orders", "outbox relay": "ficus-outbox-relay", "pricing worker": "ficus-pricing-worker"} {
		cmd, _, err := root.Find(strings.Fields(args))
		if err != nil {
			t.Fatal(err)
		}
		if got := serviceName(cmd); got != want {
			t.Errorf("%s: %s, want %s", args, got, want)
		}
	}
}
