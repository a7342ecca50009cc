package cutover

import (
	"cmp"
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// startEvaluate starts the span of one evaluation (a root: it is the
// controller's own work, on its timer or an operator's command).
func (c *Controller) startEvaluate(ctx context.Context) (context.Context, trace.Span) {
	return c.tracer.Start(ctx, "cutover evaluate", trace.WithAttributes(attribute.String("ficus.cutover.replica", c.cfg.Replica)))
}

// traceDecisions notes an evaluation's outcome on its span, and each
// decision in a child span with the figures it was taken on.
func (c *Controller) traceDecisions(ctx context.Context, span trace.Span, ran bool, decisions []Decision, err error) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.Bool("ficus.cutover.ran", ran), attribute.Int("ficus.cutover.decisions", len(decisions)))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "evaluation failed")
	}
	for _, d := range decisions {
		_, ds := c.tracer.Start(ctx, "cutover decision "+d.Route, trace.WithAttributes(
			attribute.String("ficus.route", d.Route),
			attribute.String("ficus.cutover.action", cmp.Or(d.Action, "wait")),
			attribute.Int("ficus.cutover.from_step", d.From), attribute.Int("ficus.cutover.to_step", d.To),
			attribute.Int("ficus.cutover.weight_bps", d.BPS), attribute.String("ficus.cutover.reason", d.Reason),
			attribute.Int64("ficus.cutover.legacy.requests", d.Legacy.Requests), attribute.Int64("ficus.cutover.new.requests", d.New.Requests)))
		for _, g := range d.Gates {
			ds.AddEvent("gate "+g.Gate, trace.WithAttributes(attribute.String("ficus.cutover.gate.result", g.Result),
				attribute.Float64("ficus.cutover.gate.value", g.Value), attribute.Float64("ficus.cutover.gate.limit", g.Limit),
				attribute.String("ficus.cutover.gate.detail", g.Detail)))
		}
		if d.Action == ActionGateFail {
			ds.SetStatus(codes.Error, d.Reason)
		}
		ds.End()
	}
}
