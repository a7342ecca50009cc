package proxy

import (
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ficuslabs/ficus/internal/tracing"
)

// The proxy's spans: one per request ("proxy <route>", a server span that
// continues the client's traceparent), a child per upstream call
// ("upstream <name>", a client span whose context the upstream gets in
// traceparent) and one per shadow call (package shadow). Without
// Settings.TracerProvider none of this runs: a call's trace is nil.

// tracerName is the instrumentation scope of the proxy's spans.
const tracerName = "github.com/ficuslabs/ficus/proxy"

// Span attributes of a proxied request.
const (
	attrRoute        = attribute.Key("ficus.route")
	attrTenant       = attribute.Key("ficus.tenant")
	attrLane         = attribute.Key("ficus.lane")
	attrRequestID    = attribute.Key("ficus.request_id")
	attrIdempotency  = attribute.Key("ficus.idempotency.outcome")
	attrReplayed     = attribute.Key("ficus.idempotency.replayed")
	attrBreaker      = attribute.Key("ficus.breaker.state")
	attrBreakerOpen  = attribute.Key("ficus.breaker.rejected")
	attrShed         = attribute.Key("ficus.shed")
	attrRateLimit    = attribute.Key("ficus.ratelimit.decision")
	attrSide         = attribute.Key("ficus.cutover.side")
	attrUpstream     = attribute.Key("ficus.upstream")
	attrStatus       = attribute.Key("http.response.status_code")
	attrMethod       = attribute.Key("http.request.method")
	attrPath         = attribute.Key("url.path")
	attrUpstreamPath = attribute.Key("ficus.upstream.path")
)

// Rate-limit decisions, the values of ficus.ratelimit.decision.
const (
	rateNone     = "none" // no policy applies to the caller
	rateAllowed  = "allowed"
	rateRejected = "rejected"
)

// callTrace is a traced call's spans and what its attributes say.
type callTrace struct {
	span     trace.Span // the request's server span
	upstream trace.Span // the upstream call's span, while it runs
	// header holds the trace context the upstream gets: the upstream
	// span's traceparent (and the client's tracestate).
	header http.Header

	rate        string
	idempotency string
	shed        bool
	breakerOpen bool
}

// startTrace starts the request's server span, continuing the client's
// trace context, and returns r with the span in its context.
func (p *Proxy) startTrace(c *call, r *http.Request) *http.Request {
	ctx := tracing.Extract(r.Context(), r.Header)
	ctx, span := p.tracer.Start(ctx, "proxy", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(c.started),
		trace.WithAttributes(attrMethod.String(r.Method), attrPath.String(r.URL.Path)))
	c.trace = &callTrace{span: span, rate: rateNone}
	return r.WithContext(ctx)
}

// endTrace ends the request's span with what the call learnt.
func (p *Proxy) endTrace(c *call) {
	t := c.trace
	span := t.span
	if span.IsRecording() {
		status := c.rec.code()
		attrs := []attribute.KeyValue{
			attrRequestID.String(c.id),
			attrStatus.Int(status),
			attrRateLimit.String(t.rate),
			attrShed.Bool(t.shed),
			attrBreakerOpen.Bool(t.breakerOpen),
		}
		if c.route != nil {
			span.SetName("proxy " + c.route.cfg.Name)
			attrs = append(attrs, attrRoute.String(c.route.cfg.Name))
		}
		if c.caller.Tenant != "" {
			attrs = append(attrs, attrTenant.String(c.caller.Tenant), attrLane.String(c.caller.Lane))
		}
		if t.idempotency != "" {
			attrs = append(attrs, attrIdempotency.String(t.idempotency),
				attrReplayed.Bool(t.idempotency == outcomeReplayed || t.idempotency == outcomeReconciled && c.up == nil))
		}
		if c.up != nil {
			attrs = append(attrs, attrUpstream.String(c.up.name), attrBreaker.String(c.up.breaker.State()))
		}
		if c.side != "" {
			attrs = append(attrs, attrSide.String(c.side))
		}
		span.SetAttributes(attrs...)
		if status >= 500 {
			span.SetStatus(codes.Error, strconv.Itoa(status))
		}
	}
	span.End()
}

// idempotencyOutcome counts an idempotency outcome and notes it for the
// request's span.
func (p *Proxy) idempotencyOutcome(c *call, outcome string) {
	p.met.idempotency(c.route.cfg.Name, outcome)
	if c.trace != nil {
		c.trace.idempotency = outcome
	}
}

// startUpstream starts the span of c's upstream call, a child of the
// request's span, and returns r with it in its context. It notes the
// traceparent the upstream gets in c.trace.header.
func (p *Proxy) startUpstream(c *call, r *http.Request) *http.Request {
	t := c.trace
	ctx, span := p.tracer.Start(r.Context(), "upstream "+c.up.name, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attrUpstream.String(c.up.name), attrMethod.String(r.Method)))
	t.upstream = span
	t.header = http.Header{}
	tracing.Inject(ctx, t.header)
	return r.WithContext(ctx)
}

// endUpstream ends the upstream call's span.
func (c *call) endUpstream() {
	t := c.trace
	if t == nil || t.upstream == nil {
		return
	}
	span := t.upstream
	if span.IsRecording() {
		if c.ex.status != 0 {
			span.SetAttributes(attrStatus.Int(c.ex.status))
		}
		if c.side != "" {
			span.SetAttributes(attrSide.String(c.side))
		}
		if c.ex.err != nil {
			span.RecordError(c.ex.err)
			span.SetStatus(codes.Error, "upstream call failed")
		} else if c.ex.status >= 500 {
			span.SetStatus(codes.Error, strconv.Itoa(c.ex.status))
		}
	}
	span.End()
	t.upstream = nil
}

// traceHeader returns the trace-context headers the upstream gets
// instead of the client's, nil when the call is not traced.
func (c *call) traceHeader() http.Header {
	if c.trace == nil {
		return nil
	}
	return c.trace.header
}

// isTraceHeader reports whether k (canonical) is a trace-context header.
func isTraceHeader(k string) bool { return k == "Traceparent" || k == "Tracestate" }

// setTraceHeader replaces out's trace-context headers with c's, when c is
// traced.
func (c *call) setTraceHeader(out http.Header) {
	h := c.traceHeader()
	if h == nil {
		return
	}
	delete(out, "Traceparent")
	delete(out, "Tracestate")
	for k, v := range h {
		out[k] = v
	}
}

// noteRate notes the rate-limit decision for the request's span.
func (c *call) noteRate(decision string) {
	if c.trace != nil {
		c.trace.rate = decision
	}
}

// noteShed notes that the request was shed.
func (c *call) noteShed() {
	if c.trace != nil {
		c.trace.shed = true
	}
}

// noteBreakerOpen notes that the upstream's open breaker refused the call.
func (c *call) noteBreakerOpen() {
	if c.trace != nil {
		c.trace.breakerOpen = true
	}
}
