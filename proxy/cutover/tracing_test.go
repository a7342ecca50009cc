package cutover_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ficuslabs/ficus/proxy/cutover"
)

// An evaluation that ran has a span, and each decision one under it.
func TestEvaluationSpans(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	rec := tracetest.NewSpanRecorder()
	ctl, err := cutover.New(cutover.Config{Pool: w.db.Pool, Replica: "traced", Now: w.clock.Now,
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))})
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.Register(ctx, w.cfg.CutoverRoutes()); err != nil {
		t.Fatal(err)
	}
	if _, err := w.store().Resume(ctx, "quotes", "test", "start the plan"); err != nil {
		t.Fatal(err)
	}
	if ran, ds, err := ctl.Evaluate(ctx); err != nil || !ran || len(ds) != 1 {
		t.Fatalf("evaluate: %v %v %v", ran, ds, err)
	}
	var eval, decision sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.Name() {
		case "cutover evaluate":
			eval = s
		case "cutover decision quotes":
			decision = s
		}
	}
	if eval == nil || decision == nil || decision.Parent().SpanID() != eval.SpanContext().SpanID() {
		t.Fatalf("spans %v", rec.Ended())
	}
	got := map[string]string{}
	for _, kv := range decision.Attributes() {
		got[string(kv.Key)] = kv.Value.String()
	}
	if got["ficus.cutover.action"] != cutover.ActionStart || got["ficus.cutover.weight_bps"] != "1000" || got["ficus.route"] != "quotes" {
		t.Errorf("decision attributes %v", got)
	}
}
