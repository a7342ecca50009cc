package proxy

import (
	"encoding/hex"
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
// Settings.TracerProvider none of this runs.
//
// A request the sampler leaves out costs one span start (a non-recording
// span, whose context, flagged not sampled, still goes on to the upstream
// so that it does not sample what the proxy left out), and no attributes
// or child spans: BenchmarkProxyTracing measures what that costs.

// tracerName is the instrumentation scope of the proxy's spans.
const tracerName = "github.com/ficuslabs/ficus/proxy"

// Span attributes of a proxied request.
const (
	attrRoute       = attribute.Key("ficus.route")
	attrTenant      = attribute.Key("ficus.tenant")
	attrLane        = attribute.Key("ficus.lane")
	attrRequestID   = attribute.Key("ficus.request_id")
	attrIdempotency = attribute.Key("ficus.idempotency.outcome")
	attrReplayed    = attribute.Key("ficus.idempotency.replayed")
	attrBreaker     = attribute.Key("ficus.breaker.state")
	attrBreakerOpen = attribute.Key("ficus.breaker.rejected")
	attrShed        = attribute.Key("ficus.shed")
	attrRateLimit   = attribute.Key("ficus.ratelimit.decision")
	attrSide        = attribute.Key("ficus.cutover.side")
	attrUpstream    = attribute.Key("ficus.upstream")
	attrStatus      = attribute.Key("http.response.status_code")
	attrMethod      = attribute.Key("http.request.method")
	attrPath        = attribute.Key("url.path")
)

// Rate-limit decisions, the values of ficus.ratelimit.decision.
const (
	rateNone     = "none" // no policy applies to the caller
	rateAllowed  = "allowed"
	rateRejected = "rejected"
)

// Span start options, shared by every request.
var (
	serverSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	clientSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
)

// callTrace is a call's spans and what their attributes say.
type callTrace struct {
	on       bool       // tracing is on for the call
	span     trace.Span // the request's server span
	upstream trace.Span // the upstream call's span while it runs; nil when not recording
	// traceparent and tracestate are what the upstream gets instead of
	// the client's.
	traceparent, tracestate string

	rate        string
	idempotency string
	shed        bool
	breakerOpen bool
}

// startTrace starts the request's server span, continuing the client's
// trace context. A recorded span goes into the returned request's
// context (for the shadow call and for logs).
func (p *Proxy) startTrace(c *call, r *http.Request) *http.Request {
	ctx := r.Context()
	if r.Header["Traceparent"] != nil {
		ctx = tracing.Extract(ctx, r.Header)
	}
	ctx, span := p.tracer.Start(ctx, "proxy", serverSpan...)
	c.trace = callTrace{on: true, span: span, rate: rateNone}
	if !span.IsRecording() {
		return r
	}
	span.SetAttributes(attrMethod.String(r.Method), attrPath.String(r.URL.Path))
	return r.WithContext(ctx)
}

// endTrace ends the request's span with what the call learnt.
func (p *Proxy) endTrace(c *call) {
	t := &c.trace
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
				attrReplayed.Bool(t.idempotency == outcomeReplayed))
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
	c.trace.idempotency = outcome
}

// startUpstream starts the span of c's upstream call, a child of the
// request's span, and notes the trace context the upstream gets: the
// upstream span's, or, for a request left out of the sample, the
// request span's (flagged not sampled).
func (p *Proxy) startUpstream(c *call, r *http.Request) {
	t := &c.trace
	sc := t.span.SpanContext()
	if t.span.IsRecording() {
		ctx := trace.ContextWithSpan(r.Context(), t.span)
		_, span := p.tracer.Start(ctx, "upstream "+c.up.name, clientSpan...)
		span.SetAttributes(attrUpstream.String(c.up.name), attrMethod.String(r.Method))
		t.upstream = span
		sc = span.SpanContext()
	}
	t.traceparent, t.tracestate = traceparent(sc), ""
	if ts := sc.TraceState(); ts.Len() > 0 {
		t.tracestate = ts.String()
	}
}

// traceparent formats sc as a W3C traceparent header value.
func traceparent(sc trace.SpanContext) string {
	var b [55]byte
	tid, sid := sc.TraceID(), sc.SpanID()
	copy(b[:], "00-")
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{byte(sc.TraceFlags())})
	return string(b[:])
}

// endUpstream ends the upstream call's span.
func (c *call) endUpstream() {
	t := &c.trace
	span := t.upstream
	if span == nil {
		return
	}
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
	span.End()
	t.upstream = nil
}

// isTraceHeader reports whether k (canonical) is a trace-context header.
func isTraceHeader(k string) bool { return k == "Traceparent" || k == "Tracestate" }

// setTraceHeader replaces out's trace-context headers with c's, when
// tracing is on.
func (c *call) setTraceHeader(out http.Header) {
	t := &c.trace
	if !t.on {
		return
	}
	delete(out, "Tracestate")
	out["Traceparent"] = []string{t.traceparent}
	if t.tracestate != "" {
		out["Tracestate"] = []string{t.tracestate}
	}
}

// noteRate notes the rate-limit decision for the request's span.
func (c *call) noteRate(decision string) { c.trace.rate = decision }

// noteShed notes that the request was shed.
func (c *call) noteShed() { c.trace.shed = true }

// noteBreakerOpen notes that the upstream's open breaker refused the call.
func (c *call) noteBreakerOpen() { c.trace.breakerOpen = true }
