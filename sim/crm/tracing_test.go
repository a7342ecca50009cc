package crm_test

import (
	"net/http"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/sim/crm"
)

// An event carrying a trace context is received in a span that continues
// it; one without gets none.
func TestWebhookContinuesTheEventsTrace(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	c, err := crm.New(crm.Config{Mode: crm.ModeWebhook, TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))})
	if err != nil {
		t.Fatal(err)
	}
	traced := rowEvent("e-1", crm.OrdersTable, "insert", 7, "new")
	traced.Extensions = map[string]any{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	plain := rowEvent("e-2", crm.OrdersTable, "update", 7, "paid")
	if code, body := post(t, c.Handler(), cloudevent.BatchContentType, mustJSON(t, []cloudevent.Event{traced, plain, traced})); code != http.StatusOK {
		t.Fatalf("POST: %d %s", code, body)
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2 (the traced event and its redelivery)", len(spans))
	}
	s := spans[0]
	got := map[string]string{}
	for _, kv := range s.Attributes() {
		got[string(kv.Key)] = kv.Value.String()
	}
	if s.Name() != "crm receive dev.ficus.cdc.row.v1" || s.Parent().SpanID().String() != "00f067aa0ba902b7" ||
		got["ficus.order.id"] != "7" || got["ficus.order.status"] != "new" || got["ficus.crm.duplicate"] != "false" {
		t.Errorf("span %s, parent %s, attributes %v", s.Name(), s.Parent().SpanID(), got)
	}
	for _, kv := range spans[1].Attributes() {
		if kv.Key == "ficus.crm.duplicate" && !kv.Value.AsBool() {
			t.Errorf("the redelivery's span says it is no duplicate")
		}
	}
}
